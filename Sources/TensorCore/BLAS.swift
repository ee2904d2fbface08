import COpenBLAS

/// OpenBLAS-backed BLAS calls and thread control.
///
/// Parallelise inside BLAS or outside it, never both: code that runs its own parallel loops
/// should set `BLAS.threads = 1` around them.
public enum BLAS {
    /// OpenBLAS worker threads (overrides `OPENBLAS_NUM_THREADS` at run time).
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(max(1, newValue))) }
    }

    /// OpenBLAS build configuration string (version, kernel, threading).
    public static var configuration: String {
        guard let c = openblas_get_config() else { return "unknown" }
        return String(cString: c)
    }

    /// `C ← α·op(A)·op(B) + β·C`, all row-major, via `cblas_sgemm` (no copies).
    ///
    /// Shapes: `op(A)` is `m×k`, `op(B)` is `k×n`, `C` is `m×n`. `lda`/`ldb`/`ldc` are the row
    /// strides of the matrices as stored (for `transA`, A is stored `k×m`, so `lda ≥ m`).
    /// A PyTorch `Linear` (weight `[out, in]`) is `gemm(transB: true, m: T, n: out, k: in, …)`.
    @inlinable
    public static func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                             alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int,
                             beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// `y ← α·op(A)·x + β·y`, row-major A (`m×n` as stored), via `cblas_sgemv`.
    @inlinable
    public static func sgemv(trans: Bool = false, m: Int, n: Int, alpha: Float = 1,
                             a: UnsafePointer<Float>, lda: Int, x: UnsafePointer<Float>,
                             beta: Float = 0, y: UnsafeMutablePointer<Float>) {
        cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), alpha, a, Int32(lda),
                    x, 1, beta, y, 1)
    }
}

extension Tensor {
    /// Matrix product of two rank-2 tensors in f32: `self (m×k) · other (k×n)`, or `self · otherᵀ`
    /// when `transposeOther` (other stored `n×k`, as a Linear weight is). Non-f32 inputs are widened.
    public func matmul(_ other: Tensor, transposeOther: Bool = false) throws -> Tensor {
        guard rank == 2, other.rank == 2 else { throw TensorError.shapeMismatch("matmul needs rank-2 tensors, got \(shape) and \(other.shape)") }
        let m = shape[0], k = shape[1]
        let (k2, n) = transposeOther ? (other.shape[1], other.shape[0]) : (other.shape[0], other.shape[1])
        guard k == k2 else { throw TensorError.shapeMismatch("matmul \(shape) × \(transposeOther ? "ᵀ" : "")\(other.shape)") }
        let out = Tensor(zeros: [m, n], dtype: .f32)
        let c = out.storage.base.assumingMemoryBound(to: Float.self)
        withFloats { a in other.withFloats { b in
            if m > 0 && n > 0 && k > 0 {
                BLAS.sgemm(transB: transposeOther, m: m, n: n, k: k, a: a.baseAddress!, lda: k,
                           b: b.baseAddress!, ldb: transposeOther ? k : n, c: c, ldc: n)
            }
        } }
        return out
    }
}
