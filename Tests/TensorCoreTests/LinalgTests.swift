import Testing
@testable import TensorCore

@Suite("BLAS and LAPACK", .serialized)
struct LinalgTests {
    static func randomMatrix(_ m: Int, _ n: Int, seed: UInt64) -> [Float] {
        var r = SplitMix(seed: seed)
        return (0..<(m * n)).map { _ in r.float() }
    }

    /// Naive triple loop in Double: the reference for sgemm.
    static func naive(_ a: [Float], _ b: [Float], m: Int, k: Int, n: Int, transB: Bool) -> [Double] {
        var c = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n {
            var s = 0.0
            for p in 0..<k { s += Double(a[i * k + p]) * Double(transB ? b[j * k + p] : b[p * n + j]) }
            c[i * n + j] = s
        } }
        return c
    }

    @Test(arguments: [(false, 17, 33, 9), (true, 64, 48, 80), (false, 1, 128, 1)])
    func sgemmMatchesNaive(transB: Bool, m: Int, k: Int, n: Int) throws {
        let a = Self.randomMatrix(m, k, seed: 1), b = Self.randomMatrix(transB ? n : k, transB ? k : n, seed: 2)
        let c = try Tensor(shape: [m, k], floats: a).matmul(Tensor(shape: transB ? [n, k] : [k, n], floats: b), transposeOther: transB).floats()
        let ref = Self.naive(a, b, m: m, k: k, n: n, transB: transB)
        for i in 0..<(m * n) { #expect(abs(Double(c[i]) - ref[i]) <= 1e-5 * Double(k)) }
    }

    @Test func sgemmLeadingDimensionsAndTransposeA() {
        // C (2×2) = Aᵀ·B where A is stored 3×4 but only its first 2 columns are used (lda = 4).
        let a: [Float] = [1, 2, 99, 99, 3, 4, 99, 99, 5, 6, 99, 99]
        let b: [Float] = [1, 0, 0, 1, 1, 1]  // 3×2
        var c = [Float](repeating: 0, count: 4)
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
            BLAS.sgemm(transA: true, m: 2, n: 2, k: 3, a: ap.baseAddress!, lda: 4, b: bp.baseAddress!, ldb: 2, c: cp.baseAddress!, ldc: 2)
        } } }
        // Aᵀ = [[1,3,5],[2,4,6]]; Aᵀ·B = [[1+5, 3+5], [2+6, 4+6]]
        #expect(c == [6, 8, 8, 10])
    }

    @Test(arguments: [(40, 25), (25, 40), (64, 64)])
    func svdReconstructsAndIsOrthonormal(m: Int, n: Int) throws {
        let a = Self.randomMatrix(m, n, seed: 3)
        let r = try LAPACK.svd(a, m: m, n: n)
        let k = min(m, n)
        #expect(r.s.count == k)
        for i in 1..<k { #expect(r.s[i - 1] >= r.s[i]) }
        var maxErr = 0.0
        for i in 0..<m { for j in 0..<n {
            var s = 0.0
            for p in 0..<k { s += Double(r.u[i * k + p]) * Double(r.s[p]) * Double(r.vt[p * n + j]) }
            maxErr = max(maxErr, abs(s - Double(a[i * n + j])))
        } }
        #expect(maxErr < 1e-5)
        // UᵀU = I and Vt·Vtᵀ = I.
        for p in 0..<k { for q in 0..<k {
            var uu = 0.0, vv = 0.0
            for i in 0..<m { uu += Double(r.u[i * k + p]) * Double(r.u[i * k + q]) }
            for j in 0..<n { vv += Double(r.vt[p * n + j]) * Double(r.vt[q * n + j]) }
            #expect(abs(uu - (p == q ? 1 : 0)) < 1e-5)
            #expect(abs(vv - (p == q ? 1 : 0)) < 1e-5)
        } }
    }

    @Test func svdOfKnownMatrix() throws {
        // diag(3, 2) embedded in 3×2: singular values are exactly 3 and 2.
        let r = try LAPACK.svd([0, 2, 3, 0, 0, 0], m: 3, n: 2)
        #expect(abs(r.s[0] - 3) < 1e-6 && abs(r.s[1] - 2) < 1e-6)
    }

    @Test func qrGivesOrthonormalBasisOfTheColumnSpace() throws {
        let m = 50, n = 12
        let a = Self.randomMatrix(m, n, seed: 5)
        let q = try LAPACK.qrQ(a, m: m, n: n)
        for p in 0..<n { for r in 0..<n {
            var s = 0.0
            for i in 0..<m { s += Double(q[i * n + p]) * Double(q[i * n + r]) }
            #expect(abs(s - (p == r ? 1 : 0)) < 1e-5)
        } }
        // A = Q (QᵀA): projecting A onto Q's span loses nothing.
        var maxErr = 0.0
        for j in 0..<n {
            var coef = [Double](repeating: 0, count: n)
            for p in 0..<n { for i in 0..<m { coef[p] += Double(q[i * n + p]) * Double(a[i * n + j]) } }
            for i in 0..<m {
                var s = 0.0
                for p in 0..<n { s += Double(q[i * n + p]) * coef[p] }
                maxErr = max(maxErr, abs(s - Double(a[i * n + j])))
            }
        }
        #expect(maxErr < 1e-5)
    }

    @Test func threadControl() {
        let before = BLAS.threads
        BLAS.threads = 1
        #expect(BLAS.threads == 1)
        BLAS.threads = before
        #expect(BLAS.configuration.contains("OpenBLAS"))
    }
}
