import Basics
import CKernels
import ModelIO
import Testing
import TensorCore
@testable import Transformer

/// Q8_0 / Q5_0 / Q4_0 / Q4_1 / Q4_K weight quantization and the integer matrix–vector kernels on every path the CPU
/// supports (AVX-512 uses VNNI where present, else AVX2's kernel; paths the CPU lacks show as skipped), against
/// Double references:
/// - the kernel computes Σ_b d_w·d_x·(integer block dot) (+ m·d_x·Σx with m = Q4_1's minimum, Q4_0's −8·d or
///   Q4_K's −dmin·m_j) exactly up to f32 rounding: |y − ref| ≤ 1e-5·Σ(|d·q| + |m|)·|x| (dequantized values; the
///   terms summed);
/// - against the unquantized activations, the error is bounded by activation rounding: |y − W_q·x| ≤
///   Σ_b (d_x,b / 2)·Σ_{i∈b} |W_q,i| (+ the f32 term above);
/// - weight rounding: Q8_0 and Q4_1 within d/2 per element, Q4_0 within |d| (d/2 but for the clamped top nibble),
///   plus the f16 rounding of the stored scale (and Q4_1's minimum), as GGUF stores them: codes are chosen with
///   the exact scale, so each element may move by |code|·|d|·2⁻¹¹ (+ |m|·2⁻¹¹) more. Activations likewise.
///   Q5_0 within d/2 (|d| at the clamped top code) plus 16·|d|·2⁻¹¹. Q4_K within one min/max step of its
///   sub-block ((max − min(0, min))/15: half a step of rounding, and the least-squares refit may trade a clipped
///   extreme for a smaller total error), plus what rounding the sub-block's scale and offset to 6 bits of d and
///   dmin may cut off its range (15·d/2 + dmin/2); the codes are chosen against the stored scales, so the f16
///   rounding of d and dmin adds nothing.
///   Q4_K's squared error must also be at most that of Q4_1 with f16 scales on the same weights (its least-squares
///   refit has to pay for the 6-bit scales).
@Suite struct QuantizedKernelTests {
    @Test func portableKernelsMatchDoubleReference() { check(.portable) }

    @Test(.enabled(if: KernelPath.avx2.isSupported, "this CPU lacks AVX2+FMA: the AVX2 integer kernels are not run"))
    func avx2KernelsMatchDoubleReference() { check(.avx2) }

    @Test(.enabled(if: KernelPath.avx512.isSupported && ck_cpu_avx512_vnni() != 0,
                   "this CPU lacks AVX-512 VNNI: the vpdpbusd kernels are not run"))
    func avx512VNNIKernelsMatchDoubleReference() { check(.avx512) }

    func check(_ path: KernelPath) {
        var rng = SeededRandom(seed: 23)
        for k in [32, 64, 96, 256, 576, 1536] {
            let rows = 37
            let w = (0..<(rows * k)).map { _ in rng.normal() * 0.05 }
            // Activations with outliers, as hidden states have.
            var x = (0..<k).map { _ in rng.normal() }
            x[k / 3] = 40
            var xq = [Int8](repeating: 0, count: k), xd = [Float](repeating: 0, count: k / 32)
            ck_q8_quantize(x, k, &xq, &xd)
            for format in [BlockFormat.q8_0, .q5_0, .q4_0, .q4_1, .q4_k] where k % format.blockElements == 0 {
                let q = QuantizedMatrix(format: format, rows: rows, cols: k) { r, dst in
                    for i in 0..<k { dst[i] = w[r * k + i] }
                }
                var deq = [Float](repeating: 0, count: rows * k)
                QuantizedRows([q]).dequantize(rows: rows, into: &deq)
                // Weight rounding.
                for r in 0..<rows {
                    for i in 0..<k {
                        let block = r * (k / 32) + i / 32
                        let d = abs(q.scales[format == .q4_k ? r * (k / 128) + i / 256 * 2 : block]), half: Float = 1.0 / 2048
                        let bound: Float = switch format {
                        case .q8_0: d / 2 * 1.0001 + 127 * d * half + 1e-7
                        case .q5_0: d * 1.0001 + 16 * d * half
                        case .q4_0: d * 1.0001 + 8 * d * half
                        case .q4_1: d / 2 * 1.0001 + 15 * d * half + abs(q.mins![block]) * half + 1e-7
                        case .q4_k: Self.minMaxStep(w, r * k + i / 32 * 32) * 1.0001 + 7.5 * d
                            + q.scales[r * (k / 128) + i / 256 * 2 + 1] / 2 + 1e-7
                        }
                        #expect(abs(deq[r * k + i] - w[r * k + i]) <= bound, "\(format) weight rounding r\(r) i\(i)")
                    }
                }
                if format == .q4_k {
                    let q41 = QuantizedMatrix(format: .q4_1, rows: rows, cols: k) { r, dst in
                        for i in 0..<k { dst[i] = w[r * k + i] }
                    }
                    var deq41 = [Float](repeating: 0, count: rows * k)
                    QuantizedRows([q41]).dequantize(rows: rows, into: &deq41)
                    let e4k = zip(deq, w).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
                    let e41 = zip(deq41, w).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
                    #expect(e4k <= e41, "k=\(k): Q4_K squared error \(e4k) above Q4_1's \(e41)")
                }
                var y = [Float](repeating: .nan, count: rows)
                xq.withUnsafeBufferPointer { xqp in xd.withUnsafeBufferPointer { xdp in
                    y.withUnsafeMutableBufferPointer { yp in
                        let d = q.scales
                        if format.isEightBit {
                            ck_q8_matvec_on(path.rawValue, q.quants.assumingMemoryBound(to: Int8.self), d, rows, k,
                                            xqp.baseAddress!, xdp.baseAddress!, yp.baseAddress!)
                        } else if format == .q4_k {
                            ck_q4k_matvec_on(path.rawValue, q.quants.assumingMemoryBound(to: UInt8.self), q.subScales!, d,
                                             rows, k, xqp.baseAddress!, xdp.baseAddress!, yp.baseAddress!)
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
                        let m = Double(Self.scaleOffset(q, r, i / 32).offset)
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

    /// The min/max fit's step of the 32 weights from `start`: (max − min(0, min))/15.
    static func minMaxStep(_ w: [Float], _ start: Int) -> Float {
        let block = w[start..<(start + 32)]
        return (block.max()! - min(0, block.min()!)) / 15
    }

    /// Block `b` of row `r`: its scale and the offset the kernels add per block in f32 (Q4_1's minimum, Q4_0's
    /// −8·d, Q4_K's −dmin·m; 0 for int8 codes).
    static func scaleOffset(_ q: QuantizedMatrix, _ r: Int, _ b: Int) -> (scale: Float, offset: Float) {
        let nb = q.cols / 32
        switch q.format {
        case .q8_0, .q5_0: return (q.scales[r * nb + b], 0)
        case .q4_0: return (q.scales[r * nb + b], -8 * q.scales[r * nb + b])
        case .q4_1: return (q.scales[r * nb + b], q.mins![r * nb + b])
        case .q4_k:
            let sb = r * (q.cols / 256) + b / 8, sm = q.subScales! + sb * 16
            return (q.scales[sb * 2] * Float(sm[b % 8]), -(q.scales[sb * 2 + 1] * Float(sm[8 + b % 8])))
        }
    }

    /// GGUF Q4_K blocks (random bytes: every scale/min bit pattern) converted to our layout dequantize to exactly
    /// ``GGUFQuants``'s values (which equal gguf-py's, GGUFReaderTests), and run by the kernel.
    @Test func q4kFromGGUFBlocksKeepsTheirValues() throws {
        var rng = SeededRandom(seed: 5)
        let rows = 3, cols = 512, nb = rows * cols / 256
        var bytes = (0..<(nb * 144)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        for b in 0..<nb {  // finite f16 d and dmin of moderate size
            for o in [0, 2] { bytes[b * 144 + o] = UInt8(truncatingIfNeeded: rng.next()); bytes[b * 144 + o + 1] = 0x20 | UInt8(rng.next() % 8) }
        }
        var want = [Float](repeating: 0, count: rows * cols), got = want
        try bytes.withUnsafeBytes { src in
            try GGUFQuants.dequantize(src, type: .q4_K, count: rows * cols, into: &want)
            let q = try QuantizedMatrix.fromGGUF(GGUFBlocks.Blocks(type: .q4_K, rows: rows, cols: cols, bytes: src))
            QuantizedRows([q]).dequantize(rows: rows, into: &got)
        }
        #expect(got.map(\.bitPattern) == want.map(\.bitPattern))
    }
}
