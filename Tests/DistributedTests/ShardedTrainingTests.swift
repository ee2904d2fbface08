import Distributed
import Foundation
import ModelIO
import TestSupport
import Testing
import Training

/// A tiny Qwen2-shaped model (q/k/v biases, GQA, untied head) written once per test process.
enum TinyModel {
    static let directory: String = {
        let dir = TestSupport.scratchDirectory("ring-model") + "/model"
        var spec = RandomModelSpec()
        spec.architecture = "qwen2"
        spec.layers = 2
        spec.hiddenSize = 64
        spec.intermediateSize = 96
        spec.heads = 4
        spec.kvHeads = 2
        spec.vocabSize = 97
        spec.seed = 5
        try! spec.write(to: dir)
        return dir
    }()

    static func load() throws -> TrainableModel {
        try TrainableModel(directory: try ModelDirectory(path: directory), workers: 1)
    }
}

@Suite struct ShardedTrainingTests {
    /// One sequence's gradients with the sequence sharded over P in-process workers (each running projections, MLP,
    /// norms and loss on its tokens, attention through the ring) and summed over the group equal the single-process
    /// gradients to 1e-5 relative per tensor; the summed loss too. Three packed documents crossing shard boundaries.
    @Test(arguments: [2, 4], [SequenceLayoutKind.contiguous, .zigzag])
    func gradientsMatchSingleProcess(workers: Int, layout: SequenceLayoutKind) throws {
        for strategy in RingStrategy.allCases {
            let results = try InProcessGroup.run(size: workers) { comm in
                let model = try TinyModel.load()
                let sequence = RingModelCheck.sequence(length: 77, vocabulary: model.configuration.vocabSize)
                let shard = try SequenceShard(kind: layout, length: 77, workers: workers, rank: comm.rank)
                let ring = try RingAttention(communicator: comm, shard: shard, strategy: strategy)
                return try RingModelCheck.run(model: model, sequence: sequence, ring: ring)
            }
            for r in results {
                #expect(r.gradient.error < 1e-5, "P=\(workers) \(layout) \(strategy): \(r.gradient.name) \(r.gradient.error)")
                #expect(r.loss < 1e-5)
            }
        }
    }

    @Test func localSequenceTakesTheShardsRows() throws {
        let s = RingModelCheck.sequence(length: 16, vocabulary: 50)
        let shard = try SequenceShard(kind: .zigzag, length: 16, workers: 2, rank: 1)
        let local = try ShardedTraining.localSequence(s, shard: shard)
        #expect(local.tokens == Array(s.tokens[4..<12]))
        #expect(local.positions == Array(s.positions[4..<12]))
        #expect(local.documentStart == Array(s.documentStart![4..<12]))
        #expect(throws: DistributedError.self) {
            try ShardedTraining.localSequence(s, shard: try SequenceShard(kind: .zigzag, length: 17, workers: 2, rank: 1))
        }
    }
}

@Suite(.serialized, .enabled(if: MPI.canRun, "mpirun (openmpi-bin) is not installed"))
struct MPIShardedTrainingTests {
    /// The same whole-model equivalence with one process per rank under `mpirun -np 2` and `-np 4`.
    @Test(arguments: [2, 4])
    func gradientsMatchUnderMPI(ranks: Int) throws {
        for (layout, strategy) in [(SequenceLayoutKind.zigzag, RingStrategy.passKV), (.contiguous, .allGather)] {
            let r = try MPI.check(ranks: ranks, ["gradients", TinyModel.directory, "77", layout.rawValue, strategy.rawValue])
            #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
            #expect(r.stdout.split(separator: "\n").filter { $0.hasPrefix("rank ") }.count == ranks, "\(r.stdout)")
        }
    }
}
