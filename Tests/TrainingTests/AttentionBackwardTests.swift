import Basics
import Foundation
import TensorCore
import Testing
import Training
import Transformer

/// `AttentionBackward` (fused kernel and BLAS path) against a Double reference that materialises the whole score
/// matrix: dQ, dK and dV each within 1e-5 relative (‖g − g_ref‖ / ‖g_ref‖) for causal, sliding-window and
/// document masks, odd lengths, half-strip head sizes, and ring-attention style calls over key subsets.
@Suite struct AttentionBackwardTests {
    struct Case: CustomStringConvertible, Sendable {
        var count: Int
        var heads = 6, kvHeads = 2, headDim = 64
        var window: Int? = nil
        var documents = false
        var description: String {
            "n=\(count) h=\(heads)/\(kvHeads) hd=\(headDim)" + (window.map { " window=\($0)" } ?? "")
                + (documents ? " documents" : "")
        }
    }

    static let cases: [Case] = [
        Case(count: 2), Case(count: 37), Case(count: 203), Case(count: 300, heads: 9, kvHeads: 3),
        Case(count: 211, window: 50), Case(count: 257, documents: true),
        Case(count: 190, heads: 4, kvHeads: 4, headDim: 24, window: 70, documents: true),
        Case(count: 133, heads: 4, kvHeads: 1, headDim: 8),
    ]

    /// Random inputs of one case; the forward's output and log-sum-exp come from the Double reference.
    struct Problem {
        let shape: AttentionShape
        let n: Int
        var q, k, v, dO: [Float]
        var starts: [Int32]?
        var o: [Float] = [], lse: [Float] = []
        var dq: [Double] = [], dk: [Double] = [], dv: [Double] = []

        init(_ c: Case, seed: UInt64 = 7) {
            shape = AttentionShape(heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, slidingWindow: c.window)
            n = c.count
            var r = SeededRandom(seed: seed)
            q = (0..<n * c.heads * c.headDim).map { _ in r.normal() }
            k = (0..<n * c.kvHeads * c.headDim).map { _ in r.normal() }
            v = (0..<n * c.kvHeads * c.headDim).map { _ in r.normal() }
            dO = (0..<n * c.heads * c.headDim).map { _ in r.normal() }
            if c.documents {
                // Documents starting at 0, n/5, n/2 (and one of length 1 at n/2 + 1).
                let bounds = [0, n / 5, n / 2, n / 2 + 1]
                starts = (0..<n).map { i in Int32(bounds.last { $0 <= i }!) }
            }
            reference()
        }

        func visible(_ i: Int, _ j: Int) -> Bool {
            if j > i { return false }
            if let w = shape.slidingWindow, i - j >= w { return false }
            if let starts, j < Int(starts[i]) { return false }
            return true
        }

        /// Forward and backward of `softmax(QKᵀ·scale + mask)·V` in Double.
        mutating func reference() {
            let hd = shape.headDim, g = shape.groupSize, width = shape.heads * hd, scale = Double(shape.scale)
            o = [Float](repeating: 0, count: n * width); lse = [Float](repeating: 0, count: n * shape.heads)
            dq = [Double](repeating: 0, count: q.count)
            dk = [Double](repeating: 0, count: k.count); dv = [Double](repeating: 0, count: v.count)
            var s = [Double](repeating: 0, count: n)
            for h in 0..<shape.heads {
                let kvh = h / g
                for i in 0..<n {
                    let qi = i * width + h * hd, doi = qi
                    var mx = -Double.infinity
                    for j in 0...i where visible(i, j) {
                        let kj = (kvh * n + j) * hd
                        var dot = 0.0
                        for e in 0..<hd { dot += Double(q[qi + e]) * Double(k[kj + e]) }
                        s[j] = dot * scale
                        mx = max(mx, s[j])
                    }
                    var sum = 0.0
                    for j in 0...i where visible(i, j) { sum += Foundation.exp(s[j] - mx) }
                    let l = mx + Foundation.log(sum)
                    lse[i * shape.heads + h] = Float(l)
                    var out = [Double](repeating: 0, count: hd)
                    for j in 0...i where visible(i, j) {
                        let p = Foundation.exp(s[j] - l), vj = (kvh * n + j) * hd
                        for e in 0..<hd { out[e] += p * Double(v[vj + e]) }
                    }
                    var delta = 0.0
                    for e in 0..<hd { o[qi + e] = Float(out[e]); delta += Double(dO[doi + e]) * out[e] }
                    for j in 0...i where visible(i, j) {
                        let p = Foundation.exp(s[j] - l), kj = (kvh * n + j) * hd
                        var dp = 0.0
                        for e in 0..<hd { dp += Double(dO[doi + e]) * Double(v[kj + e]) }
                        let ds = p * (dp - delta)
                        for e in 0..<hd {
                            dq[qi + e] += ds * scale * Double(k[kj + e])
                            dk[kj + e] += ds * scale * Double(q[qi + e])
                            dv[kj + e] += p * Double(dO[doi + e])
                        }
                    }
                }
            }
        }

        /// Our gradients, from calls over the key splits given (`[0, n)` in one call by default).
        func ours(_ kernel: KernelPath, workers: Int = 2, keySplits: [Int]? = nil) -> (dq: [Float], dk: [Float], dv: [Float]) {
            let hd = shape.headDim, width = shape.heads * hd
            var gq = [Float](repeating: 0, count: q.count), gk = [Float](repeating: 0, count: k.count)
            var gv = [Float](repeating: 0, count: v.count)
            let bounds = keySplits ?? [0, n]
            let kvStride = n
            for (b0, b1) in zip(bounds, bounds.dropFirst()) where b1 > b0 {
                // The key subset b0 ..< b1 as its own view (positions b0 …), gradients written to its own buffers.
                let kvHeads = shape.kvHeads
                var ks = [Float](repeating: 0, count: kvHeads * (b1 - b0) * hd), vs = ks
                for h in 0..<kvHeads {
                    for j in b0..<b1 {
                        for e in 0..<hd {
                            ks[(h * (b1 - b0) + j - b0) * hd + e] = k[(h * kvStride + j) * hd + e]
                            vs[(h * (b1 - b0) + j - b0) * hd + e] = v[(h * kvStride + j) * hd + e]
                        }
                    }
                }
                var bk = [Float](repeating: 0, count: ks.count), bv = bk
                q.withUnsafeBufferPointer { qp in ks.withUnsafeBufferPointer { kp in vs.withUnsafeBufferPointer { vp in
                o.withUnsafeBufferPointer { op in dO.withUnsafeBufferPointer { dop in lse.withUnsafeBufferPointer { lp in
                gq.withUnsafeMutableBufferPointer { dqp in bk.withUnsafeMutableBufferPointer { dkp in
                bv.withUnsafeMutableBufferPointer { dvp in
                    let view = KeyValueView(keys: kp.baseAddress!, values: vp.baseAddress!, stride: b1 - b0,
                                            count: b1 - b0, firstPosition: b0)
                    let dqPointer = dqp.baseAddress!, dkPointer = dkp.baseAddress!, dvPointer = dvp.baseAddress!
                    let call = { (starts: UnsafePointer<Int32>?) in
                        AttentionBackward.accumulate(shape: shape, query: qp.baseAddress!, queryStride: width, count: n,
                                                     firstPosition: 0, kv: view, documentStart: starts,
                                                     output: op.baseAddress!, outputStride: width,
                                                     outputGradient: dop.baseAddress!, outputGradientStride: width,
                                                     logSumExp: lp.baseAddress!, queryGradient: dqPointer,
                                                     queryGradientStride: width, keyGradient: dkPointer,
                                                     valueGradient: dvPointer, workers: workers, kernel: kernel)
                    }
                    if let starts { starts.withUnsafeBufferPointer { call($0.baseAddress) } } else { call(nil) }
                }}}}}}}}}
                for h in 0..<kvHeads {
                    for j in b0..<b1 {
                        for e in 0..<hd {
                            gk[(h * kvStride + j) * hd + e] += bk[(h * (b1 - b0) + j - b0) * hd + e]
                            gv[(h * kvStride + j) * hd + e] += bv[(h * (b1 - b0) + j - b0) * hd + e]
                        }
                    }
                }
            }
            return (gq, gk, gv)
        }
    }

    static func relative(_ a: [Float], _ b: [Double]) -> Double {
        var diff = 0.0, norm = 0.0
        for (x, y) in zip(a, b) { diff += (Double(x) - y) * (Double(x) - y); norm += y * y }
        return (diff / max(norm, 1e-300)).squareRoot()
    }

    static func check(_ p: Problem, _ g: (dq: [Float], dk: [Float], dv: [Float]), _ what: String) {
        for (name, ours, ref) in [("dQ", g.dq, p.dq), ("dK", g.dk, p.dk), ("dV", g.dv, p.dv)] {
            let rel = relative(ours, ref)
            #expect(rel <= 1e-5, "\(what) \(name): ‖g − g_ref‖/‖g_ref‖ = \(rel)")
            #expect(ref.contains { $0 != 0 }, "\(what) \(name): zero reference")
        }
    }

    static let fused: [KernelPath] = [.avx2, .avx512]

    /// Each fused kernel this CPU runs (those it cannot run show as skipped), 2 workers and 1.
    @Test(.enabled(if: AttentionBackward.runs(.avx2, headDim: 64), "no AVX2+FMA here: fused kernel skipped"),
          arguments: cases)
    func avx2MatchesDoubleReference(_ c: Case) {
        let p = Problem(c)
        Self.check(p, p.ours(.avx2), "AVX2 \(c)")
        Self.check(p, p.ours(.avx2, workers: 1), "AVX2 1 worker \(c)")
    }

    @Test(.enabled(if: AttentionBackward.runs(.avx512, headDim: 64), "no AVX-512F here: kernel skipped"),
          arguments: cases)
    func avx512MatchesDoubleReference(_ c: Case) {
        let p = Problem(c)
        Self.check(p, p.ours(.avx512), "AVX-512 \(c)")
        Self.check(p, p.ours(.avx512, workers: 1), "AVX-512 1 worker \(c)")
    }

    @Test(arguments: cases)
    func blasMatchesDoubleReference(_ c: Case) {
        let p = Problem(c)
        Self.check(p, p.ours(.portable), "BLAS \(c)")
    }

    /// The fused kernels agree with the BLAS path (each also against the reference above).
    @Test(.enabled(if: AttentionBackward.runs(.avx2, headDim: 64), "no AVX2+FMA here: fused kernels skipped"),
          arguments: [cases[2], cases[5], cases[6]])
    func fusedMatchesBLAS(_ c: Case) {
        let p = Problem(c)
        let b = p.ours(.portable)
        for kernel in Self.fused where AttentionBackward.runs(kernel, headDim: c.headDim) {
            let a = p.ours(kernel)
            for (name, x, y) in [("dQ", a.dq, b.dq), ("dK", a.dk, b.dk), ("dV", a.dv, b.dv)] {
                let rel = Self.relative(x, y.map(Double.init))
                #expect(rel <= 1e-5, "\(c) \(name): \(kernel) vs BLAS \(rel)")
            }
        }
    }

    /// Ring-attention style: one call per key block (key positions offset by the view's `firstPosition`) with the
    /// final log-sum-exp adds up to the gradients of attention over all keys.
    @Test(.enabled(if: AttentionBackward.runs(.avx2, headDim: 64), "no AVX2+FMA here: kernel skipped"))
    func avx2KeyBlocksAddUp() { Self.keyBlocksAddUp(.avx2) }

    @Test(.enabled(if: AttentionBackward.runs(.avx512, headDim: 64), "no AVX-512F here: kernel skipped"))
    func avx512KeyBlocksAddUp() { Self.keyBlocksAddUp(.avx512) }

    @Test func blasKeyBlocksAddUp() { Self.keyBlocksAddUp(.portable) }

    static func keyBlocksAddUp(_ kernel: KernelPath) {
        for c in [cases[3], cases[5], cases[4]] {
            let p = Problem(c)
            check(p, p.ours(kernel, keySplits: [0, 61, 62, 170, c.count]), "\(kernel) blocks \(c)")
        }
    }

    /// A head size the fused kernels do not take (not a multiple of 8) falls back to BLAS and stays exact.
    @Test func oddHeadSizeFallsBack() {
        #expect(AttentionBackward.kernel(headDim: 12) == .portable)
        let p = Problem(Case(count: 45, heads: 2, kvHeads: 1, headDim: 12, window: 20))
        Self.check(p, p.ours(.avx512), "hd=12")
    }
}
