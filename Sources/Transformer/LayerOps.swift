import CKernels
import Foundation
import RoPE
import TensorCore

/// The layer-level operations of a Llama-family decoder, shared by inference (``TransformerModel``), training and
/// sequence-parallel attention. All f32, row-major. Parallel work is split across `workers` threads given by the
/// caller, each running single-threaded BLAS (the caller keeps OpenBLAS at one thread while it uses these).
public enum LayerOps {
    /// `C[m × n] ← α·op(A)·op(B) + β·C` (row-major, as ``BLAS/sgemm(transA:transB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)``)
    /// on `workers` threads. `engine` picks the kernels (``GemmEngine/automatic``: ours for the weight-gradient
    /// class on AVX-512/AVX2, OpenBLAS otherwise, see ``GemmEngine``). Every output element is summed by one thread in a fixed `k` order, so the
    /// result does not depend on `workers`.
    public static func gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                            a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                            beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, workers: Int,
                            engine: GemmEngine = .automatic) {
        guard m > 0, n > 0 else { return }
        if let path = engine.packedPath(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta),
           packedGemm(path: path, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                      b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, workers: workers) {
            return
        }
        slabGemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                 beta: beta, c: c, ldc: ldc, workers: workers)
    }

    /// OpenBLAS: equal column slabs (multiples of 16) across `workers`, each one single-threaded call over the whole
    /// `k` (or sgemv for one row).
    static func slabGemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                         a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                         beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, workers: Int) {
        let parts = m &* n &* k >= 1 << 16 ? max(1, min(workers, n / 64)) : 1
        let slab = ((n + parts - 1) / parts + 15) / 16 * 16
        Parallel.forEach(parts, threads: workers) { p in
            let lo = p * slab, cols = min(n, lo + slab) - lo
            guard cols > 0 else { return }
            // Column j of op(B) is row j of B when transposed, column j otherwise.
            let bj = transB ? b + lo * ldb : b + lo
            if m == 1 && !transA {
                // One row: y = op(B)ᵀ·a is a matrix-vector product (sgemm with m = 1 is slower than gemv).
                BLAS.sgemv(trans: !transB, m: transB ? cols : k, n: transB ? k : cols, alpha: alpha, a: bj, lda: ldb,
                           x: a, beta: beta, y: c + lo)
            } else {
                BLAS.sgemm(transA: transA, transB: transB, m: m, n: cols, k: k, alpha: alpha, a: a, lda: lda,
                           b: bj, ldb: ldb, beta: beta, c: c + lo, ldc: ldc)
            }
        }
    }

    /// Runs `body` on up to `workers` contiguous ranges of `0 ..< count` at once: a static split into equal ranges
    /// (each a multiple of `grain` but the last), one range when `count < 2·max(grain, 8)`. For row-wise work whose
    /// result must not depend on timing.
    public static func parallelRows(_ count: Int, workers: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        let parts = max(1, min(workers, count / max(grain, 8)))
        guard parts > 1 else { body(0 ..< count); return }
        let size = ((count + parts - 1) / parts + grain - 1) / grain * grain
        Parallel.forEach(parts, threads: workers) { p in
            let lo = min(count, p * size), hi = min(count, lo + size)
            if lo < hi { body(lo ..< hi) }
        }
    }

    /// A PyTorch `Linear`: `out[rows × outFeatures] (+)= input[rows × inFeatures] · Wᵀ + bias`, `W` stored
    /// `[outFeatures, inFeatures]` row-major. `lda`/`ldc` are the row strides of `input` and `out`.
    public static func linear(_ input: UnsafePointer<Float>, rows: Int, lda: Int, weight: UnsafePointer<Float>,
                              outFeatures: Int, inFeatures: Int, bias: UnsafePointer<Float>?,
                              out: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool = false, workers: Int,
                              engine: GemmEngine = .automatic) {
        gemm(transB: true, m: rows, n: outFeatures, k: inFeatures, a: input, lda: lda, b: weight, ldb: inFeatures,
             beta: accumulate ? 1 : 0, c: out, ldc: ldc, workers: workers, engine: engine)
        guard let bias else { return }
        for r in 0..<rows {
            let row = out + r &* ldc
            for j in 0..<outFeatures { row[j] += bias[j] }
        }
    }

    /// Rotates `heads` head vectors (each `headDim` wide, head `h` at column `h·headDim`) of `rows` rows in place,
    /// row `t` by row `t` of `table`: half-split pairs `(j, j + rotaryDim/2)`, transformers'
    /// `q·cos + rotate_half(q)·sin` (cos/sin already carry the attention factor); channels past the rotary
    /// dimension pass through.
    public static func rotate(_ base: UnsafeMutablePointer<Float>, rows: Int, stride: Int, heads: Int, headDim: Int,
                              table: RopeTable) {
        rotate(base, rows: rows, stride: stride, heads: heads, headDim: headDim, table: table, sinSign: 1)
    }

    /// The transpose of ``rotate(_:rows:stride:heads:headDim:table:)`` (the backward of RoPE): the same rotation by
    /// the negated angle, scaled by the same attention factor, `dx = Rᵀ·dy`.
    public static func rotateTransposed(_ base: UnsafeMutablePointer<Float>, rows: Int, stride: Int, heads: Int,
                                        headDim: Int, table: RopeTable) {
        rotate(base, rows: rows, stride: stride, heads: heads, headDim: headDim, table: table, sinSign: -1)
    }

    /// `ck_rope` on the active kernel path (portable C, AVX2 or AVX-512; every path rounds each product and then
    /// the sum/difference, so all give the same bits).
    private static func rotate(_ base: UnsafeMutablePointer<Float>, rows: Int, stride: Int, heads: Int, headDim hd: Int,
                               table: RopeTable, sinSign: Float) {
        table.cos.withUnsafeBufferPointer { cosp in
            table.sin.withUnsafeBufferPointer { sinp in
                ck_rope(base, rows, stride, heads, hd, cosp.baseAddress!, sinp.baseAddress!, table.rotaryDim, sinSign)
            }
        }
    }

    /// RMSNorm per row (transformers' `LlamaRMSNorm` in f32): `y = w ⊙ x / sqrt(mean(x²) + eps)`; `x`, `y`:
    /// `rows × n` (may alias).
    public static func rmsNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                               rows: Int, width: Int, eps: Float) {
        ck_rmsnorm(x, weight, out, rows, width, eps)
    }

    /// SwiGLU in place per row: `gate ← silu(gate) ⊙ up` for `rows` rows of `[gate | up]` (`2·width` wide, row
    /// stride `stride`).
    public static func swiGLU(_ gateUp: UnsafeMutablePointer<Float>, rows: Int, width: Int, stride: Int) {
        for t in 0..<rows { ck_silu_mul(gateUp + t * stride, gateUp + (t * stride + width), width) }
    }
}
