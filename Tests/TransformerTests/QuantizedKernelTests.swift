import Basics
import CKernels
import Testing
import TensorCore
@testable import Transformer

/// Q8_0 / Q4_0 / Q4_1 weight quantization and the integer matrix–vector kernels on every path the CPU supports (AVX-512
/// uses VNNI where present, else AVX2's kernel; paths the CPU lacks show as skipped), against Double references:
/// - the kernel computes Σ_b d_w·d_x·(integer block dot) (+ m·d_x·Σx with m = Q4_1's minimum or Q4_0's −8·d)
///   exactly up to f32 rounding: |y − ref| ≤ 1e-5·Σ(|d·q| + |m|)·|x| (dequantized values; the terms summed);
/// - against the unquantized activations, the error is bounded by activation rounding: |y − W_q·x| ≤
///   Σ_b (d_x,b / 2)·Σ_{i∈b} |W_q,i| (+ the f32 term above);
/// - weight rounding: Q8_0 and Q4_1 within d/2 per element, Q4_0 within |d| (d/2 but for the clamped top nibble),
///   plus the f16 rounding of the stored scale (and Q4_1's minimum), as GGUF stores them: codes are chosen with
///   the exact scale, so each element may move by |code|·|d|·2⁻¹¹ (+ |m|·2⁻¹¹) more. Activations likewise.
@Suite struct QuantizedKernelTests {
    @Test func portableKernelsMatchDoubleReference() { check(.portable) }

    @Test(.enabled(if: KernelPath.avx2.isSupported, "this CPU lacks AVX2+FMA: the AVX2 integer kernels are not run"))
    func avx2KernelsMatchDoubleReference() { check(.avx2) }

    @Test(.enabled(if: KernelPath.avx512.isSupported && ck_cpu_avx512_vnni() != 0,
                   "this CPU lacks AVX-512 VNNI: the vpdpbusd kernels are not run"))
    func avx512VNNIKernelsMatchDoubleReference() { check(.avx512) }

    func check(_ path: KernelPath) {
        var rng = SeededRandom(seed: 23)
        for k in [32, 64, 96, 576, 1536] {
            let rows = 37
            let w = (0..<(rows * k)).map { _ in rng.normal() * 0.05 }
            // Activations with outliers, as hidden states have.
            var x = (0..<k).map { _ in rng.normal() }
            x[k / 3] = 40
            var xq = [Int8](repeating: 0, count: k), xd = [Float](repeating: 0, count: k / 32)
            ck_q8_quantize(x, k, &xq, &xd)
            for format in [WeightFormat.q8_0, .q4_0, .q4_1] {
                let q = QuantizedMatrix(format: format, rows: rows, cols: k) { r, dst in
                    for i in 0..<k { dst[i] = w[r * k + i] }
                }
                var deq = [Float](repeating: 0, count: rows * k)
                q.dequantize(rows: rows, into: &deq)
                // Weight rounding.
                for r in 0..<rows {
                    for i in 0..<k {
                        let block = r * (k / 32) + i / 32
                        let d = abs(q.scales[block]), half: Float = 1.0 / 2048
                        let bound: Float = switch format {
                        case .q8_0: d / 2 * 1.0001 + 127 * d * half + 1e-7
                        case .q4_0: d * 1.0001 + 8 * d * half
                        default: d / 2 * 1.0001 + 15 * d * half + abs(q.mins![block]) * half + 1e-7
                        }
                        #expect(abs(deq[r * k + i] - w[r * k + i]) <= bound, "\(format) weight rounding r\(r) i\(i)")
                    }
                }
                var y = [Float](repeating: .nan, count: rows)
                xq.withUnsafeBufferPointer { xqp in xd.withUnsafeBufferPointer { xdp in
                    y.withUnsafeMutableBufferPointer { yp in
                        let d = q.scales
                        if format == .q8_0 {
                            ck_q8_matvec_on(path.rawValue, q.quants.assumingMemoryBound(to: Int8.self), d, rows, k,
                                            xqp.baseAddress!, xdp.baseAddress!, yp.baseAddress!)
                        } else {
                            ck_q4_matvec_on(path.rawValue, q.quants.assumingMemoryBound(to: UInt8.self), d, q.mins,
                                            rows, k, xqp.baseAddress!, xdp.baseAddress!, yp.baseAddress!)
                        }
                    }
                }}
                for r in 0..<rows {
                    var exact = 0.0, magnitude = 0.0, unquantized = 0.0, activationBound = 0.0
                    for i in 0..<k {
                        let wi = Double(deq[r * k + i]), xi = Double(xq[i]) * Double(xd[i / 32])
                        exact += wi * xi
                        // The block offset the kernels may add in f32: Q4_1's m, Q4_0's −8·d.
                        let block = r * (k / 32) + i / 32
                        let m = Double(q.mins?[block] ?? (format == .q4_0 ? -8 * q.scales[block] : 0))
                        magnitude += (abs(wi - m) + abs(m)) * abs(xi)
                        unquantized += wi * Double(x[i])
                        activationBound += Double(xd[i / 32]) * (0.5 + 127.0 / 2048) * abs(wi)
                    }
                    let err = abs(Double(y[r]) - exact)
                    #expect(err <= 1e-5 * magnitude, "\(format) k=\(k) row \(r) on \(path): |Δ| \(err), Σ|w·x| \(magnitude)")
                    #expect(abs(Double(y[r]) - unquantized) <= activationBound * 1.0001 + 1e-5 * magnitude,
                            "\(format) k=\(k) row \(r) on \(path): activation rounding beyond its bound")
                }
            }
        }
    }
}
