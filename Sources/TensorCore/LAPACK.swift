import COpenBLAS

/// Thin singular value decomposition of a row-major matrix: `A (m×n) = U · diag(S) · Vt`.
public struct SVDResult: Sendable {
    /// `m × k`, row-major, orthonormal columns (`k = min(m, n)`).
    public var u: [Float]
    /// `k` singular values, descending.
    public var s: [Float]
    /// `k × n`, row-major, orthonormal rows.
    public var vt: [Float]
    public var m: Int, n: Int
    public var k: Int { s.count }
}

/// LAPACK routines from OpenBLAS (Fortran entry points, column-major), wrapped for row-major data.
///
/// A row-major `m×n` buffer is the column-major `n×m` transpose, so the SVD is computed on `Aᵀ`
/// without copying into column-major order: `Aᵀ = U' S V'ᵀ` gives `U = V'` and `Vt = U'ᵀ`, which are
/// exactly the buffers LAPACK returns read back row-major.
public enum LAPACK {
    /// Thin SVD through `sgesdd` (divide and conquer), falling back to `sgesvd` (QR iteration) when
    /// `sgesdd` reports non-convergence. `a` is `m×n` row-major and is not modified.
    public static func svd(_ a: UnsafeBufferPointer<Float>, m: Int, n: Int) throws -> SVDResult {
        precondition(a.count >= m * n, "svd: buffer holds \(a.count) values, need \(m * n)")
        let k = min(m, n)
        if k == 0 { return SVDResult(u: [], s: [], vt: [], m: m, n: n) }
        if let r = try gesdd(a, m: m, n: n) { return r }
        return try gesvd(a, m: m, n: n)
    }

    public static func svd(_ a: [Float], m: Int, n: Int) throws -> SVDResult {
        try a.withUnsafeBufferPointer { try svd($0, m: m, n: n) }
    }

    /// Returns nil when sgesdd does not converge (info > 0) so the caller can fall back.
    static func gesdd(_ a: UnsafeBufferPointer<Float>, m: Int, n: Int) throws -> SVDResult? {
        // Column-major problem: B = Aᵀ is (n × m), ldb = n.
        var rows = Int32(n), cols = Int32(m), ld = Int32(n)
        let k = min(m, n)
        var work = Array(a.prefix(m * n))
        var s = [Float](repeating: 0, count: k)
        var ub = [Float](repeating: 0, count: n * k)   // U' (n × k), ldu = n  → row-major (k × n) = Vt
        var vb = [Float](repeating: 0, count: k * m)   // V'ᵀ (k × m), ldvt = k → row-major (m × k) = U
        var ldu = Int32(n), ldvt = Int32(k)
        var jobz = Int8(UInt8(ascii: "S"))
        var iwork = [Int32](repeating: 0, count: 8 * k)
        var info: Int32 = 0
        var lwork: Int32 = -1
        var query: Float = 0
        sgesdd_(&jobz, &rows, &cols, &work, &ld, &s, &ub, &ldu, &vb, &ldvt, &query, &lwork, &iwork, &info, 1)
        guard info == 0 else { throw TensorError.linalg("sgesdd workspace query failed (info=\(info))") }
        lwork = Int32(query.rounded(.up)) + 1
        var w = [Float](repeating: 0, count: Int(lwork))
        sgesdd_(&jobz, &rows, &cols, &work, &ld, &s, &ub, &ldu, &vb, &ldvt, &w, &lwork, &iwork, &info, 1)
        if info > 0 { return nil }
        guard info == 0 else { throw TensorError.linalg("sgesdd argument \(-info) invalid") }
        return SVDResult(u: vb, s: s, vt: ub, m: m, n: n)
    }

    static func gesvd(_ a: UnsafeBufferPointer<Float>, m: Int, n: Int) throws -> SVDResult {
        var rows = Int32(n), cols = Int32(m), ld = Int32(n)
        let k = min(m, n)
        var work = Array(a.prefix(m * n))
        var s = [Float](repeating: 0, count: k)
        var ub = [Float](repeating: 0, count: n * k)
        var vb = [Float](repeating: 0, count: k * m)
        var ldu = Int32(n), ldvt = Int32(k)
        var job = Int8(UInt8(ascii: "S"))
        var job2 = job
        var info: Int32 = 0
        var lwork: Int32 = -1
        var query: Float = 0
        sgesvd_(&job, &job2, &rows, &cols, &work, &ld, &s, &ub, &ldu, &vb, &ldvt, &query, &lwork, &info, 1, 1)
        guard info == 0 else { throw TensorError.linalg("sgesvd workspace query failed (info=\(info))") }
        lwork = Int32(query.rounded(.up)) + 1
        var w = [Float](repeating: 0, count: Int(lwork))
        sgesvd_(&job, &job2, &rows, &cols, &work, &ld, &s, &ub, &ldu, &vb, &ldvt, &w, &lwork, &info, 1, 1)
        guard info == 0 else {
            throw TensorError.linalg(info > 0 ? "sgesvd did not converge (\(info) superdiagonals)" : "sgesvd argument \(-info) invalid")
        }
        return SVDResult(u: vb, s: s, vt: ub, m: m, n: n)
    }

    /// Orthonormal basis of the column space of a row-major `m×n` matrix (`m ≥ n`): the thin `Q`
    /// (`m×n`, row-major) of `A = Q·R`, via `sgeqrf` + `sorgqr`. Matches `numpy.linalg.qr(A)[0]`
    /// (Householder, same sign convention) up to float rounding.
    public static func qrQ(_ a: UnsafeBufferPointer<Float>, m: Int, n: Int) throws -> [Float] {
        precondition(m >= n, "qrQ needs m ≥ n (got \(m)×\(n))")
        if n == 0 { return [] }
        // Transpose into column-major (m × n, lda = m).
        var cm = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { cm[j &* m &+ i] = a[i &* n &+ j] } }
        var mm = Int32(m), nn = Int32(n), kk = Int32(n), lda = Int32(m), info: Int32 = 0
        var tau = [Float](repeating: 0, count: n)
        var lwork: Int32 = -1
        var q1: Float = 0, q2: Float = 0
        sgeqrf_(&mm, &nn, &cm, &lda, &tau, &q1, &lwork, &info)
        sorgqr_(&mm, &nn, &kk, &cm, &lda, tau, &q2, &lwork, &info)
        lwork = Int32(max(q1, q2).rounded(.up)) + 1
        var w = [Float](repeating: 0, count: Int(lwork))
        sgeqrf_(&mm, &nn, &cm, &lda, &tau, &w, &lwork, &info)
        guard info == 0 else { throw TensorError.linalg("sgeqrf failed (info=\(info))") }
        sorgqr_(&mm, &nn, &kk, &cm, &lda, tau, &w, &lwork, &info)
        guard info == 0 else { throw TensorError.linalg("sorgqr failed (info=\(info))") }
        var q = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { q[i &* n &+ j] = cm[j &* m &+ i] } }
        return q
    }

    public static func qrQ(_ a: [Float], m: Int, n: Int) throws -> [Float] {
        try a.withUnsafeBufferPointer { try qrQ($0, m: m, n: n) }
    }
}
