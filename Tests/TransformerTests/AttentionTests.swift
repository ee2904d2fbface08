import Basics
import Foundation
import ModelIO
import TensorCore
import Testing
@testable import Transformer

/// Blockwise attention against a naive Double-precision softmax(QKᵀ)V, and the block-merge step.
@Suite struct AttentionTests {
    struct Case: CustomStringConvertible, Sendable {
        var heads: Int, kvHeads: Int, headDim: Int, queries: Int, past: Int, window: Int?, qb: Int, kb: Int
        /// Packed documents: a document starts every `documentLength` positions (0: one document).
        var documentLength = 0
        var description: String { "h\(heads)/kv\(kvHeads) d\(headDim) q\(queries) past\(past) w\(window.map(String.init) ?? "-") tiles \(qb)x\(kb) docs \(documentLength)" }
    }

    static let cases: [Case] = [
        Case(heads: 4, kvHeads: 2, headDim: 16, queries: 200, past: 0, window: nil, qb: 64, kb: 512),
        Case(heads: 4, kvHeads: 2, headDim: 16, queries: 200, past: 0, window: nil, qb: 16, kb: 24),
        Case(heads: 9, kvHeads: 3, headDim: 64, queries: 130, past: 300, window: nil, qb: 32, kb: 100),
        Case(heads: 8, kvHeads: 8, headDim: 32, queries: 1, past: 777, window: nil, qb: 64, kb: 128),
        Case(heads: 6, kvHeads: 1, headDim: 8, queries: 90, past: 40, window: 37, qb: 16, kb: 20),
        // Fused-kernel edges: a 16+8 channel split, 4-way groups with 128 channels, key blocks shorter than the
        // 6-key register tile, query rows not a multiple of 6 or 16.
        Case(heads: 2, kvHeads: 1, headDim: 24, queries: 77, past: 13, window: nil, qb: 7, kb: 5),
        Case(heads: 8, kvHeads: 2, headDim: 128, queries: 150, past: 600, window: 300, qb: 64, kb: 96),
        Case(heads: 3, kvHeads: 3, headDim: 64, queries: 61, past: 0, window: 9, qb: 64, kb: 13),
        // Document masks (packed sequences): documents shorter and longer than a key block, with a window.
        Case(heads: 4, kvHeads: 2, headDim: 16, queries: 200, past: 0, window: nil, qb: 64, kb: 48, documentLength: 37),
        Case(heads: 9, kvHeads: 3, headDim: 64, queries: 130, past: 300, window: nil, qb: 32, kb: 100, documentLength: 170),
        Case(heads: 8, kvHeads: 2, headDim: 32, queries: 150, past: 60, window: 50, qb: 16, kb: 24, documentLength: 71),
        // Decoding over long caches: keys split across the workers, partial results merged.
        Case(heads: 9, kvHeads: 3, headDim: 64, queries: 1, past: 3000, window: nil, qb: 64, kb: 512),
        Case(heads: 4, kvHeads: 2, headDim: 16, queries: 3, past: 2500, window: 1500, qb: 64, kb: 100, documentLength: 900),
    ]

    static func random(_ n: Int, _ rng: inout SeededRandom, scale: Float = 1) -> [Float] {
        (0..<n).map { _ in rng.normal() * scale }
    }

    /// Every kernel path: the fused AVX2 and AVX-512 tiles (skipped, by name, where the CPU lacks them) and the
    /// BLAS tiles.
    @Test(.enabled(if: KernelPath.avx512.isSupported, "this CPU lacks AVX-512 F/BW/VL/DQ: the AVX-512 tile is not run"),
          arguments: cases)
    func avx512TileEqualsNaive(_ c: Case) { check(c, kernel: .avx512) }

    @Test(.enabled(if: KernelPath.avx2.isSupported, "this CPU lacks AVX2+FMA: the AVX2 tile is not run"), arguments: cases)
    func avx2TileEqualsNaive(_ c: Case) { check(c, kernel: .avx2) }

    @Test(arguments: cases) func blasTilesEqualNaive(_ c: Case) { check(c, kernel: .portable) }

    func check(_ c: Case, kernel: KernelPath) {
        var rng = SeededRandom(seed: UInt64(c.heads * 1000 + c.queries))
        let shape = AttentionShape(heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, slidingWindow: c.window)
        let total = c.past + c.queries
        let stride = total + 5
        // Scores of order 10 so that the running max actually changes between blocks.
        let q = Self.random(c.queries * c.heads * c.headDim, &rng, scale: 2)
        let k = Self.random(c.kvHeads * stride * c.headDim, &rng, scale: 2)
        let v = Self.random(c.kvHeads * stride * c.headDim, &rng)
        var fast = [Float](repeating: .nan, count: c.queries * c.heads * c.headDim)
        var slow = fast
        // Each query's document start (absolute position), irregular lengths around `documentLength`.
        var starts = [Int32](repeating: 0, count: c.queries)
        if c.documentLength > 0 {
            var boundaries = [0], p = 0
            while p < total { p += c.documentLength / 2 + Int(rng.next() % UInt64(c.documentLength + 1)); boundaries.append(p) }
            for i in 0..<c.queries { starts[i] = Int32(boundaries.last { $0 <= c.past + i }!) }
        }
        let hasDocs = c.documentLength > 0
        q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
          starts.withUnsafeBufferPointer { sp in
            let docStart = hasDocs ? sp.baseAddress : nil
            let kv = KeyValueView(keys: kp.baseAddress!, values: vp.baseAddress!, stride: stride, count: total)
            fast.withUnsafeMutableBufferPointer { o in
                BlockwiseAttention.attend(shape: shape, query: qp.baseAddress!, queryStride: c.heads * c.headDim,
                                          count: c.queries, firstPosition: c.past, kv: kv, documentStart: docStart,
                                          output: o.baseAddress!, outputStride: c.heads * c.headDim, workers: 2,
                                          queryBlock: c.qb, keyBlock: c.kb, kernel: kernel)
            }
            slow.withUnsafeMutableBufferPointer { o in
                BlockwiseAttention.naive(shape: shape, query: qp.baseAddress!, queryStride: c.heads * c.headDim,
                                         count: c.queries, firstPosition: c.past, kv: kv, documentStart: docStart,
                                         output: o.baseAddress!, outputStride: c.heads * c.headDim)
            }
          }
        }}}
        // 1e-5 relative to the output scale (values are averages of N(0,1) entries).
        let scale = slow.map(abs).max()!
        let err = zip(fast, slow).map { abs($0 - $1) }.max()!
        #expect(err / scale < 1e-5, "max abs error \(err), scale \(scale)")
    }

    /// Attention over two disjoint key halves, merged with their log-sum-exps, equals attention over all keys
    /// (the step ring attention relies on).
    @Test(arguments: [true, false]) func mergeOfPartialsEqualsFull(fused: Bool) {
        var rng = SeededRandom(seed: 7)
        let heads = 4, kvHeads = 2, hd = 16, nq = 50, nk = 120, split = 70
        let shape = AttentionShape(heads: heads, kvHeads: kvHeads, headDim: hd)
        let q = Self.random(nq * heads * hd, &rng, scale: 2)
        let k = Self.random(kvHeads * nk * hd, &rng, scale: 2)
        let v = Self.random(kvHeads * nk * hd, &rng)
        // Second half as its own buffer, positions split..<nk.
        var k2 = [Float](), v2 = [Float]()
        for h in 0..<kvHeads {
            k2 += k[((h * nk + split) * hd)..<((h * nk + nk) * hd)]
            v2 += v[((h * nk + split) * hd)..<((h * nk + nk) * hd)]
        }
        let width = heads * hd
        var full = [Float](repeating: 0, count: nq * width), a = full, b = full
        var lseA = [Float](repeating: 0, count: heads * nq), lseB = lseA
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
                let all = KeyValueView(keys: kp.baseAddress!, values: vp.baseAddress!, stride: nk, count: nk)
                let first = KeyValueView(keys: kp.baseAddress!, values: vp.baseAddress!, stride: nk, count: split)
                full.withUnsafeMutableBufferPointer { o in
                    BlockwiseAttention.naive(shape: shape, query: qp.baseAddress!, queryStride: width, count: nq,
                                             firstPosition: nk - nq, kv: all, output: o.baseAddress!, outputStride: width)
                }
                a.withUnsafeMutableBufferPointer { o in lseA.withUnsafeMutableBufferPointer { l in
                    BlockwiseAttention.attend(shape: shape, query: qp.baseAddress!, queryStride: width, count: nq,
                                              firstPosition: nk - nq, kv: first, output: o.baseAddress!,
                                              outputStride: width, logSumExp: l.baseAddress!, keyBlock: 32, fused: fused)
                }}
            }}
            k2.withUnsafeBufferPointer { kp in v2.withUnsafeBufferPointer { vp in
                let second = KeyValueView(keys: kp.baseAddress!, values: vp.baseAddress!, stride: nk - split,
                                          count: nk - split, firstPosition: split)
                b.withUnsafeMutableBufferPointer { o in lseB.withUnsafeMutableBufferPointer { l in
                    BlockwiseAttention.attend(shape: shape, query: qp.baseAddress!, queryStride: width, count: nq,
                                              firstPosition: nk - nq, kv: second, output: o.baseAddress!,
                                              outputStride: width, logSumExp: l.baseAddress!, keyBlock: 16, fused: fused)
                }}
            }}
        }
        // Outputs are (query, head) rows of headDim and the log-sum-exp is in the same row order: merge in place.
        var ma = a
        let mb = b, mf = full
        ma.withUnsafeMutableBufferPointer { o in lseA.withUnsafeMutableBufferPointer { l in
            mb.withUnsafeBufferPointer { ob in lseB.withUnsafeBufferPointer { lb in
                BlockwiseAttention.mergePartial(output: o.baseAddress!, logSumExp: l.baseAddress!, with: ob.baseAddress!,
                                                otherLogSumExp: lb.baseAddress!, rows: heads * nq, width: hd)
            }}
        }}
        let scale = mf.map(abs).max()!
        let err = zip(ma, mf).map { abs($0 - $1) }.max()!
        #expect(err / scale < 1e-5, "max abs error \(err)")
    }
}
