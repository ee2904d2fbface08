import Basics
import CKernels
import Testing
import TensorCore
@testable import Transformer

/// `ck_bf16_gemm` (bf16 weights × bf16-rounded activations, f32 accumulation) on every path the CPU supports
/// (the `vdpbf16ps` path shows as skipped without avx512_bf16, the AMX path without usable AMX-BF16), against Double
/// references:
/// - against the exact product of the bf16 inputs: bf16·bf16 products are exact in f32, so the only error is f32
///   summation, |c − Σ ā·w| ≤ k·2⁻²³·Σ|ā·w| (γ_k with u = 2⁻²⁴, doubled);
/// - against the f32 activations: round-to-nearest-even to bf16 moves each activation by at most 2⁻⁹ relative, so
///   |c − Σ a·w| ≤ (2⁻⁹ + k·2⁻²³)·Σ|a·w|.
/// Shapes cover partial panels (n % 16 ≠ 0), partial register tiles (m % 6 ≠ 0, panels % 4 ≠ 0; for AMX m % 32 ≠ 0,
/// an odd panel count, k % 32 ≠ 0, more than one 256-row block of A) and odd k.
@Suite struct BF16GemmTests {
    @Test func portableMatchesDoubleReference() { check(CK_BF16_PORTABLE) }

    @Test(.enabled(if: ck_cpu_avx512_bf16() != 0, "this CPU lacks avx512_bf16: the vdpbf16ps kernel is not run"))
    func avx512BF16MatchesDoubleReference() { check(CK_BF16_AVX512) }

    @Test(.enabled(if: ck_gemm_amx_available() != 0,
                   "no usable AMX-BF16 (the CPU lacks it or Linux refused the tile state): tdpbf16ps not run"))
    func amxMatchesDoubleReference() { check(CK_BF16_AMX) }

    func check(_ path: Int32) {
        var rng = SeededRandom(seed: 31)
        for (m, n, k) in [(1, 37, 64), (7, 50, 96), (13, 100, 577), (6, 64, 576), (1, 1536, 576), (25, 200, 1536),
                          (45, 83, 161), (300, 48, 576), (33, 16, 31)] {
            let wf = (0..<(n * k)).map { _ in rng.normal() * 0.05 }
            var a = (0..<(m * k)).map { _ in rng.normal() }
            a[k / 3] = 40  // an outlier, as hidden states have
            var w = [UInt16](repeating: 0, count: n * k)
            ck_f32_to_bf16(wf, &w, n * k)
            let packed = w.withUnsafeBufferPointer { PackedBF16Matrix(bf16: $0.baseAddress!, rows: n, cols: k) }
            var scratch = [UInt16]()
            let c0 = (0..<(m * n)).map { _ in rng.normal() }
            var c = c0
            packed.multiply(a, m: m, lda: k, out: &c, ldc: n, accumulate: true, workers: 2, scratch: &scratch, path: path)
            var abar = [UInt16](repeating: 0, count: m * k)
            ck_f32_to_bf16(a, &abar, m * k)
            var worstExact = 0.0, worstF32 = 0.0
            for r in 0..<m {
                for j in 0..<n {
                    var exact = 0.0, exactAbs = 0.0, full = 0.0, fullAbs = 0.0
                    for i in 0..<k {
                        let wv = Double(widen(w[j * k + i]))
                        let ab = Double(widen(abar[r * k + i])), af = Double(a[r * k + i])
                        exact += ab * wv; exactAbs += abs(ab * wv)
                        full += af * wv; fullAbs += abs(af * wv)
                    }
                    let got = Double(c[r * n + j]) - Double(c0[r * n + j])
                    // The accumulate add rounds once more: |c0 + s| · 2⁻²⁴.
                    let addErr = abs(Double(c[r * n + j])) * 0x1p-24
                    let boundExact = Double(k) * 0x1p-23 * exactAbs + addErr
                    let boundF32 = (0x1p-9 + Double(k) * 0x1p-23) * fullAbs + addErr
                    #expect(abs(got - exact) <= boundExact, "path \(path) m\(m) n\(n) k\(k) [\(r),\(j)]: \(got) vs \(exact)")
                    #expect(abs(got - full) <= boundF32, "path \(path) m\(m) n\(n) k\(k) [\(r),\(j)]: \(got) vs f32 \(full)")
                    worstExact = max(worstExact, abs(got - exact) / max(exactAbs, 1e-30))
                    worstF32 = max(worstF32, abs(got - full) / max(fullAbs, 1e-30))
                }
            }
            // The bound is not vacuous: rounding the activations changes results by far more than f32 summation.
            if m * k > 1000 { #expect(worstF32 > worstExact, "m\(m) n\(n) k\(k): activation rounding left no trace") }
            // One worker and a split across workers write the same bits (each element is one call over all of k).
            var single = c0
            packed.multiply(a, m: m, lda: k, out: &single, ldc: n, accumulate: true, workers: 1, scratch: &scratch, path: path)
            #expect(single == c)
        }
    }

    private func widen(_ h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }
}
