import CKernels
import Dispatch
import Foundation
import TensorCore

/// The arithmetic of the engine's matrix products (the projections and the LM head).
public enum ComputePrecision: String, CaseIterable, Sendable {
    /// f32 weights and activations on BLAS: the reference (f16/bf16 checkpoints widened exactly).
    case f32
    /// bf16 weights (as stored, or rounded to nearest even from f32/f16 at load) times activations rounded to bf16,
    /// accumulated in f32 — where the CPU has AVX-512 BF16 and the kernel path is AVX-512: products of ≥ 16 rows
    /// (prefill) on AMX tiles (`tdpbf16ps`) where the CPU has AMX-BF16 and Linux grants it, the rest on `vdpbf16ps`;
    /// elsewhere the products run in f32 (``ComputePrecision/effectivePath``). Prefill attention runs on AMX too
    /// (Q·Kᵀ and P·V in bf16, f32 softmax and sums; ``amxAttention(headDim:)``); norms, RoPE and decoding attention
    /// stay f32.
    case bf16

    /// What the products actually run on in this process for this precision, e.g.
    /// `"bf16 (amx_bf16 tdpbf16ps for prefill products and attention, avx512_bf16 vdpbf16ps, f32 accumulation)"`.
    public var effectivePath: String {
        switch self {
        case .f32: return "f32 (BLAS)"
        case .bf16:
            guard Self.bf16IsNative else { return "f32 (BLAS; bf16 requested but \(Self.bf16Missing))" }
            let amx = Self.amxEnabled ? "amx_bf16 tdpbf16ps for prefill products and attention, " : ""
            return "bf16 (\(amx)avx512_bf16 vdpbf16ps, f32 accumulation)"
        }
    }

    /// The `ck_bf16_gemm` path for a product of `rows` activation rows: AMX tiles from ``amxMinimumRows`` rows where
    /// ``amxEnabled``, `vdpbf16ps` otherwise (decoding).
    static func bf16Path(rows: Int) -> Int32 {
        rows >= amxMinimumRows && amxEnabled ? CK_BF16_AMX : CK_BF16_AVX512
    }

    /// AMX runs here (`ck_gemm_amx_available`: AMX-TILE, AMX-BF16, the tile state granted) and the
    /// environment does not turn it off with `LONGCTX_AMX=0` (to compare with `vdpbf16ps`).
    static let amxEnabled = ck_gemm_amx_available() != 0 && ProcessInfo.processInfo.environment["LONGCTX_AMX"] != "0"

    /// Whether ``BlockwiseAttention`` runs bf16-mode prefill attention on AMX tiles (`ck_attention_amx_tile`): bf16
    /// products native here, ``amxEnabled``, and `headDim` a multiple of 32 (at most 256).
    public static func amxAttention(headDim: Int) -> Bool {
        bf16IsNative && amxEnabled && ck_attention_amx_available(headDim) != 0
    }

    /// Below one 16-row tile, AMX would multiply mostly zero padding.
    static let amxMinimumRows = 16

    /// Whether bf16 products run natively here: AVX-512 BF16 present and the active kernel path AVX-512.
    static var bf16IsNative: Bool { ck_cpu_avx512_bf16() != 0 && KernelPath.active == .avx512 }

    private static var bf16Missing: String {
        ck_cpu_avx512_bf16() == 0 ? "the CPU lacks avx512_bf16" : "LONGCTX_KERNELS selects the \(KernelPath.active) path"
    }
}

/// A weight matrix `[rows, cols]` (Linear layout `[out, in]`) in bf16, packed into 16-row panels for
/// `ck_bf16_gemm` (layout in gemm_bf16.c; the same packing serves the `vdpbf16ps` and the AMX path).
final class PackedBF16Matrix: @unchecked Sendable {
    let rows: Int
    let cols: Int
    let packed: UnsafeMutablePointer<UInt16>
    var panels: Int { (rows + 15) / 16 }
    /// Activation row stride the kernel reads (cols rounded up to even, pad zero).
    var paddedCols: Int { (cols + 1) / 2 * 2 }

    /// Packs a row-major bf16 matrix.
    init(bf16 w: UnsafePointer<UInt16>, rows: Int, cols: Int) {
        self.rows = rows
        self.cols = cols
        packed = .allocate(capacity: max(1, ck_bf16_packed_count(rows, cols)))
        ck_bf16_pack(w, rows, cols, packed)
    }

    deinit { packed.deallocate() }

    /// `out[m × rows] (+)= bf16(input[m × cols]) · Wᵀ` (input row stride `lda`, output `ldc`): activations rounded
    /// to nearest even bf16 into `scratch`, then output panels split in static ranges across `workers` threads
    /// (every element computed by one call over all of k, so the result does not depend on `workers`). `path`: a
    /// `CK_BF16_*` kernel, by default ``ComputePrecision/bf16Path(rows:)``.
    func multiply(_ input: UnsafePointer<Float>, m: Int, lda: Int, out: UnsafeMutablePointer<Float>, ldc: Int,
                  accumulate: Bool, workers: Int, scratch: inout [UInt16], path: Int32? = nil) {
        let path = path ?? ComputePrecision.bf16Path(rows: m)
        let kp = paddedCols
        if scratch.count < m * kp { scratch = [UInt16](repeating: 0, count: m * kp) }
        scratch.withUnsafeMutableBufferPointer { a in
            for r in 0..<m {
                ck_f32_to_bf16(input + r * lda, a.baseAddress! + r * kp, cols)
                if kp > cols { a[r * kp + cols] = 0 }
            }
            let ap = a.baseAddress!
            LayerOps.parallelRows(panels, workers: workers, grain: 4) { range in
                let rc = ck_bf16_gemm(ap, kp, m, cols, packed, rows, range.lowerBound, range.upperBound, out, ldc,
                                      accumulate ? 1 : 0, path)
                precondition(rc == 0, "ck_bf16_gemm: path \(path) not supported by this CPU")
            }
        }
    }
}
