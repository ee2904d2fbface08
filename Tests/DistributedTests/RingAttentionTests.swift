import Distributed
import Foundation
import Testing
import Training
import Transformer

typealias MaskCase = RingCheckMask

/// Runs the ring on `workers` in-process workers and returns each worker's worst relative errors against the
/// single-worker reference on the gathered sequence.
func ringErrors(_ problem: RingCheckProblem, workers: Int, layout: SequenceLayoutKind,
                strategy: RingStrategy) throws -> [[(name: String, error: Double)]] {
    let reference = problem.reference()
    return try InProcessGroup.run(size: workers) { comm in
        let shard = try SequenceShard(kind: layout, length: problem.length, workers: workers, rank: comm.rank)
        let ring = try RingAttention(communicator: comm, shard: shard, strategy: strategy)
        let mine = try problem.run(ring)
        return RingCheckProblem.errors(mine, reference: problem.rows(of: reference, shard: shard))
    }
}

@Suite struct RingAttentionTests {
    static let tolerance = 1e-5

    /// The reference itself (blockwise attention on the whole sequence) against the Double naive attention, with
    /// every mask at once.
    @Test(arguments: MaskCase.allCases)
    func referenceMatchesNaiveDouble(_ mask: MaskCase) {
        let p = mask.problem(length: 70)
        let r = p.reference()
        var naive = [Float](repeating: 0, count: r.output.count)
        p.query.withUnsafeBufferPointer { q in p.keys.withUnsafeBufferPointer { k in p.values.withUnsafeBufferPointer { v in
            let kv = KeyValueView(keys: k.baseAddress!, values: v.baseAddress!, stride: p.length, count: p.length)
            let starts = p.documentStart
            starts.map { s in s.withUnsafeBufferPointer { sp in
                BlockwiseAttention.naive(shape: p.shape, query: q.baseAddress!, queryStride: p.queryStride,
                                         count: p.length, firstPosition: 0, kv: kv, causal: p.causal,
                                         documentStart: sp.baseAddress, output: &naive, outputStride: 64)
            }} ?? BlockwiseAttention.naive(shape: p.shape, query: q.baseAddress!, queryStride: p.queryStride,
                                           count: p.length, firstPosition: 0, kv: kv, causal: p.causal,
                                           output: &naive, outputStride: 64)
        }}}
        var worst = 0.0, scale = 0.0
        for (a, b) in zip(r.output, naive) { worst = max(worst, abs(Double(a - b))); scale = max(scale, abs(Double(b))) }
        #expect(worst / scale < Self.tolerance)
    }

    /// Outputs, log-sum-exp, dQ, dK, dV of every worker within 1e-5 of full attention on the gathered sequence, for
    /// P = 1, 2, 4, both layouts, both strategies and every mask (document cuts and window edges fall inside shards).
    @Test(arguments: [1, 2, 4], [SequenceLayoutKind.contiguous, .zigzag])
    func exactAgainstFullAttention(workers: Int, layout: SequenceLayoutKind) throws {
        for strategy in RingStrategy.allCases {
            for mask in MaskCase.allCases {
                let errors = try ringErrors(mask.problem(length: 96), workers: workers, layout: layout, strategy: strategy)
                for (rank, e) in errors.enumerated() {
                    for (name, err) in e {
                        #expect(err < Self.tolerance,
                                "P=\(workers) \(layout) \(strategy) \(mask) rank \(rank): \(name) error \(err)")
                    }
                }
            }
        }
    }

    /// Lengths that do not divide into the chunks: chunks differ by one token and results stay exact.
    @Test(arguments: [(61, 4, SequenceLayoutKind.zigzag), (61, 4, .contiguous), (37, 2, .zigzag), (9, 4, .zigzag)])
    func unevenLengths(length: Int, workers: Int, layout: SequenceLayoutKind) throws {
        for strategy in RingStrategy.allCases {
            let errors = try ringErrors(MaskCase.documentsAndWindow.problem(length: length), workers: workers,
                                        layout: layout, strategy: strategy)
            for e in errors { for (name, err) in e { #expect(err < Self.tolerance, "\(strategy) \(name) \(err)") } }
        }
        let shards = try SequenceShard.all(kind: layout, length: length, workers: workers)
        #expect(shards.flatMap(\.globalIndices).sorted() == Array(0..<length))
        #expect(shards.map(\.count).max()! - shards.map(\.count).min()! <= 2)
    }

    @Test func tooShortSequencesAreRefused() {
        #expect(throws: DistributedError("a sequence of 7 tokens cannot be split into the 8 zigzag chunks of a ring of 4 (at least 8 tokens are needed)")) {
            try SequenceShard(kind: .zigzag, length: 7, workers: 4, rank: 0)
        }
    }

    @Test func zigzagHoldsChunksRAndMirror() throws {
        let shards = try SequenceShard.all(kind: .zigzag, length: 16, workers: 4)
        #expect(shards[0].chunks == [0..<2, 14..<16])
        #expect(shards[1].chunks == [2..<4, 12..<14])
        #expect(shards[3].chunks == [6..<8, 8..<10])
        #expect(shards[1].local(Array(100..<116)) == [102, 103, 112, 113])
    }

    /// Pass-KV sends P−1 K/V blocks forward, and P−1 K/V blocks plus P dK/dV sums backward (ring-flash-attention's
    /// counts); each K/V block is `2·kvHeads·L·headDim` floats.
    @Test func passKVMessageCounts() throws {
        let p = MaskCase.causal.problem(length: 64)
        let stats = try InProcessGroup.run(size: 4) { comm in
            let shard = try SequenceShard(kind: .zigzag, length: 64, workers: 4, rank: comm.rank)
            let ring = try RingAttention(communicator: comm, shard: shard)
            _ = try p.run(ring)
            return ring.statistics
        }
        for s in stats {
            #expect(s.messages == 3 + 3 + 4)
            #expect(s.bytesSent == (3 + 3 + 4) * 2 * 2 * 16 * 16 * 4)
        }
    }

    /// A failing worker makes the others' waits fail instead of hanging.
    @Test func failureDoesNotHang() {
        #expect(throws: DistributedError.self) {
            _ = try InProcessGroup.run(size: 3) { comm in
                if comm.rank == 1 { throw DistributedError("boom") }
                var x: [Float] = [1]
                try comm.allReduceSum(&x, count: 1)
            }
        }
    }

    @Test func collectives() throws {
        let results = try InProcessGroup.run(size: 3) { comm -> ([Float], [Double], [Float]) in
            let sum = try comm.allReduceSum([Float(comm.rank), 1])
            let dsum = try comm.allReduceSum([Double(comm.rank) + 0.5])
            var b: [Float] = comm.rank == 2 ? [7, 8] : [0, 0]
            try comm.broadcast(&b, root: 2)
            try comm.barrier()
            return (sum, dsum, b)
        }
        for r in results {
            #expect(r.0 == [3, 3])
            #expect(r.1 == [4.5])
            #expect(r.2 == [7, 8])
        }
    }
}
