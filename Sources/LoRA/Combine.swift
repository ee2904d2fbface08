import Basics
import Foundation
import ModelIO
import TensorCore

/// How `longctx lora combine` mixes adapters.
public enum CombineMethod: String, Sendable, CaseIterable {
    /// Concatenate factors: `B' = [B₁ … Bₙ]`, `A' = [w₁s₁A₁; …; wₙsₙAₙ]` (√|wᵢsᵢ| on each side), so
    /// `B'A' = Σ wᵢsᵢBᵢAᵢ` exactly; rank `Σ rᵢ` (PEFT `cat`).
    case cat
    /// Truncated SVD of `Σ wᵢsᵢBᵢAᵢ`, applied factor by factor without forming the sum; exact when the
    /// rank is at least `Σ rᵢ` (PEFT `svd`).
    case svd
    /// TIES (trim by magnitude to `density`, elect signs, disjoint merge) on the dense deltas, then SVD.
    case ties
    /// DARE (random drop with keep probability `density`, rescale) summed with weights, then SVD.
    case dareLinear = "dare_linear"
    /// DARE drop and rescale, then TIES sign election and disjoint merge, then SVD.
    case dareTies = "dare_ties"
}

/// Whose definition of TIES/DARE to follow (they differ when weights are not all 1).
public enum MergeSemantics: String, Sendable, CaseIterable {
    /// PEFT `merge_utils`: signs elected on the unweighted trimmed deltas ("total"), the weighted sum of
    /// agreeing entries divided by their count; DARE rescales by `1/density`.
    case peft
    /// mergekit `generalized_task_arithmetic`: signs elected on the weighted deltas ("sum"), TIES divides by
    /// the sum of agreeing weights; DARE rescales to keep the L1 norm and is not normalised.
    case mergekit
}

public struct CombineOptions: Sendable {
    public var method: CombineMethod = .cat
    public var semantics: MergeSemantics = .peft
    /// Weights per adapter (default 1).
    public var weights: [Double]? = nil
    /// Rank of the result for svd/ties/dare (default: `Σ rᵢ` for svd, the largest `rᵢ` otherwise).
    public var rank: Int? = nil
    public var density: Double = 0.5
    /// PEFT's `majority_sign_method`: `total` (sum of values) or `frequency` (count of signs).
    public var majoritySignByCount = false
    public var seed: UInt64 = 0
    public var exact = false
    public var powerIterations = 2
    public var factorDType: DType = .f32
    public var scaling: ScalingMode = .portable
    public init() {}
}

public struct CombineReport: Codable, Sendable {
    public struct Module: Codable, Sendable {
        public var module: String
        public var rank: Int
        /// `‖D − B'A'‖_F/‖D‖_F` for the combined delta `D` of the chosen method.
        public var relativeError: Double
        enum CodingKeys: String, CodingKey { case module, rank, relativeError = "relative_error" }
    }
    public var out: String
    public var method: String
    public var semantics: String
    public var adapters: [String]
    public var weights: [Double]
    public var modules: [Module]
    public var seconds: Double
}

/// Element-wise merges of task tensors (`Δᵢ`, each `count` floats), with PEFT's or mergekit's semantics.
/// Pure functions; the formulas are quoted from `peft.utils.merge_utils` and `mergekit.merge_methods.generalized_task_arithmetic`.
public enum TaskMerge {
    /// Keeps the `k` entries of largest magnitude (`k = ⌊density·n⌋`, at least 1 for mergekit), zeroing the rest.
    public static func trim(_ x: [Float], density: Double, atLeastOne: Bool) -> [Float] {
        if density >= 1 { return x }
        var k = Int(density * Double(x.count))
        if atLeastOne && density > 0 && !x.isEmpty { k = max(1, k) }
        if k <= 0 { return [Float](repeating: 0, count: x.count) }
        var mags = x.map { abs($0) }
        mags.sort(by: >)
        let thr = mags[k - 1]
        var above = x.reduce(0) { $0 + (abs($1) > thr ? 1 : 0) }
        var out = [Float](repeating: 0, count: x.count)
        for i in x.indices {
            let a = abs(x[i])
            if a > thr { out[i] = x[i] }
            else if a == thr && above < k { out[i] = x[i]; above += 1 }
        }
        return out
    }

    /// DARE drop: keep each entry with probability `density` (uniforms from `rng`), then rescale by
    /// `1/density` (PEFT) or by `‖x‖₁/‖kept‖₁` (mergekit `RescaleNorm.l1`).
    public static func dare(_ x: [Float], density: Double, semantics: MergeSemantics, rng: inout SeededRandom) -> [Float] {
        if density >= 1 { return x }
        var out = x.map { v -> Float in rng.uniform() < density ? v : 0 }
        switch semantics {
        case .peft:
            let s = Float(1 / density)
            for i in out.indices { out[i] *= s }
        case .mergekit:
            let before = x.reduce(0.0) { $0 + Double(abs($1)) }, after = out.reduce(0.0) { $0 + Double(abs($1)) }
            if after > 1e-7 { let s = Float(before / after); for i in out.indices { out[i] *= s } }
        }
        return out
    }

    /// TIES sign election and disjoint merge of already-trimmed tensors `t` with `weights`:
    /// PEFT: `sign = sgn(Σᵢ tᵢ)` (or `Σᵢ sgn(tᵢ)`), `Σᵢ wᵢtᵢ·[sgn tᵢ = sign] / max(1, Σᵢ[sgn tᵢ = sign])`;
    /// mergekit: `sign = sgn(Σᵢ wᵢtᵢ)` (or count), `Σᵢ wᵢtᵢ·mᵢ / (Σᵢ wᵢmᵢ, 0 → 1)` when `normalize`.
    public static func disjointMerge(_ t: [[Float]], weights: [Float], semantics: MergeSemantics, byCount: Bool, normalize: Bool) -> [Float] {
        let n = t.first?.count ?? 0
        var out = [Float](repeating: 0, count: n)
        for j in 0..<n {
            var elect: Float = 0
            for i in t.indices {
                let v = semantics == .peft ? t[i][j] : weights[i] * t[i][j]
                elect += byCount ? (v > 0 ? 1 : v < 0 ? -1 : 0) : v
            }
            let sign: Float = elect >= 0 ? 1 : -1
            var sum: Float = 0, div: Float = 0
            for i in t.indices {
                let v = semantics == .peft ? t[i][j] : weights[i] * t[i][j]
                let s: Float = v > 0 ? 1 : v < 0 ? -1 : 0
                if s == sign {
                    sum += weights[i] * t[i][j]
                    div += semantics == .peft ? 1 : weights[i]
                }
            }
            switch semantics {
            case .peft: out[j] = sum / max(1, div)
            case .mergekit: out[j] = normalize ? sum / (div == 0 ? 1 : div) : sum
            }
        }
        return out
    }

    /// The combined delta of `deltas` under `method` (ties, dare_linear or dare_ties).
    public static func combine(_ deltas: [[Float]], weights: [Float], method: CombineMethod, semantics: MergeSemantics,
                               density: Double, byCount: Bool, rng: inout SeededRandom) -> [Float] {
        switch method {
        case .ties:
            let t = deltas.map { trim($0, density: density, atLeastOne: semantics == .mergekit) }
            return disjointMerge(t, weights: weights, semantics: semantics, byCount: byCount, normalize: true)
        case .dareTies:
            let t = deltas.map { dare($0, density: density, semantics: semantics, rng: &rng) }
            return disjointMerge(t, weights: weights, semantics: semantics, byCount: byCount, normalize: false)
        case .dareLinear, .svd, .cat:
            let t = method == .dareLinear ? deltas.map { dare($0, density: density, semantics: semantics, rng: &rng) } : deltas
            var out = [Float](repeating: 0, count: deltas.first?.count ?? 0)
            for (i, d) in t.enumerated() { for j in d.indices { out[j] += weights[i] * d[j] } }
            return out
        }
    }
}

/// Re-compression of several adapters into one (`longctx lora combine`).
public enum LoRACombiner {
    @discardableResult
    public static func combine(adapters paths: [String], out: String, options o: CombineOptions,
                               progress: (String) -> Void = { _ in }) throws -> CombineReport {
        let start = Date()
        if FileOps.exists(out) { throw ModelIOError(out, "already exists; choose a new output directory") }
        guard paths.count >= 1 else { throw ModelIOError(out, "no adapter given") }
        let ws = o.weights ?? Array(repeating: 1, count: paths.count)
        guard ws.count == paths.count else { throw ModelIOError(out, "\(ws.count) weights for \(paths.count) adapters") }
        let ads = try paths.map { try Adapter(path: $0) }
        // Modules in first-seen order; every adapter that has one must agree on kind and shape.
        var order = [String](), byModule = [String: [(Int, AdapterLoRA)]]()
        for (i, ad) in ads.enumerated() {
            for m in ad.modules {
                if let first = byModule[m.module]?.first?.1, first.kind != m.kind || first.rows != m.rows || first.cols != m.cols {
                    throw ModelIOError(ad.path, "module '\(m.module)' is \(m.rows)×\(m.cols) (\(m.kind.rawValue)) here but \(first.rows)×\(first.cols) (\(first.kind.rawValue)) in \(paths[byModule[m.module]!.first!.0])")
                }
                if byModule[m.module] == nil { order.append(m.module) }
                byModule[m.module, default: []].append((i, m))
            }
        }
        var contents = AdapterContents()
        contents.scaling = o.scaling
        contents.factorDType = o.factorDType
        contents.baseModel = ads.compactMap(\.config.baseModel).first ?? ""
        contents.extraConfig = []
        var seenSaved = [String: Int]()
        for (i, ad) in ads.enumerated() {
            for (t, key) in ad.saved {
                if let j = seenSaved[t] { throw ModelIOError(ad.path, "'\(t)' is saved whole by both \(paths[j]) and \(paths[i]); PEFT refuses this too") }
                seenSaved[t] = i
                if byModule[String(t.split(separator: ".").dropLast().joined(separator: "."))] != nil {
                    throw ModelIOError(ad.path, "'\(t)' is saved whole here but LoRA-adapted in another adapter")
                }
                contents.saved.append((t, try ad.file.tensor(key)))
            }
            for m in ad.config.modulesToSave ?? [] where !contents.modulesToSave.contains(m) { contents.modulesToSave.append(m) }
            for t in ad.config.targetModules where !contents.targetModules.contains(t) { contents.targetModules.append(t) }
        }
        var rng = SeededRandom(seed: o.seed)
        var reports = [CombineReport.Module]()
        for (n, name) in order.enumerated() {
            let parts = byModule[name]!
            let first = parts[0].1
            let rows = first.rows, cols = first.cols
            let factors = try parts.map { try ads[$0.0].factors($0.1) }
            let coef = parts.map { Float(ws[$0.0] * $0.1.scaling) }
            let total = factors.reduce(0) { $0 + $1.rank }
            let k = min(rows, cols)
            var result: LoRAFactors
            var err = 0.0
            switch o.method {
            case .cat:
                var a = [Float](), b = [Float](repeating: 0, count: rows * total)
                var off = 0
                for (f, c) in zip(factors, coef) {
                    let sa = (abs(c)).squareRoot() * (c < 0 ? -1 : 1), sb = abs(c).squareRoot()
                    a += f.a.map { $0 * sa }
                    for i in 0..<rows { for j in 0..<f.rank { b[i * total + off + j] = sb * f.b[i * f.rank + j] } }
                    off += f.rank
                }
                result = LoRAFactors(a: a, b: b, rank: total, rows: rows, cols: cols)
            case .svd:
                let target = min(o.rank ?? total, k)
                let map = LowRankSum(rows: rows, cols: cols, terms: zip(factors, coef).map { LowRankTerm(weight: $1, b: $0.b, a: $0.a, rank: $0.rank) })
                let q = min(k, max(target, min(total, target * 2)))
                let svd: TruncatedSVD
                if o.exact || LowRank.exactIsCheaper(rows: rows, cols: cols, q: q) {
                    var dense = [Float](repeating: 0, count: rows * cols)
                    for (f, c) in zip(factors, coef) {
                        BLAS.sgemm(m: rows, n: cols, k: f.rank, alpha: c, a: f.b, lda: f.rank, b: f.a, ldb: cols, beta: 1, c: &dense, ldc: cols)
                    }
                    svd = try dense.withUnsafeBufferPointer { try LowRank.exact($0, rows: rows, cols: cols, keep: target) }
                } else {
                    svd = try LowRank.randomized(map, q: q, powerIterations: o.powerIterations, seed: o.seed &+ UInt64(n))
                }
                let r = min(target, svd.s.filter { $0 > 0 }.count)
                result = LoRAFactors(svd, rank: r, split: .sqrt)
                err = svd.relativeError(rank: r)
            case .ties, .dareLinear, .dareTies:
                let target = min(o.rank ?? factors.map(\.rank).max()!, k)
                let deltas = factors.map { f -> [Float] in f.product() }
                // PEFT passes the scaled deltas sᵢBᵢAᵢ and the user weights separately.
                let scaled = zip(deltas, parts).map { d, p in d.map { $0 * Float(p.1.scaling) } }
                let d = TaskMerge.combine(scaled, weights: parts.map { Float(ws[$0.0]) }, method: o.method, semantics: o.semantics,
                                          density: o.density, byCount: o.majoritySignByCount, rng: &rng)
                let svd: TruncatedSVD = try d.withUnsafeBufferPointer { buf in
                    let q = min(k, 2 * target)
                    if o.exact || LowRank.exactIsCheaper(rows: rows, cols: cols, q: q) {
                        return try LowRank.exact(buf, rows: rows, cols: cols, keep: target)
                    }
                    return try LowRank.randomized(DenseMap(buf, rows: rows, cols: cols), q: q, powerIterations: o.powerIterations, seed: o.seed &+ UInt64(n))
                }
                let r = min(target, svd.s.filter { $0 > 0 }.count)
                result = LoRAFactors(svd, rank: r, split: .sqrt)
                err = svd.relativeError(rank: r)
            }
            if result.rank > 0 { contents.modules.append(.init(name: name, kind: first.kind, factors: result)) }
            reports.append(.init(module: name, rank: result.rank, relativeError: err))
            progress("[\(n + 1)/\(order.count)] \(name) rank \(result.rank)")
        }
        let sem = (o.method == .ties || o.method == .dareTies || o.method == .dareLinear) ? o.semantics.rawValue : "exact"
        contents.extraConfig = []
        let card = """
        ---
        library_name: peft
        tags:
        - lora
        - longcontext
        ---

        # Combined LoRA (LongContext)

        `longctx lora combine --method \(o.method.rawValue)`\(sem == "exact" ? "" : " with \(sem) semantics (density \(o.density))") of:

        \(zip(paths, ws).map { "- `\($0)` × \($1)" }.joined(separator: "\n"))

        Max rank \(contents.maxRank); worst relative error against the combined delta \(String(format: "%.3g", reports.map(\.relativeError).max() ?? 0)).

        """
        try ModelDirectory.assemble(at: out) { tmp in try contents.write(into: tmp, readme: card) }
        return CombineReport(out: out, method: o.method.rawValue, semantics: sem, adapters: paths, weights: ws, modules: reports,
                             seconds: Date().timeIntervalSince(start))
    }
}
