import Basics
import CKernels
import Foundation
import TensorCore
import Testing
@testable import Transformer

/// The one-query attention that reads the cache in place (`ck_attention_decode`, used for calls of at most
/// ``BlockwiseAttention/decodeQueries`` queries) against a naive Double-precision softmax(QKᵀ)V and its
/// log-sum-exp, on every kernel path the CPU runs.
@Suite struct DecodeAttentionTests {
    struct Case: CustomStringConvertible, Sendable {
        var heads: Int, kvHeads: Int, headDim: Int, queries: Int, past: Int, window: Int? = nil, documentLength = 0
        var description: String {
            "h\(heads)/kv\(kvHeads) d\(headDim) q\(queries) past\(past) w\(window.map(String.init) ?? "-") docs \(documentLength)"
        }
    }

    /// Head dims on every vector-width edge (8: one AVX2 vector; 24 and 40: an 8-channel AVX2 tail, AVX-512 falls
    /// back to AVX2; 80: a one-vector AVX-512 slab after a full one; 12: portable only), groups of 1 to 8 heads (over 4
    /// runs in chunks of 4), caches shorter than one 16-key step and crossing several 128-key blocks, long caches
    /// split across workers, windows and document starts.
    static let cases: [Case] = [
        Case(heads: 9, kvHeads: 3, headDim: 64, queries: 1, past: 1023),
        Case(heads: 9, kvHeads: 3, headDim: 64, queries: 1, past: 5),
        Case(heads: 8, kvHeads: 8, headDim: 128, queries: 2, past: 300),
        Case(heads: 7, kvHeads: 1, headDim: 64, queries: 1, past: 600),
        Case(heads: 16, kvHeads: 2, headDim: 32, queries: 3, past: 257),
        Case(heads: 4, kvHeads: 2, headDim: 8, queries: 4, past: 131),
        Case(heads: 6, kvHeads: 2, headDim: 24, queries: 1, past: 200),
        Case(heads: 2, kvHeads: 1, headDim: 40, queries: 2, past: 99),
        Case(heads: 4, kvHeads: 4, headDim: 80, queries: 1, past: 140),
        Case(heads: 3, kvHeads: 1, headDim: 12, queries: 1, past: 50),
        Case(heads: 9, kvHeads: 3, headDim: 64, queries: 1, past: 3000, window: 700),
        Case(heads: 4, kvHeads: 2, headDim: 64, queries: 3, past: 2000, documentLength: 600),
        Case(heads: 4, kvHeads: 2, headDim: 16, queries: 1, past: 0),
    ]

    @Test(.enabled(if: KernelPath.avx512.isSupported, "this CPU lacks AVX-512 F/BW/VL/DQ: the AVX-512 steps are not run"),
          arguments: cases)
    func avx512EqualsNaive(_ c: Case) { check(c, kernel: .avx512) }

    @Test(.enabled(if: KernelPath.avx2.isSupported, "this CPU lacks AVX2+FMA: the AVX2 steps are not run"), arguments: cases)
    func avx2EqualsNaive(_ c: Case) { check(c, kernel: .avx2) }

    @Test(arguments: cases) func portableEqualsNaive(_ c: Case) { check(c, kernel: .portable) }

    func check(_ c: Case, kernel: KernelPath) {
        var rng = SeededRandom(seed: UInt64(c.heads * 7919 + c.headDim * 31 + c.past))
        let shape = AttentionShape(heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, slidingWindow: c.window)
        let total = c.past + c.queries, stride = total + 3, width = c.heads * c.headDim
        // Scores of order 10 so that the running max changes between key blocks.
        let q = AttentionTests.random(c.queries * width, &rng, scale: 2)
        let k = AttentionTests.random(c.kvHeads * stride * c.headDim, &rng, scale: 2)
        let v = AttentionTests.random(c.kvHeads * stride * c.headDim, &rng)
        var starts = [Int32](repeating: 0, count: c.queries)
        if c.documentLength > 0 {
            for i in 0..<c.queries { starts[i] = Int32((c.past + i) / c.documentLength * c.documentLength) }
        }
        let hasDocs = c.documentLength > 0
        for workers in [1, 2] {
            var fast = [Float](repeating: .nan, count: c.queries * width), slow = fast
            var lse = [Float](repeating: .nan, count: c.queries * c.heads)
            q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
                starts.withUnsafeBufferPointer { sp in
                    let kv = KeyValueView(keys: kp.baseAddress!, values: vp.baseAddress!, stride: stride, count: total)
                    let docStart = hasDocs ? sp.baseAddress : nil
                    fast.withUnsafeMutableBufferPointer { o in lse.withUnsafeMutableBufferPointer { l in
                        BlockwiseAttention.attend(shape: shape, query: qp.baseAddress!, queryStride: width,
                                                  count: c.queries, firstPosition: c.past, kv: kv, documentStart: docStart,
                                                  output: o.baseAddress!, outputStride: width,
                                                  logSumExp: l.baseAddress!, workers: workers, kernel: kernel)
                    }}
                    slow.withUnsafeMutableBufferPointer { o in
                        BlockwiseAttention.naive(shape: shape, query: qp.baseAddress!, queryStride: width,
                                                 count: c.queries, firstPosition: c.past, kv: kv, documentStart: docStart,
                                                 output: o.baseAddress!, outputStride: width)
                    }
                }
            }}}
            // Outputs: 1e-5 relative to their scale (averages of N(0,1) values); log-sum-exp: 1e-5 relative.
            let scale = slow.map(abs).max()!
            let err = zip(fast, slow).map { abs($0 - $1) }.max()!
            #expect(err / scale < 1e-5, "workers \(workers): max abs error \(err), scale \(scale)")
            let reference = naiveLogSumExp(c, shape: shape, q: q, k: k, stride: stride, starts: hasDocs ? starts : nil)
            let lseErr = zip(lse, reference).map { abs(Double($0) - $1) / max(1, abs($1)) }.max()!
            #expect(lseErr < 1e-5, "workers \(workers): log-sum-exp relative error \(lseErr)")
        }
    }

    /// log Σ exp(q·k·scale) over each (query, head)'s visible keys, in Double, `queries × heads` row order.
    func naiveLogSumExp(_ c: Case, shape: AttentionShape, q: [Float], k: [Float], stride: Int, starts: [Int32]?)
        -> [Double] {
        var out = [Double]()
        for i in 0..<c.queries {
            let qpos = c.past + i
            for h in 0..<c.heads {
                let kvh = h / shape.groupSize
                var scores = [Double]()
                for key in 0...qpos {
                    if let w = c.window, qpos - key >= w { continue }
                    if let starts, key < Int(starts[i]) { continue }
                    var s = 0.0
                    for e in 0..<c.headDim {
                        s += Double(q[(i * c.heads + h) * c.headDim + e]) * Double(k[(kvh * stride + key) * c.headDim + e])
                    }
                    scores.append(s * Double(shape.scale))
                }
                let mx = scores.max()!
                out.append(mx + log(scores.reduce(0) { $0 + exp($1 - mx) }))
            }
        }
        return out
    }

    /// A query that sees no key (its document starts after it) gets zeros and a log-sum-exp of −∞.
    @Test func emptyRangeGivesZerosAndMinusInfinity() {
        let hd = 16, g = 3
        let q = [Float](repeating: 1, count: g * hd), kv = [Float](repeating: 1, count: 4 * hd)
        for path in KernelPath.supported {
            var out = [Float](repeating: .nan, count: g * hd), lse = [Float](repeating: .nan, count: g)
            ck_attention_decode_on(path.rawValue, q, g, hd, 0.25, kv, kv, 2, 2, &out, &lse)
            #expect(out.allSatisfy { $0 == 0 }, "\(path)")
            #expect(lse.allSatisfy { $0 == -.infinity }, "\(path)")
        }
    }
}
