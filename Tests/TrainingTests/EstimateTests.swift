import Foundation
import ModelIO
import TestSupport
import Testing
import Training
import Transformer

/// `longctx train --estimate`'s counts: parameters against the trainer's own parameter store (which the gradient
/// interop tests tie to transformers' parameters) and against Llama-3-8B's published size; the ring's effect on
/// per-rank memory and traffic. (Its times are checked against measured steps by scripts/bench-estimate.)
@Suite struct EstimateTests {
    @Test(arguments: [["--arch", "llama"], ["--arch", "llama", "--tie-embeddings"], ["--arch", "qwen2"], ["--arch", "mistral"]])
    func parameterCountEqualsTheStore(_ arch: [String]) throws {
        let dir = TestSupport.scratchDirectory("estimate") + "/m"
        let r = try TestSupport.longctx(["init-model", "--layers", "2", "--hidden", "64", "--intermediate", "96",
                                         "--vocab", "300", "--out", dir] + arch)
        try #require(r.status == 0, "\(r.stderr)")
        let md = try ModelDirectory(path: dir)
        let c = try TransformerConfiguration(directory: md)
        let store = try ParameterStore(configuration: c, checkpoint: try md.weights(), path: dir)
        #expect(Int(TrainingEstimate.parameterCount(c)) == store.count, "\(arch)")
    }

    @Test func llama3_8BPlan() throws {
        let root = TestSupport.repoRoot
        let capacity = RankCapacity(matmulFLOPs: 4e14, attentionFLOPs: 4e14, attentionBackwardFLOPs: 4e14,
                                    memoryBytes: 80 * 1_073_741_824, linkBytesPerSecond: 5e10,
                                    memoryBytesPerSecond: 2e12, source: "given")
        func plan(_ ring: Int) throws -> [StageEstimate] {
            try TrainingEstimate.plan(modelDirectory: root + "/eval/models/llama-3-8b",
                                      stagesPath: root + "/eval/stages/llama3-8b-estimate.yaml", ring: ring) { _, _ in capacity }.rows
        }
        let one = try plan(1), many = try plan(32)
        // Meta's model card: 8.03B parameters (8,030,261,248); f32 weights, gradients and two moments per rank.
        #expect(one[0].stateBytes == 16 * 8_030_261_248)
        #expect(one.map(\.seqLen) == [131_072, 1_048_576, 4_194_304])
        #expect(one[0].sequencesPerStep == 32 && one[2].sequencesPerStep == 1)
        #expect(one.allSatisfy { $0.bytesSentPerRank == 0 })
        for (a, b) in zip(one, many) {
            #expect(b.tokensPerRank * 32 == a.tokensPerRank)
            #expect(b.activationBytes < a.activationBytes / 30 && b.activationBytes > a.activationBytes / 33)
            #expect(b.matmulFLOPsPerStep == a.matmulFLOPsPerStep && b.attentionFLOPsPerStep == a.attentionFLOPsPerStep)
            #expect(b.fits == false, "f32 state alone (128 GB) exceeds 80 GiB")
        }
    }

    /// A stage's attention time uses the slower of the short-block rates and those measured over the longest key
    /// block not longer than the rank's own (`seq_len / P`); the short-block rates below the first measured block.
    @Test func attentionRatesFollowTheRanksKeyBlock() throws {
        var capacity = RankCapacity(matmulFLOPs: 1e11, attentionFLOPs: 6e10, attentionBackwardFLOPs: 5e10,
                                    linkBytesPerSecond: 1e10, memoryBytesPerSecond: 2e10, source: "given")
        capacity.attentionOverKeys = [AttentionRate(keys: 65_536, forwardFLOPs: 4e10, backwardFLOPs: 3e10),
                                      AttentionRate(keys: 131_072, forwardFLOPs: 2e10, backwardFLOPs: 1.5e10)]
        #expect(capacity.attentionRates(keys: 4096) == (6e10, 5e10))
        #expect(capacity.attentionRates(keys: 65_536) == (4e10, 3e10))
        #expect(capacity.attentionRates(keys: 100_000) == (4e10, 3e10))
        #expect(capacity.attentionRates(keys: 1 << 20) == (2e10, 1.5e10))
        capacity.attentionOverKeys[0].forwardFLOPs = 7e10
        #expect(capacity.attentionRates(keys: 65_536) == (6e10, 3e10))
        capacity.attentionOverKeys[0].forwardFLOPs = 4e10
        let c = try TransformerConfiguration(directory: try ModelDirectory(path: TestSupport.repoRoot + "/eval/models/llama-3-8b"))
        let stage = try TrainingStages(yaml: """
            stages:
              - name: s
                seq_len: 131072
                steps: 1
                lr: 1e-5

            """, path: "test.yaml").stages[0]
        let two = TrainingEstimate.estimate(configuration: c, stage: stage, ring: 2, recompute: true, capacity: capacity)
        var slower = capacity
        slower.attentionOverKeys[0].forwardFLOPs /= 2
        slower.attentionOverKeys[0].backwardFLOPs /= 2
        let twoSlower = TrainingEstimate.estimate(configuration: c, stage: stage, ring: 2, recompute: true, capacity: slower)
        #expect(twoSlower.computeSeconds > two.computeSeconds)
        // P = 1 holds 128K keys: the 64K block's rates do not apply.
        let one = TrainingEstimate.estimate(configuration: c, stage: stage, ring: 1, recompute: true, capacity: capacity)
        let oneSlower = TrainingEstimate.estimate(configuration: c, stage: stage, ring: 1, recompute: true, capacity: slower)
        #expect(one.computeSeconds == oneSlower.computeSeconds)
    }
}
