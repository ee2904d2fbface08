import Basics
import ModelIO
import TensorCore

/// A real matrix `M` (`rows × cols`) known only through products with blocks of vectors, so a
/// truncated SVD can be taken of a sum of low-rank terms without forming it densely.
///
/// All blocks are row-major: `apply` maps `x` (`cols × q`) to `M·x` (`rows × q`); `applyTransposed`
/// maps `y` (`rows × q`) to `Mᵀ·y` (`cols × q`).
public protocol LinearMap {
    var rows: Int { get }
    var cols: Int { get }
    func apply(_ x: UnsafePointer<Float>, q: Int, into out: UnsafeMutablePointer<Float>)
    func applyTransposed(_ y: UnsafePointer<Float>, q: Int, into out: UnsafeMutablePointer<Float>)
    /// `‖M‖_F²`, accumulated in `Double`.
    func frobeniusSquared() -> Double
}

/// A dense row-major `rows × cols` matrix borrowed for the duration of a computation.
public struct DenseMap: LinearMap {
    public let a: UnsafeBufferPointer<Float>
    public let rows: Int, cols: Int
    public init(_ a: UnsafeBufferPointer<Float>, rows: Int, cols: Int) {
        precondition(a.count >= rows * cols)
        self.a = a; self.rows = rows; self.cols = cols
    }
    public func apply(_ x: UnsafePointer<Float>, q: Int, into out: UnsafeMutablePointer<Float>) {
        BLAS.sgemm(m: rows, n: q, k: cols, a: a.baseAddress!, lda: cols, b: x, ldb: q, c: out, ldc: q)
    }
    public func applyTransposed(_ y: UnsafePointer<Float>, q: Int, into out: UnsafeMutablePointer<Float>) {
        BLAS.sgemm(transA: true, m: cols, n: q, k: rows, a: a.baseAddress!, lda: cols, b: y, ldb: q, c: out, ldc: q)
    }
    public func frobeniusSquared() -> Double { LowRank.sumOfSquares(a) }
}

/// One term `w·B·A` of a low-rank sum: `B` is `rows × r`, `A` is `r × cols`, both row-major f32.
public struct LowRankTerm: Sendable {
    public var weight: Float
    public var b: [Float]
    public var a: [Float]
    public var rank: Int
    public init(weight: Float, b: [Float], a: [Float], rank: Int) {
        self.weight = weight; self.b = b; self.a = a; self.rank = rank
    }
}

/// `M = Σ wᵢ·Bᵢ·Aᵢ`, applied factor by factor (`Bᵢ·(Aᵢ·x)`): never formed densely.
public struct LowRankSum: LinearMap {
    public let rows: Int, cols: Int
    public let terms: [LowRankTerm]
    public init(rows: Int, cols: Int, terms: [LowRankTerm]) {
        for t in terms { precondition(t.b.count == rows * t.rank && t.a.count == t.rank * cols, "low-rank term shape") }
        self.rows = rows; self.cols = cols; self.terms = terms
    }
    public func apply(_ x: UnsafePointer<Float>, q: Int, into out: UnsafeMutablePointer<Float>) {
        out.update(repeating: 0, count: rows * q)
        for t in terms where t.rank > 0 {
            var tmp = [Float](repeating: 0, count: t.rank * q)
            t.a.withUnsafeBufferPointer { a in
                BLAS.sgemm(m: t.rank, n: q, k: cols, a: a.baseAddress!, lda: cols, b: x, ldb: q, c: &tmp, ldc: q)
            }
            t.b.withUnsafeBufferPointer { b in
                BLAS.sgemm(m: rows, n: q, k: t.rank, alpha: t.weight, a: b.baseAddress!, lda: t.rank, b: tmp, ldb: q,
                           beta: 1, c: out, ldc: q)
            }
        }
    }
    public func applyTransposed(_ y: UnsafePointer<Float>, q: Int, into out: UnsafeMutablePointer<Float>) {
        out.update(repeating: 0, count: cols * q)
        for t in terms where t.rank > 0 {
            var tmp = [Float](repeating: 0, count: t.rank * q)
            t.b.withUnsafeBufferPointer { b in
                BLAS.sgemm(transA: true, m: t.rank, n: q, k: rows, a: b.baseAddress!, lda: t.rank, b: y, ldb: q, c: &tmp, ldc: q)
            }
            t.a.withUnsafeBufferPointer { a in
                BLAS.sgemm(transA: true, m: cols, n: q, k: t.rank, alpha: t.weight, a: a.baseAddress!, lda: cols, b: tmp, ldb: q,
                           beta: 1, c: out, ldc: q)
            }
        }
    }
    /// `‖Σ wᵢBᵢAᵢ‖_F² = Σᵢⱼ wᵢwⱼ·⟨BᵢᵀBⱼ, AᵢAⱼᵀ⟩` from the small Gram matrices (exact, no dense product).
    public func frobeniusSquared() -> Double {
        var total = 0.0
        for (i, ti) in terms.enumerated() where ti.rank > 0 {
            for (j, tj) in terms.enumerated() where tj.rank > 0 && j >= i {
                var bb = [Float](repeating: 0, count: ti.rank * tj.rank)
                var aa = [Float](repeating: 0, count: ti.rank * tj.rank)
                BLAS.sgemm(transA: true, m: ti.rank, n: tj.rank, k: rows, a: ti.b, lda: ti.rank, b: tj.b, ldb: tj.rank, c: &bb, ldc: tj.rank)
                BLAS.sgemm(transB: true, m: ti.rank, n: tj.rank, k: cols, a: ti.a, lda: cols, b: tj.a, ldb: cols, c: &aa, ldc: tj.rank)
                var s = 0.0
                for k in 0..<bb.count { s += Double(bb[k]) * Double(aa[k]) }
                total += (i == j ? 1 : 2) * Double(ti.weight) * Double(tj.weight) * s
            }
        }
        return max(total, 0)
    }
}

/// The leading `k` singular triplets of a matrix: `M ≈ U·diag(S)·Vt`, with `U` `rows × k` and `Vt`
/// `k × cols`, both row-major; `s` descending. `totalEnergy` is `‖M‖_F²` (all singular values, not only
/// these), so the energy retained and the truncation error of any rank `r ≤ k` are exact.
public struct TruncatedSVD: Sendable {
    public var u: [Float]
    public var s: [Float]
    public var vt: [Float]
    public var rows: Int, cols: Int
    public var totalEnergy: Double
    /// True when computed by the randomized range finder rather than LAPACK on the whole matrix.
    public var randomized: Bool
    public var k: Int { s.count }

    /// `Σ_{i<r} σᵢ²`.
    public func energy(rank r: Int) -> Double { s.prefix(r).reduce(0.0) { $0 + Double($1) * Double($1) } }
    /// Fraction of `‖M‖_F²` kept by rank `r` (1 for a zero matrix).
    public func energyRetained(rank r: Int) -> Double { totalEnergy > 0 ? min(1, energy(rank: r) / totalEnergy) : 1 }
    /// `‖M − M_r‖_F / ‖M‖_F = √(1 − energy retained)` (Eckart–Young).
    public func relativeError(rank r: Int) -> Double { (max(0, 1 - energyRetained(rank: r))).squareRoot() }
}

/// Truncated SVDs: exact (LAPACK) and randomized (Halko–Martinsson–Tropp with power iterations), and
/// the factor split that turns them into LoRA `A`/`B` matrices.
public enum LowRank {
    /// `Σ xᵢ²` in Double.
    public static func sumOfSquares(_ a: UnsafeBufferPointer<Float>) -> Double {
        var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
        let n = a.count
        var i = 0
        while i &+ 4 <= n {
            let x0 = Double(a[i]), x1 = Double(a[i &+ 1]), x2 = Double(a[i &+ 2]), x3 = Double(a[i &+ 3])
            s0 += x0 * x0; s1 += x1 * x1; s2 += x2 * x2; s3 += x3 * x3
            i &+= 4
        }
        while i < n { let x = Double(a[i]); s0 += x * x; i &+= 1 }
        return s0 + s1 + s2 + s3
    }

    /// Exact thin SVD of a dense row-major `rows × cols` matrix (LAPACK `sgesdd`, `sgesvd` fallback, as
    /// `torch.linalg.svd(full_matrices=False)` on CPU), truncated to the leading `keep` triplets.
    public static func exact(_ a: UnsafeBufferPointer<Float>, rows: Int, cols: Int, keep: Int? = nil) throws -> TruncatedSVD {
        let r = try LAPACK.svd(a, m: rows, n: cols)
        let k = min(keep ?? r.k, r.k)
        var u = [Float](repeating: 0, count: rows * k)
        for i in 0..<rows { for j in 0..<k { u[i &* k &+ j] = r.u[i &* r.k &+ j] } }
        return TruncatedSVD(u: u, s: Array(r.s.prefix(k)), vt: Array(r.vt.prefix(k * cols)), rows: rows, cols: cols,
                            totalEnergy: sumOfSquares(a), randomized: false)
    }

    /// Randomized truncated SVD of `map` with a subspace of `q` columns (target rank + oversampling) and
    /// `powerIterations` subspace iterations, re-orthonormalised by QR after every half-step, exactly as
    /// `torch.svd_lowrank(M, q, niter)` / `get_approximate_basis` (HMT 2011, Alg. 4.4 + 5.1):
    /// `Q = qr(M·Ω)`, then `niter × {Q = qr(Mᵀ·Q); Q = qr(M·Q)}`, `B = Qᵀ·M` (`q × cols`), LAPACK SVD of `B`,
    /// `U = Q·U_B`. `Ω` is `cols × q` standard normal from `SeededRandom(seed)`: deterministic.
    /// Requires `q ≤ min(rows, cols)`. Returns `q` triplets; `totalEnergy` from `map.frobeniusSquared()`.
    public static func randomized(_ map: some LinearMap, q: Int, powerIterations: Int = 2, seed: UInt64 = 0) throws -> TruncatedSVD {
        let m = map.rows, n = map.cols
        precondition(q >= 1 && q <= min(m, n), "randomized SVD needs 1 ≤ q ≤ min(rows, cols)")
        var rng = SeededRandom(seed: seed)
        let omega = (0..<(n * q)).map { _ in rng.normal() }
        var y = [Float](repeating: 0, count: m * q)
        var z = [Float](repeating: 0, count: n * q)
        omega.withUnsafeBufferPointer { o in y.withUnsafeMutableBufferPointer { map.apply(o.baseAddress!, q: q, into: $0.baseAddress!) } }
        var qm = try LAPACK.qrQ(y, m: m, n: q)
        for _ in 0..<powerIterations {
            qm.withUnsafeBufferPointer { qb in z.withUnsafeMutableBufferPointer { map.applyTransposed(qb.baseAddress!, q: q, into: $0.baseAddress!) } }
            let qz = try LAPACK.qrQ(z, m: n, n: q)
            qz.withUnsafeBufferPointer { qb in y.withUnsafeMutableBufferPointer { map.apply(qb.baseAddress!, q: q, into: $0.baseAddress!) } }
            qm = try LAPACK.qrQ(y, m: m, n: q)
        }
        // Bᵀ = Mᵀ·Q (cols × q). SVD of Bᵀ = U'·S·V'ᵀ gives B = V'·S·U'ᵀ: U_B = V', Vt_B = U'ᵀ.
        qm.withUnsafeBufferPointer { qb in z.withUnsafeMutableBufferPointer { map.applyTransposed(qb.baseAddress!, q: q, into: $0.baseAddress!) } }
        let small = try LAPACK.svd(z, m: n, n: q)
        // U = Q·U_B = Q·(V'ᵀ)ᵀ, where small.vt is V'ᵀ (q × q).
        var u = [Float](repeating: 0, count: m * q)
        BLAS.sgemm(transB: true, m: m, n: q, k: q, a: qm, lda: q, b: small.vt, ldb: q, c: &u, ldc: q)
        var vt = [Float](repeating: 0, count: q * n)
        small.u.withUnsafeBufferPointer { su in
            vt.withUnsafeMutableBufferPointer { v in
                for i in 0..<n { for j in 0..<q { v[j &* n &+ i] = su[i &* q &+ j] } }
            }
        }
        return TruncatedSVD(u: u, s: small.s, vt: vt, rows: m, cols: n, totalEnergy: map.frobeniusSquared(), randomized: true)
    }

    /// Whether LAPACK on the whole matrix is the cheaper (or only) way to get `q` triplets of a
    /// `rows × cols` matrix: randomized costs about `(2 + 4·niter)·rows·cols·q` flops, a full SVD about
    /// `10·rows·cols·min(rows, cols)` at a lower rate; exact wins once `q` is a third of `min(rows, cols)`.
    public static func exactIsCheaper(rows: Int, cols: Int, q: Int) -> Bool { 3 * q >= min(rows, cols) }
}

/// Where the singular values go when a truncated SVD `U·S·Vt` becomes LoRA factors `B·A`.
public enum FactorSplit: String, Sendable, CaseIterable {
    /// `B = U·√S`, `A = √S·Vt` (mergekit ≥ 0.1 default, `--distribute-scale`).
    case sqrt
    /// `B = U·S`, `A = Vt` (PEFT's `convert_to_lora`, kohya, the original mergekit script).
    case onB = "b"
    /// `B = U`, `A = S·Vt` (mergekit `--no-distribute-scale`).
    case onA = "a"
}

/// LoRA factors of one module: `B` (`rows × rank`) and `A` (`rank × cols`), row-major f32, `B·A ≈ M`.
public struct LoRAFactors: Sendable {
    public var a: [Float]
    public var b: [Float]
    public var rank: Int
    public var rows: Int, cols: Int
    public init(a: [Float], b: [Float], rank: Int, rows: Int, cols: Int) {
        self.a = a; self.b = b; self.rank = rank; self.rows = rows; self.cols = cols
    }

    /// The leading `rank` triplets of `svd` split as `split`, each factor then multiplied by `factorScale`
    /// (the portable-scaling compensation `√(r/R)`; 1 for none).
    public init(_ svd: TruncatedSVD, rank: Int, split: FactorSplit = .sqrt, factorScale: Float = 1) {
        precondition(rank <= svd.k)
        let m = svd.rows, n = svd.cols, k = svd.k
        var a = [Float](repeating: 0, count: rank * n)
        var b = [Float](repeating: 0, count: m * rank)
        for j in 0..<rank {
            let sigma = svd.s[j]
            let (sb, sa): (Float, Float) = switch split {
            case .sqrt: (sigma.squareRoot(), sigma.squareRoot())
            case .onB: (sigma, 1)
            case .onA: (1, sigma)
            }
            let fa = sa * factorScale, fb = sb * factorScale
            for i in 0..<n { a[j &* n &+ i] = fa * svd.vt[j &* n &+ i] }
            for i in 0..<m { b[i &* rank &+ j] = fb * svd.u[i &* k &+ j] }
        }
        self.init(a: a, b: b, rank: rank, rows: m, cols: n)
    }

    /// `B·A` densely (`rows × cols`), for tests and reports.
    public func product() -> [Float] {
        var c = [Float](repeating: 0, count: rows * cols)
        if rank > 0 { BLAS.sgemm(m: rows, n: cols, k: rank, a: b, lda: rank, b: a, ldb: cols, c: &c, ldc: cols) }
        return c
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Memory hygiene for streaming over memory-mapped checkpoints.
enum MappedPages {
    /// Drops the resident pages of a zero-copy tensor view from this process (`madvise(MADV_DONTNEED)`
    /// on the whole pages inside it): the mapping is read-only, so later reads fault the same bytes back
    /// in from the page cache. Keeps resident memory bounded by the tensors in flight, not the model.
    /// No effect on tensors that own their memory.
    static func release(_ t: Tensor) {
        guard !t.storage.isOwned, t.byteCount > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = Int(bitPattern: t.rawPointer)
        let lo = (start + page - 1) / page * page, hi = (start + t.byteCount) / page * page
        guard hi > lo, let p = UnsafeMutableRawPointer(bitPattern: lo) else { return }
        _ = madvise(p, hi - lo, Int32(MADV_DONTNEED))
    }
}
