import Basics
import CKernels
import Testing
import TensorCore

/// Every dispatched transformer kernel on each instruction-set path the CPU supports, against the portable C
/// reference: 1e-5 relative to the reference's scale (elementwise for exp). Paths the CPU lacks show as skipped,
/// named by their test.
@Suite struct KernelPathTests {
    static func random(_ n: Int, _ rng: inout SeededRandom, scale: Float = 1) -> [Float] {
        (0..<n).map { _ in rng.normal() * scale }
    }

    /// Largest |a − b| over the largest |b|.
    static func relative(_ a: [Float], _ b: [Float]) -> Float {
        let scale = b.map(abs).max()!
        return zip(a, b).map { abs($0 - $1) }.max()! / max(scale, .leastNormalMagnitude)
    }

    @Test(.enabled(if: KernelPath.avx2.isSupported, "this CPU lacks AVX2+FMA: the AVX2 kernels are not run"))
    func avx2KernelsMatchPortable() { checkKernels(.avx2) }

    @Test(.enabled(if: KernelPath.avx512.isSupported, "this CPU lacks AVX-512 F/BW/VL/DQ: the AVX-512 kernels are not run"))
    func avx512KernelsMatchPortable() { checkKernels(.avx512) }

    @Test func reportsPathAndFlags() {
        #expect(KernelPath.portable.isSupported)
        #expect(KernelPath.active.isSupported)
        #expect(KernelPath.supported.contains(KernelPath.active))
        #expect(KernelPath.cpuFlags.contains("avx2") == KernelPath.avx2.isSupported || !KernelPath.cpuFlags.contains("fma"))
    }

    func checkKernels(_ path: KernelPath) {
        var rng = SeededRandom(seed: 11)
        let p = path.rawValue, ref = KernelPath.portable.rawValue
        // Widths with vector tails on both 8 and 16 lanes.
        for n in [1, 7, 16, 31, 576, 1000, 1536] {
            // exp over its whole range, including under/overflow.
            var x = Self.random(n, &rng, scale: 30)
            if n > 3 { x[0] = -100; x[1] = 100; x[2] = 0 }
            var a = [Float](repeating: 0, count: n), b = a
            ck_exp_on(p, x, &a, n)
            ck_exp_on(ref, x, &b, n)
            let expErr = zip(a, b).map { $1 == 0 || $1.isInfinite ? ($0 == $1 ? 0 : 1) : abs($0 - $1) / $1 }.max()!
            #expect(expErr < 1e-5, "exp n=\(n) on \(path): \(expErr)")

            // SiLU gate.
            let g = Self.random(n, &rng, scale: 4), u = Self.random(n, &rng)
            a = g; b = g
            ck_silu_mul_on(p, &a, u, n)
            ck_silu_mul_on(ref, &b, u, n)
            #expect(Self.relative(a, b) < 1e-5, "silu n=\(n) on \(path)")

            // RMSNorm, 3 rows.
            let rows = Self.random(3 * n, &rng, scale: 5), w = Self.random(n, &rng)
            a = [Float](repeating: 0, count: 3 * n); b = a
            ck_rmsnorm_on(p, rows, w, &a, 3, n, 1e-6)
            ck_rmsnorm_on(ref, rows, w, &b, 3, n, 1e-6)
            #expect(Self.relative(a, b) < 1e-5, "rmsnorm n=\(n) on \(path)")
        }
        // RoPE: 5 rows of 3 heads, partial rotary dims, both signs.
        for (hd, rd) in [(64, 64), (128, 128), (80, 40), (24, 24), (6, 4)] {
            let rows = 5, heads = 3, stride = heads * hd + 3
            let base = Self.random(rows * stride, &rng, scale: 3)
            let cos = Self.random(rows * rd, &rng), sin = Self.random(rows * rd, &rng)
            for sign: Float in [1, -1] {
                var a = base, b = base
                ck_rope_on(p, &a, rows, stride, heads, hd, cos, sin, rd, sign)
                ck_rope_on(ref, &b, rows, stride, heads, hd, cos, sin, rd, sign)
                #expect(Self.relative(a, b) < 1e-5, "rope hd=\(hd) rd=\(rd) sign \(sign) on \(path)")
            }
        }
        // Online-softmax block update: two blocks in sequence with ragged visible ranges.
        let rowsN = 5, cols = 70
        var m1 = [Float](repeating: -.infinity, count: rowsN), l1 = [Float](repeating: 0, count: rowsN)
        var m2 = m1, l2 = l1
        var c1 = l1, c2 = l1
        let lo: [Int32] = [0, 3, 0, 69, 10], hi: [Int32] = [70, 50, 0, 70, 17]
        for _ in 0..<2 {
            let s = Self.random(rowsN * cols, &rng, scale: 8)
            var s1 = s, s2 = s
            ck_softmax_block_on(p, &s1, rowsN, cols, cols, lo, hi, &m1, &l1, &c1)
            ck_softmax_block_on(ref, &s2, rowsN, cols, cols, lo, hi, &m2, &l2, &c2)
            #expect(Self.relative(s1, s2) < 1e-5, "softmax P on \(path)")
            #expect(Self.relative(l1, l2) < 1e-5, "softmax l on \(path)")
            #expect(Self.relative(c1, c2) < 1e-5, "softmax corr on \(path)")
            #expect(m1 == m2, "softmax max on \(path)")
        }
    }
}
