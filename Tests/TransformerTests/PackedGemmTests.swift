import Basics
import CKernels
import Testing
import TensorCore
@testable import Transformer

/// Our packed SGEMM (`ck_sgemm` through ``LayerOps/gemm(transA:transB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:workers:engine:)``)
/// on every path the CPU supports (a path it lacks shows as skipped), against a Double reference and OpenBLAS.
/// Bound per element: |c − c_ref| ≤ 1e-5·(|α|·Σ_k |a·b| + |β·c₀|) + tiny (f32 summation of ≤ 1,200 terms stays
/// near k·2⁻²⁴ ≈ 7e-5 in the worst case, in practice ≤ √k·2⁻²⁴; 1e-5 of the absolute sum is what the brief asks).
/// Shapes: m, n, k not multiples of the register tile (14 × 32 / 6 × 16) or of the k block (320 / 256), k = 1,
/// k = 0, n past one n block (2048), row strides larger than the rows, all four transposes, β 0 and 1, α ≠ 1.
@Suite struct PackedGemmTests {
    static let shapes: [(m: Int, n: Int, k: Int)] = [
        (1, 1, 1), (15, 33, 1), (14, 32, 320), (29, 65, 321), (37, 45, 7), (100, 17, 641), (8, 2100, 40),
        (61, 97, 1030), (3, 5, 0),
    ]

    @Test(.enabled(if: KernelPath.avx512.isSupported, "this CPU lacks AVX-512: the 14 × 32 kernel is not run"))
    func avx512MatchesReferences() { check(.avx512) }

    @Test(.enabled(if: KernelPath.avx2.isSupported, "this CPU lacks AVX2+FMA: the 6 × 16 kernel is not run"))
    func avx2MatchesReferences() { check(.avx2) }

    /// bf16x3 on AMX tiles (α = 1, β 0 and 1: the cases the engine takes) against the Double reference with the same
    /// bound as the f32 kernels, and beside OpenBLAS: per problem the worst `|c − c_ref| / scale` stays within twice
    /// OpenBLAS's own worst, or 2⁻²¹ (for tiny k OpenBLAS is near exact while a bf16x3 product carries its dropped
    /// terms, ≤ 3·2⁻²⁴ of |a·b|, and the rounding of its six partial products).
    @Test(.enabled(if: GemmEngine.amxAvailable, "no AMX here (or the kernel refused the tile state): bf16x3 is not run"))
    func amxMatchesReferences() {
        var seed: UInt64 = 100
        for (m, n, k) in Self.shapes + [(70, 1100, 33), (33, 31, 1100)] {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                for beta: Float in [0, 1] {
                    seed += 1
                    let p = GemmProblem(ta: ta, tb: tb, m: m, n: n, k: k, alpha: 1, beta: beta, seed: seed)
                    #expect(GemmEngine.amx.packedPath(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 1, beta: beta)
                            == CK_SGEMM_AMX)
                    let ours = p.run(.amx, workers: 2), blas = p.run(.openBLAS, workers: 1)
                    let e = p.worstError(ours), eBLAS = p.worstError(blas)
                    #expect(e.padding == 0 && e.worst <= 1e-5, "AMX \(ta)\(tb) \(m)×\(n)×\(k) β\(beta): \(e)")
                    #expect(e.worst <= max(2 * eBLAS.worst, 0x1p-21),
                            "AMX \(ta)\(tb) \(m)×\(n)×\(k) β\(beta): \(e.worst) against OpenBLAS's \(eBLAS.worst)")
                }
            }
        }
    }

    /// AMX takes only α = 1 and β ∈ {0, 1}; anything else runs OpenBLAS (the same bits).
    @Test func amxFallsBackOutsideItsCases() {
        let p = GemmProblem(ta: false, tb: true, m: 40, n: 50, k: 60, alpha: 0.5, beta: 1, seed: 3)
        #expect(GemmEngine.amx.packedPath(transA: false, transB: true, m: 40, n: 50, k: 60, alpha: 0.5, beta: 1) == nil)
        #expect(p.run(.amx, workers: 2) == p.run(.openBLAS, workers: 2))
    }

    /// The same bits for 1, 2, 3 and 5 workers (each C element summed by one thread in a fixed k order).
    @Test(.enabled(if: KernelPath.avx2.isSupported, "this CPU lacks AVX2+FMA: no packed kernel to run"))
    func resultDoesNotDependOnWorkers() {
        let engines = KernelPath.supported.filter { $0 != .portable }.map { GemmEngine.packed($0) }
            + (GemmEngine.amxAvailable ? [.amx] : [])
        for engine in engines {
            for (ta, tb, m, n, k) in [(false, true, 203, 2100, 700), (true, false, 150, 90, 1000), (false, false, 77, 300, 33),
                                      (true, true, 300, 64, 1500)] {
                let p = GemmProblem(ta: ta, tb: tb, m: m, n: n, k: k, alpha: 1, beta: 1, seed: 5)
                let one = p.run(engine, workers: 1)
                for w in [2, 3, 5] {
                    #expect(p.run(engine, workers: w) == one, "\(engine) \(ta)\(tb) \(m)×\(n)×\(k): workers \(w)")
                    // AMX runs one compute worker by default (GemmEngine.amxWorkers): also w of them.
                    if engine == .amx {
                        #expect(p.runAMX(computeWorkers: w) == one,
                                "AMX \(ta)\(tb) \(m)×\(n)×\(k): \(w) compute workers")
                    }
                }
            }
        }
    }

    /// The trainer's engine takes AMX for products of ≥ 8 rows and 2¹⁶ multiply-adds where AMX runs (unless
    /// `LONGCTX_GEMM` says otherwise), and ``GemmEngine/automatic``'s choice for the rest — the AMX bits on a large
    /// product, OpenBLAS's or our f32 kernels' on a small one.
    @Test func amxPreferredTakesLargeProducts() {
        let large = (ta: false, tb: true, m: 64, n: 96, k: 40), small = (ta: true, tb: false, m: 4, n: 96, k: 40)
        let amxHere = GemmEngine.amxAvailable && (GemmEngine.forced == nil || GemmEngine.forced == "amx-preferred")
        #expect(GemmEngine.amxPreferred.packedPath(transA: large.ta, transB: large.tb, m: large.m, n: large.n,
                                                   k: large.k, alpha: 1, beta: 0)
                == (amxHere ? CK_SGEMM_AMX
                    : GemmEngine.automatic.packedPath(transA: large.ta, transB: large.tb, m: large.m, n: large.n,
                                                      k: large.k, alpha: 1, beta: 0)))
        #expect(GemmEngine.amxPreferred.packedPath(transA: small.ta, transB: small.tb, m: small.m, n: small.n,
                                                   k: small.k, alpha: 1, beta: 1)
                == GemmEngine.automatic.packedPath(transA: small.ta, transB: small.tb, m: small.m, n: small.n,
                                                   k: small.k, alpha: 1, beta: 1))
        let p = GemmProblem(ta: large.ta, tb: large.tb, m: large.m, n: large.n, k: large.k, alpha: 1, beta: 0, seed: 11)
        #expect(p.run(.amxPreferred, workers: 2) == p.run(amxHere ? .amx : .automatic, workers: 2))
        let q = GemmProblem(ta: small.ta, tb: small.tb, m: small.m, n: small.n, k: small.k, alpha: 1, beta: 1, seed: 12)
        #expect(q.run(.amxPreferred, workers: 2) == q.run(.automatic, workers: 2))
    }

    /// A path the CPU lacks (and the portable one) falls back to OpenBLAS: the OpenBLAS bits.
    @Test func portableRunsOpenBLAS() {
        let p = GemmProblem(ta: false, tb: true, m: 20, n: 30, k: 40, alpha: 1, beta: 0, seed: 9)
        #expect(p.run(.packed(.portable), workers: 2) == p.run(.openBLAS, workers: 2))
    }

    func check(_ path: KernelPath) {
        var seed: UInt64 = 1
        for (m, n, k) in Self.shapes {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                for (alpha, beta): (Float, Float) in [(1, 0), (0.5, 1)] {
                    seed += 1
                    let p = GemmProblem(ta: ta, tb: tb, m: m, n: n, k: k, alpha: alpha, beta: beta, seed: seed)
                    let ours = p.run(.packed(path), workers: 2), blas = p.run(.openBLAS, workers: 1)
                    let (ref, scale) = p.reference()
                    var worst = 0.0
                    for i in 0..<p.m {
                        for j in 0..<p.ldc {
                            let at = i * p.ldc + j
                            if j >= p.n {
                                // Padding columns of C are never written.
                                #expect(ours[at] == p.c0[at], "\(path) wrote C padding [\(i),\(j)]")
                                continue
                            }
                            let bound = 1e-5 * scale[i * p.n + j] + 1e-30
                            let e = abs(Double(ours[at]) - ref[i * p.n + j])
                            worst = max(worst, e / bound)
                            #expect(abs(Double(ours[at]) - Double(blas[at])) <= 2 * bound,
                                    "\(path) vs OpenBLAS \(ta)\(tb) \(m)×\(n)×\(k) α\(alpha) β\(beta) [\(i),\(j)]")
                        }
                    }
                    #expect(worst <= 1, "\(path) vs Double \(ta)\(tb) \(m)×\(n)×\(k) α\(alpha) β\(beta): \(worst) of the bound")
                }
            }
        }
    }
}

/// One product with strided operands: A, B with row strides 3 and 5 past their rows, C with 2 padding columns;
/// β = 0 problems start C at NaN (BLAS semantics: C is not read).
struct GemmProblem {
    let ta: Bool, tb: Bool, m: Int, n: Int, k: Int, alpha: Float, beta: Float
    let lda: Int, ldb: Int, ldc: Int
    let a: [Float], b: [Float], c0: [Float]

    init(ta: Bool, tb: Bool, m: Int, n: Int, k: Int, alpha: Float, beta: Float, seed: UInt64) {
        self.ta = ta; self.tb = tb; self.m = m; self.n = n; self.k = k; self.alpha = alpha; self.beta = beta
        let lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2
        self.lda = lda; self.ldb = ldb; self.ldc = ldc
        var r = SeededRandom(seed: seed)
        a = (0..<((ta ? k : m) * lda)).map { _ in r.normal() }
        b = (0..<((tb ? n : k) * ldb)).map { _ in r.normal() }
        c0 = (0..<(m * ldc)).map { j in beta == 0 && j % ldc < n ? Float.nan : r.normal() }
    }

    func opA(_ i: Int, _ p: Int) -> Double { Double(ta ? a[p * lda + i] : a[i * lda + p]) }
    func opB(_ p: Int, _ j: Int) -> Double { Double(tb ? b[j * ldb + p] : b[p * ldb + j]) }

    func run(_ engine: GemmEngine, workers: Int) -> [Float] {
        var c = c0
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
            LayerOps.gemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: ap.baseAddress!, lda: lda,
                          b: bp.baseAddress!, ldb: ldb, beta: beta, c: cp.baseAddress!, ldc: ldc, workers: workers,
                          engine: engine)
        }}}
        return c
    }

    /// The AMX path with `computeWorkers` threads splitting the rows of C (``GemmEngine/amxWorkers`` caps it in
    /// ``LayerOps/gemm(transA:transB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:workers:engine:)``).
    func runAMX(computeWorkers: Int) -> [Float] {
        var c = c0
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
            #expect(LayerOps.packedGemm(path: CK_SGEMM_AMX, transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha,
                                        a: ap.baseAddress!, lda: lda, b: bp.baseAddress!, ldb: ldb, beta: beta,
                                        c: cp.baseAddress!, ldc: ldc, workers: computeWorkers,
                                        computeWorkers: computeWorkers))
        }}}
        return c
    }

    /// The worst `|c − c_ref| / scale` over C (scale = |α|·Σ|a·b| + |β·c₀|, see ``reference()``) and the number of
    /// padding elements of C that `c` changed.
    func worstError(_ c: [Float]) -> (worst: Double, padding: Int) {
        let (ref, scale) = reference()
        var worst = 0.0, padding = 0
        for i in 0..<m {
            for j in 0..<ldc {
                let at = i * ldc + j
                if j >= n {
                    if c[at] != c0[at] { padding += 1 }
                    continue
                }
                let e = abs(Double(c[at]) - ref[i * n + j]) / max(scale[i * n + j], 1e-30)
                worst = max(worst, e.isNaN ? .infinity : e)
            }
        }
        return (worst, padding)
    }

    /// α·op(A)·op(B) + β·C₀ in Double, and |α|·Σ|a·b| + |β·c₀| per element.
    func reference() -> (value: [Double], scale: [Double]) {
        var value = [Double](repeating: 0, count: m * n), scale = value
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0, s1 = 0.0
                for p in 0..<k {
                    let t = opA(i, p) * opB(p, j)
                    s += t; s1 += abs(t)
                }
                let c = beta == 0 ? 0 : Double(beta) * Double(c0[i * ldc + j])
                value[i * n + j] = Double(alpha) * s + c
                scale[i * n + j] = abs(Double(alpha)) * s1 + abs(c)
            }
        }
        return (value, scale)
    }
}
