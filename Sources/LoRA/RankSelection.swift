/// How many singular triplets each module keeps.
///
/// Per module (all limits apply together; the smallest rank wins): `maxRank`; `svEpsilon` drops
/// `σᵢ ≤ ε` (mergekit's absolute `--sv-epsilon`); `relativeThreshold` drops `σᵢ ≤ t·σ₁` (kohya's
/// `sv_ratio` as a fraction); `energy` keeps the smallest `r` with `Σ_{i≤r}σᵢ² ≥ e·‖Δ‖_F²` (PEFT
/// `convert_to_lora`'s float rank). Across modules, `RankPolicy.allocate` spends a parameter budget.
public struct RankPolicy: Sendable, Equatable {
    public var maxRank: Int = 64
    public var svEpsilon: Float = 0
    public var relativeThreshold: Float = 0
    public var energy: Double? = nil
    public init() {}

    /// The rank for one module with leading singular values `s` (descending) of a matrix with
    /// `‖Δ‖_F² = totalEnergy`. Zero singular values are never kept.
    public func rank(singularValues s: [Float], totalEnergy: Double) -> Int {
        var r = min(maxRank, s.count)
        while r > 0 && !(s[r - 1] > 0) { r -= 1 }
        if svEpsilon > 0 { r = min(r, s.prefix(r).filter { $0 > svEpsilon }.count) }
        if relativeThreshold > 0, let s1 = s.first {
            r = min(r, s.prefix(r).filter { $0 > relativeThreshold * s1 }.count)
        }
        if let e = energy, totalEnergy > 0 {
            var acc = 0.0, k = 0
            while k < r && acc < e * totalEnergy { acc += Double(s[k]) * Double(s[k]); k += 1 }
            r = k
        }
        return r
    }

    /// Allocates a global budget of `budget` LoRA parameters (`r·(rows+cols)` per module) across
    /// modules by marginal energy per parameter: all candidate triplets `(module j, index i)` with
    /// `i < cap[j]` are taken in order of decreasing `σᵢ²/(rowsⱼ+colsⱼ)` while they fit. Since `σᵢ` is
    /// descending within a module, this is the greedy optimum of retained energy for the budget and
    /// every module gets a prefix of its spectrum. Returns one rank per module.
    public static func allocate(budget: Int, modules: [(singularValues: [Float], cost: Int, cap: Int)]) -> [Int] {
        var candidates = [(gain: Double, module: Int, index: Int)]()
        for (j, m) in modules.enumerated() {
            for i in 0..<min(m.cap, m.singularValues.count) where m.singularValues[i] > 0 {
                let s = Double(m.singularValues[i])
                candidates.append((s * s / Double(max(1, m.cost)), j, i))
            }
        }
        candidates.sort { ($0.gain, -$0.module, -$0.index) > ($1.gain, -$1.module, -$1.index) }
        var ranks = [Int](repeating: 0, count: modules.count)
        var left = budget
        for c in candidates {
            let cost = modules[c.module].cost
            guard cost <= left, ranks[c.module] == c.index else { continue }
            ranks[c.module] += 1
            left -= cost
        }
        return ranks
    }
}
