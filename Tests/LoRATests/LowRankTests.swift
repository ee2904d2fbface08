import Basics
import Foundation
import LoRA
import ModelIO
import TensorCore
import Testing

/// Randomized SVD against LAPACK's exact truncation (Eckart–Young), the low-rank operator against its
/// dense product, and the rank rules against brute force.
@Suite("LoRA math")
struct LowRankTests {
    /// `m × n` matrix with singular values `σᵢ = i^(−decay)` and random orthonormal singular vectors.
    static func matrix(m: Int, n: Int, decay: Double, seed: UInt64) throws -> [Float] {
        var rng = SeededRandom(seed: seed)
        let k = min(m, n)
        var u = try LAPACK.qrQ((0..<(m * k)).map { _ in rng.normal() }, m: m, n: k)
        let v = try LAPACK.qrQ((0..<(n * k)).map { _ in rng.normal() }, m: n, n: k)
        for j in 0..<k { let s = Float(pow(Double(j + 1), -decay)); for i in 0..<m { u[i * k + j] *= s } }
        var a = [Float](repeating: 0, count: m * n)
        BLAS.sgemm(transB: true, m: m, n: n, k: k, a: u, lda: k, b: v, ldb: k, c: &a, ldc: n)
        return a
    }

    static func reconstructionError(_ a: [Float], _ f: LoRAFactors) -> Double {
        let p = f.product()
        var num = 0.0, den = 0.0
        for i in a.indices { let d = Double(a[i] - p[i]); num += d * d; den += Double(a[i]) * Double(a[i]) }
        return (num / den).squareRoot()
    }

    @Test("randomized SVD (q = 2r, 2 power iterations) is within 0.5 % of the exact truncation error", arguments: [(0.3, 16), (0.5, 32), (1.0, 32)])
    func randomizedMatchesExact(decay: Double, r: Int) throws {
        let m = 384, n = 256
        let a = try Self.matrix(m: m, n: n, decay: decay, seed: 3)
        let exact = try a.withUnsafeBufferPointer { try LowRank.exact($0, rows: m, cols: n) }
        let rnd = try a.withUnsafeBufferPointer { try LowRank.randomized(DenseMap($0, rows: m, cols: n), q: 2 * r, powerIterations: 2, seed: 1) }
        let eExact = Self.reconstructionError(a, LoRAFactors(exact, rank: r))
        let eRnd = Self.reconstructionError(a, LoRAFactors(rnd, rank: r))
        // Eckart–Young: exact truncation error = √(tail energy / total).
        #expect(abs(eExact - exact.relativeError(rank: r)) < 1e-5)
        #expect(eRnd <= eExact * 1.005, "randomized \(eRnd) vs exact \(eExact)")
        #expect(eRnd >= eExact * (1 - 1e-5))
        // Total energy is exact even though only q triplets were computed.
        #expect(abs(rnd.totalEnergy - exact.totalEnergy) / exact.totalEnergy < 1e-6)
        // Leading singular values agree.
        for i in 0..<4 { #expect(abs(rnd.s[i] - exact.s[i]) / exact.s[i] < 1e-3) }
    }

    @Test("the same seed gives the same factors; factor splits give the same product")
    func deterministicAndSplits() throws {
        let a = try Self.matrix(m: 64, n: 96, decay: 0.7, seed: 5)
        let s1 = try a.withUnsafeBufferPointer { try LowRank.randomized(DenseMap($0, rows: 64, cols: 96), q: 20, seed: 9) }
        let s2 = try a.withUnsafeBufferPointer { try LowRank.randomized(DenseMap($0, rows: 64, cols: 96), q: 20, seed: 9) }
        #expect(s1.u == s2.u && s1.s == s2.s && s1.vt == s2.vt)
        let p1 = LoRAFactors(s1, rank: 8, split: .sqrt).product()
        for split in [FactorSplit.onA, .onB] {
            let p = LoRAFactors(s1, rank: 8, split: split).product()
            for i in p.indices { #expect(abs(p[i] - p1[i]) < 1e-5) }
        }
    }

    @Test("LowRankSum applies Σ wᵢBᵢAᵢ and its Frobenius norm like the dense sum")
    func lowRankSum() throws {
        var rng = SeededRandom(seed: 4)
        let m = 40, n = 30
        let terms = [(3, Float(0.5)), (5, Float(-2))].map { r, w in
            LowRankTerm(weight: w, b: (0..<(m * r)).map { _ in rng.normal() }, a: (0..<(r * n)).map { _ in rng.normal() }, rank: r)
        }
        var dense = [Float](repeating: 0, count: m * n)
        for t in terms { BLAS.sgemm(m: m, n: n, k: t.rank, alpha: t.weight, a: t.b, lda: t.rank, b: t.a, ldb: n, beta: 1, c: &dense, ldc: n) }
        let map = LowRankSum(rows: m, cols: n, terms: terms)
        let x = (0..<(n * 4)).map { _ in rng.normal() }
        var y1 = [Float](repeating: 0, count: m * 4), y2 = y1
        map.apply(x, q: 4, into: &y1)
        dense.withUnsafeBufferPointer { DenseMap($0, rows: m, cols: n).apply(x, q: 4, into: &y2) }
        for i in y1.indices { #expect(abs(y1[i] - y2[i]) < 1e-3 * (1 + abs(y2[i]))) }
        let z = (0..<(m * 4)).map { _ in rng.normal() }
        var t1 = [Float](repeating: 0, count: n * 4), t2 = t1
        map.applyTransposed(z, q: 4, into: &t1)
        dense.withUnsafeBufferPointer { DenseMap($0, rows: m, cols: n).applyTransposed(z, q: 4, into: &t2) }
        for i in t1.indices { #expect(abs(t1[i] - t2[i]) < 1e-3 * (1 + abs(t2[i]))) }
        let fd = dense.withUnsafeBufferPointer { LowRank.sumOfSquares($0) }
        #expect(abs(map.frobeniusSquared() - fd) / fd < 1e-5)
        // Rank 8 sum: randomized SVD with q = 8 reconstructs it exactly.
        let svd = try LowRank.randomized(map, q: 8, seed: 2)
        let p = LoRAFactors(svd, rank: 8).product()
        var num = 0.0
        for i in p.indices { num += Double(p[i] - dense[i]) * Double(p[i] - dense[i]) }
        #expect((num / fd).squareRoot() < 1e-5)
    }

    @Test("rank rules: max rank, absolute and relative thresholds, energy target")
    func rankRules() {
        let s: [Float] = [10, 5, 2, 1, 0.5, 0]
        let total = s.reduce(0.0) { $0 + Double($1 * $1) } + 1   // 1 of energy outside the computed triplets
        var p = RankPolicy(); p.maxRank = 4
        #expect(p.rank(singularValues: s, totalEnergy: total) == 4)
        p.maxRank = 10
        #expect(p.rank(singularValues: s, totalEnergy: total) == 5)   // zero never kept
        p.svEpsilon = 1
        #expect(p.rank(singularValues: s, totalEnergy: total) == 3)   // σ ≤ ε dropped
        p.svEpsilon = 0; p.relativeThreshold = 0.15
        #expect(p.rank(singularValues: s, totalEnergy: total) == 3)   // 2 > 1.5, 1 ≤ 1.5
        p.relativeThreshold = 0; p.energy = 0.95                      // total 131.25: 100 → 0.762, 125 → 0.952
        #expect(p.rank(singularValues: s, totalEnergy: total) == 2)
    }

    @Test("budget allocation equals the brute-force optimum of retained energy on small cases")
    func budget() {
        var rng = SeededRandom(seed: 8)
        for trial in 0..<20 {
            let mods = (0..<3).map { _ -> (singularValues: [Float], cost: Int, cap: Int) in
                let s = (0..<4).map { _ in Float(rng.uniform() * 5) }.sorted(by: >)
                return (s, 2 + Int(rng.next() % 6), 4)
            }
            let budget = 5 + trial
            let got = RankPolicy.allocate(budget: budget, modules: mods)
            func energy(_ r: [Int]) -> Double { zip(mods, r).reduce(0.0) { acc, p in acc + p.0.singularValues.prefix(p.1).reduce(0.0) { $0 + Double($1 * $1) } } }
            #expect(zip(mods, got).reduce(0) { $0 + $1.0.cost * $1.1 } <= budget)
            // Greedy by energy/parameter is optimal up to one item (knapsack); check it is within the best
            // module's next gain of the brute-force optimum.
            var best = 0.0
            for a in 0...4 { for b in 0...4 { for c in 0...4 where mods[0].cost * a + mods[1].cost * b + mods[2].cost * c <= budget {
                best = max(best, energy([a, b, c]))
            } } }
            let slack = mods.map { Double($0.singularValues[0] * $0.singularValues[0]) }.max()!
            #expect(energy(got) >= best - slack - 1e-9)
        }
    }

    @Test("DARE keeps about density of the entries; PEFT rescales by 1/density, mergekit keeps the L1 norm")
    func dare() {
        var rng = SeededRandom(seed: 12)
        let x = (0..<20000).map { _ in rng.normal() }
        let l1 = x.reduce(0.0) { $0 + Double(abs($1)) }
        var g = SeededRandom(seed: 1)
        let p = TaskMerge.dare(x, density: 0.3, semantics: .peft, rng: &g)
        let kept = p.filter { $0 != 0 }.count
        #expect(abs(Double(kept) / 20000 - 0.3) < 0.015)
        for i in x.indices where p[i] != 0 { #expect(abs(p[i] - x[i] / 0.3) <= 1e-6 * abs(x[i] / 0.3)) }
        var g2 = SeededRandom(seed: 1)
        let m = TaskMerge.dare(x, density: 0.3, semantics: .mergekit, rng: &g2)
        #expect(abs(m.reduce(0.0) { $0 + Double(abs($1)) } - l1) / l1 < 1e-5)
        #expect(zip(p, m).allSatisfy { ($0 == 0) == ($1 == 0) })   // same mask for the same seed
    }

    @Test("TIES trims to ⌊density·n⌋ entries of largest magnitude")
    func trim() {
        let x: [Float] = [0.1, -3, 2, -0.5, 4, 0.2, -1, 0.05, 0.3, 5]
        #expect(TaskMerge.trim(x, density: 0.3, atLeastOne: false) == [0, -3, 0, 0, 4, 0, 0, 0, 0, 5])
        #expect(TaskMerge.trim(x, density: 0.05, atLeastOne: false).allSatisfy { $0 == 0 })
        #expect(TaskMerge.trim(x, density: 0.05, atLeastOne: true).filter { $0 != 0 } == [5])
    }
}
