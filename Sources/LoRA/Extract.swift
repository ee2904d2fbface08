import Foundation
import ModelIO
import TensorCore

/// Options of `longctx lora extract` (defaults: rank 64, randomized SVD with q = r + max(10, r/2) and 2 power
/// iterations, √S on both factors, checkpoint-dtype factors, portable scaling, mergekit's module policy).
public struct ExtractionOptions: Sendable {
    public var policy = RankPolicy()
    /// Total LoRA parameters to spend across modules (`RankPolicy.allocate`); nil = per-module ranks only.
    public var parameterBudget: Int? = nil
    /// LAPACK SVD of every delta (as mergekit does); otherwise randomized where it is cheaper.
    public var exact = false
    /// Oversampling `p` of the randomized range finder (subspace `q = r + p`, capped at `min(rows, cols)`); nil = max(10, r/2).
    public var oversampling: Int? = nil
    public var powerIterations = 2
    public var seed: UInt64 = 0
    public var split: FactorSplit = .sqrt
    /// Factor storage type; nil = the checkpoint's dtype for that tensor.
    public var factorDType: DType? = nil
    public var scaling: ScalingMode = .portable
    /// Decompose embeddings and lm_head instead of saving them whole.
    public var embedLoRA = false
    /// Module names (leaf or full) saved whole.
    public var saveModules: [String] = []
    /// `re.search`-style regexes on module names; a module must match one include (if any) and no exclude.
    public var include: [String] = []
    public var exclude: [String] = []
    /// Write only what llama.cpp and vLLM load: LoRA pairs, no `modules_to_save` (norms and, without
    /// `embedLoRA`, embeddings are dropped and their delta norms reported).
    public var serving = false
    /// Drop modules that are neither Linear nor Embedding instead of saving them whole (mergekit `--skip-undecomposable`).
    public var skipUndecomposable = false
    /// Round `Δ` to the checkpoint dtype before the SVD, as mergekit's bf16 subtraction does (for bit-compatibility tests).
    public var deltaInCheckpointDType = false
    /// `base_model_name_or_path` in the config (default: the base path as given).
    public var baseName: String? = nil
    public init() {}
}

/// What happened to one module.
public struct ModuleReport: Codable, Sendable {
    public var module: String
    /// `lora`, `lora-embedding`, `saved`, `dropped`, `unchanged` or `excluded`.
    public var action: String
    public var shape: [Int]
    public var rank: Int
    /// `Σ_{i≤r}σᵢ²/‖Δ‖_F²` (1 for saved modules).
    public var energyRetained: Double
    /// `‖Δ − B·A‖_F/‖Δ‖_F` (Eckart–Young: `√(1 − energy)`).
    public var relativeError: Double
    /// `σ₁/σ_r` (nil without a LoRA pair).
    public var conditionRatio: Double?
    /// `‖Δ‖_F` (0 for excluded modules, which are not read).
    public var deltaNorm: Double
    /// `exact`, `randomized` or empty.
    public var method: String
    public var seconds: Double
    enum CodingKeys: String, CodingKey {
        case module, action, shape, rank, method, seconds
        case energyRetained = "energy_retained", relativeError = "relative_error"
        case conditionRatio = "sigma1_over_sigma_r", deltaNorm = "delta_norm"
    }
}

public struct ExtractionReport: Codable, Sendable {
    public var base: String
    public var tuned: String
    public var out: String
    public var maxRank: Int
    public var loraParameters: Int
    public var savedParameters: Int
    public var adapterBytes: Int
    public var seconds: Double
    public var modules: [ModuleReport]
    public var notes: [String]
    enum CodingKeys: String, CodingKey {
        case base, tuned, out, modules, notes, seconds
        case maxRank = "max_rank", loraParameters = "lora_parameters", savedParameters = "saved_parameters"
        case adapterBytes = "adapter_bytes"
    }

    /// Parameter-weighted energy retained over the LoRA modules.
    public var weightedEnergy: Double {
        let l = modules.filter { $0.action.hasPrefix("lora") }
        let w = l.reduce(0.0) { $0 + Double($1.shape.reduce(1, *)) }
        return w > 0 ? l.reduce(0.0) { $0 + Double($1.shape.reduce(1, *)) * $1.energyRetained } / w : 1
    }
    public var worstError: Double { modules.filter { $0.action.hasPrefix("lora") }.map(\.relativeError).max() ?? 0 }
}

/// The role a checkpoint module plays, from its name and weight rank (HF Llama-family naming).
enum ModuleRole { case linear, embedding, lmHead, other }

struct PlannedModule {
    var name: String
    var role: ModuleRole
    var tensors: [String]       // weight first, then bias etc.
    var action: String          // lora | saved | dropped | excluded
}

/// Extraction of a LoRA adapter from a (base, fine-tune) pair by SVD of the weight difference.
public enum LoRAExtractor {
    static let embeddingLeaves: Set<String> = ["embed_tokens", "wte", "word_embeddings", "embed_in"]
    static let headLeaves: Set<String> = ["lm_head", "embed_out"]

    static func leaf(_ m: String) -> String { String(m.split(separator: ".").last ?? Substring(m)) }

    static func regexes(_ list: [String], what: String) throws -> [NSRegularExpression] {
        try list.map { p in
            do { return try NSRegularExpression(pattern: p) }
            catch { throw ModelIOError(what, "invalid regular expression '\(p)'") }
        }
    }
    static func search(_ res: [NSRegularExpression], _ s: String) -> Bool {
        res.contains { $0.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) != nil }
    }

    /// Checks that `base` and `tuned` are the same architecture with the same tensors, shapes and
    /// vocabulary; throws a `ModelIOError` naming what differs.
    static func checkPair(_ bd: ModelDirectory, _ td: ModelDirectory, _ bw: Checkpoint, _ tw: Checkpoint) throws {
        let ba = bd.config.architectures ?? [], ta = td.config.architectures ?? []
        if ba != ta || bd.config.modelType != td.config.modelType {
            throw ModelIOError(td.configPath, "different architecture from the base: tuned is \(ta.joined(separator: ","))/\(td.config.modelType ?? "?"), base (\(bd.configPath)) is \(ba.joined(separator: ","))/\(bd.config.modelType ?? "?")")
        }
        if let bv = bd.config.vocabSize, let tv = td.config.vocabSize, bv != tv {
            throw ModelIOError(td.configPath, "vocab_size \(tv) differs from the base's \(bv) (added tokens?): resize the base's embeddings first; a LoRA cannot change the vocabulary")
        }
        let bn = Set(bw.names), tn = Set(tw.names)
        let missingT = bw.names.filter { !tn.contains($0) }, missingB = tw.names.filter { !bn.contains($0) }
        if !missingT.isEmpty {
            throw ModelIOError(td.path, "tuned model lacks \(missingT.count) tensor(s) the base has: \(missingT.prefix(3).joined(separator: ", "))\(missingT.count > 3 ? ", …" : "")")
        }
        if !missingB.isEmpty {
            throw ModelIOError(bd.path, "base model lacks \(missingB.count) tensor(s) the tuned model has: \(missingB.prefix(3).joined(separator: ", "))\(missingB.count > 3 ? ", …" : "")")
        }
        for n in tw.names {
            let b = bw.info(n)!, t = tw.info(n)!
            if b.shape != t.shape {
                let vocab = (embeddingLeaves.contains(leaf(String(n.dropLast(7)))) || headLeaves.contains(leaf(String(n.dropLast(7)))))
                    && b.shape.count == 2 && t.shape.count == 2 && b.shape[1] == t.shape[1]
                throw ModelIOError(td.path, "tensor '\(n)' has shape \(t.shape) in the tuned model but \(b.shape) in the base\(vocab ? " (vocabulary sizes differ)" : "")")
            }
            if !t.dtype.isFloatingPoint || !b.dtype.isFloatingPoint {
                throw ModelIOError(td.path, "tensor '\(n)' is not floating point (\(t.dtype.rawValue))")
            }
        }
    }

    /// Groups tensors into modules and decides what happens to each (mergekit's policy plus the options).
    static func plan(_ tw: Checkpoint, _ o: ExtractionOptions) throws -> [PlannedModule] {
        let inc = try regexes(o.include, what: "--include"), exc = try regexes(o.exclude, what: "--exclude")
        var modules = [PlannedModule](), index = [String: Int]()
        for n in tw.names {
            let parts = n.split(separator: ".")
            guard parts.count >= 2 else { continue }
            let module = parts.dropLast().joined(separator: ".")
            if let i = index[module] { modules[i].tensors.append(n); continue }
            index[module] = modules.count
            modules.append(PlannedModule(name: module, role: .other, tensors: [n], action: ""))
        }
        for i in modules.indices {
            let m = modules[i]
            let w = m.name + ".weight"
            let rank = tw.info(w)?.shape.count ?? 0
            let lf = leaf(m.name)
            let role: ModuleRole = rank != 2 ? .other : embeddingLeaves.contains(lf) ? .embedding : headLeaves.contains(lf) ? .lmHead : .linear
            modules[i].role = role
            if let wi = modules[i].tensors.firstIndex(of: w), wi > 0 { modules[i].tensors.insert(modules[i].tensors.remove(at: wi), at: 0) }
            let included = (inc.isEmpty || search(inc, m.name)) && !search(exc, m.name)
            let forcedSave = o.saveModules.contains(m.name) || o.saveModules.contains(lf)
            let action: String
            if !included { action = "excluded" }
            else if forcedSave && !o.serving { action = "saved" }
            else {
                switch role {
                case .linear: action = tw.info(w) == nil ? "saved" : "lora"
                case .embedding, .lmHead: action = o.embedLoRA ? "lora" : (o.serving ? "dropped" : "saved")
                case .other: action = (o.serving || o.skipUndecomposable) ? "dropped" : "saved"
                }
            }
            modules[i].action = action
        }
        return modules
    }

    /// `Δ = tuned − base` of tensor `name` in f32 (row-major, the tensor's shape), computed in chunks
    /// straight from the memory maps; rounded to the checkpoint dtype first when `roundToDType`.
    static func delta(_ name: String, _ bw: Checkpoint, _ tw: Checkpoint, roundToDType: Bool) throws -> [Float] {
        let b = try bw.tensor(name), t = try tw.tensor(name)
        let n = t.count
        var d = [Float](repeating: 0, count: n)
        let chunk = 1 << 16
        var tmp = [Float](repeating: 0, count: chunk)
        let dt = t.dtype
        d.withUnsafeMutableBufferPointer { dp in
            tmp.withUnsafeMutableBufferPointer { tp in
                var off = 0
                while off < n {
                    let c = min(chunk, n - off)
                    Convert.toFloat(t.rawPointer + off * t.dtype.size, dtype: t.dtype, count: c, into: dp.baseAddress! + off)
                    Convert.toFloat(b.rawPointer + off * b.dtype.size, dtype: b.dtype, count: c, into: tp.baseAddress!)
                    let p = dp.baseAddress! + off, q = tp.baseAddress!
                    for i in 0..<c { p[i] = p[i] - q[i] }
                    if roundToDType && (dt == .bf16 || dt == .f16) {
                        var raw = [UInt16](repeating: 0, count: c)
                        raw.withUnsafeMutableBytes { Convert.fromFloat(p, count: c, dtype: dt, into: $0.baseAddress!) }
                        raw.withUnsafeBytes { Convert.toFloat($0.baseAddress!, dtype: dt, count: c, into: p) }
                    }
                    off += c
                }
            }
        }
        MappedPages.release(b); MappedPages.release(t)
        if let bad = d.firstIndex(where: { !$0.isFinite }) {
            throw ModelIOError(tw.directory, "tensor '\(name)': the delta tuned − base is \(d[bad]) at element \(bad) (a NaN or infinite weight in the base or tuned model); no LoRA can be extracted from it")
        }
        return d
    }

    static func transpose(_ a: [Float], rows: Int, cols: Int) -> [Float] {
        var t = [Float](repeating: 0, count: a.count)
        a.withUnsafeBufferPointer { s in t.withUnsafeMutableBufferPointer { d in
            var i0 = 0
            while i0 < rows {
                let i1 = min(rows, i0 + 64)
                for j in 0..<cols { for i in i0..<i1 { d[j &* rows &+ i] = s[i &* cols &+ j] } }
                i0 = i1
            }
        } }
        return t
    }

    /// Extracts the adapter and writes it to `out` (which must not exist): the directory appears by one
    /// rename only when complete. Streams one module at a time through the memory maps: peak memory is a
    /// few copies of the largest delta in f32 plus the factors.
    @discardableResult
    public static func extract(base: String, tuned: String, out: String, options o: ExtractionOptions,
                               progress: (String) -> Void = { _ in }) throws -> ExtractionReport {
        let start = Date()
        if FileOps.exists(out) { throw ModelIOError(out, "already exists; choose a new output directory") }
        let bd = try ModelDirectory(path: base), td = try ModelDirectory(path: tuned)
        let bw = try bd.weights(), tw = try td.weights()
        try checkPair(bd, td, bw, tw)
        guard o.policy.maxRank >= 1 else { throw ModelIOError(out, "rank must be at least 1") }
        var plan = try plan(tw, o)
        var notes = [String]()

        // SVD of every LoRA module (kept at the cap when a global budget is to be allocated).
        var reports = [String: ModuleReport]()
        let loraIdx = plan.indices.filter { plan[$0].action == "lora" }
        // Notes per plan index, so they come out in plan order whichever worker wrote them.
        var moduleNotes = [[String]](repeating: [], count: plan.count)
        for (i, m) in plan.enumerated() where m.action != "lora" {
            if m.action == "excluded" {
                reports[m.name] = ModuleReport(module: m.name, action: "excluded", shape: tw.info(m.tensors[0])!.shape, rank: 0,
                                               energyRetained: 0, relativeError: 1, conditionRatio: nil, deltaNorm: 0, method: "", seconds: 0)
            }
            if m.action == "dropped" || m.action == "saved" {
                var norm = 0.0
                for n in m.tensors { norm += try delta(n, bw, tw, roundToDType: false).withUnsafeBufferPointer { LowRank.sumOfSquares($0) } }
                let shape = tw.info(m.tensors[0])!.shape
                reports[m.name] = ModuleReport(module: m.name, action: m.action, shape: shape, rank: 0,
                                               energyRetained: m.action == "saved" ? 1 : 0, relativeError: m.action == "saved" ? 0 : (norm > 0 ? 1 : 0),
                                               conditionRatio: nil, deltaNorm: norm.squareRoot(), method: "", seconds: 0)
                if m.action == "dropped" && norm > 0 { moduleNotes[i].append("dropped \(m.name) (‖Δ‖_F = \(String(format: "%.3g", norm.squareRoot())))") }
            }
        }

        // LoRA modules: `workers` threads take modules in plan order, each running single-threaded BLAS/LAPACK
        // (OpenBLAS's own idle threads would otherwise spin while the serial conversion and QR steps run).
        // Seeds are per module index, so the result does not depend on the number of workers.
        let state = ParallelState(count: plan.count)
        nonisolated(unsafe) let say = progress
        nonisolated(unsafe) let (base0, tuned0) = (bw, tw)
        let planCopy = plan, order = loraIdx, opts = o
        let workers = max(1, min(2, ProcessInfo.processInfo.activeProcessorCount, order.count))
        let savedThreads = BLAS.threads
        if workers > 1 { BLAS.threads = 1 }
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while let j = state.take(order.count) {
                let i = order[j]
                do {
                    let (work, extra, line) = try Self.decompose(i, planCopy[i], base0, tuned0, opts)
                    state.finish(i, work, extra) { done in say("[\(done)/\(order.count)] " + line) }
                } catch {
                    state.fail(error)
                }
            }
        }
        if workers > 1 { BLAS.threads = savedThreads }
        if let e = state.error { throw e }
        var works = order.map { state.works[$0]! }
        for i in plan.indices { notes += moduleNotes[i] + state.notes[i] }
        if let budget = o.parameterBudget {
            let ranks = RankPolicy.allocate(budget: budget, modules: works.map {
                (singularValues: Array($0.svd.s.prefix(o.policy.rank(singularValues: $0.svd.s, totalEnergy: $0.svd.totalEnergy))),
                 cost: $0.svd.rows + $0.svd.cols, cap: $0.svd.k)
            })
            for j in works.indices { works[j].rank = ranks[j] }
            notes.append("parameter budget \(budget): \(zip(works, ranks).reduce(0) { $0 + $1.1 * ($1.0.svd.rows + $1.0.svd.cols) }) LoRA parameters allocated by marginal energy per parameter")
        }

        var contents = AdapterContents()
        contents.scaling = o.scaling
        contents.baseModel = o.baseName ?? base
        var loraNames = [String]()
        for w in works {
            let m = plan[w.plan]
            let svd = w.svd
            let shape = tw.info(m.name + ".weight")!.shape
            if w.rank == 0 {
                plan[w.plan].action = svd.totalEnergy > 0 ? "dropped" : "unchanged"
                reports[m.name] = ModuleReport(module: m.name, action: plan[w.plan].action, shape: shape, rank: 0,
                                               energyRetained: svd.totalEnergy > 0 ? 0 : 1, relativeError: svd.totalEnergy > 0 ? 1 : 0,
                                               conditionRatio: nil, deltaNorm: svd.totalEnergy.squareRoot(), method: svd.randomized ? "randomized" : "exact", seconds: w.seconds)
                continue
            }
            contents.modules.append(.init(name: m.name, kind: w.kind, factors: w.factors ?? LoRAFactors(svd, rank: w.rank, split: o.split)))
            loraNames.append(m.name)
            let relErr = w.residual.map { svd.totalEnergy > 0 ? ($0 / svd.totalEnergy).squareRoot() : 0 } ?? svd.relativeError(rank: w.rank)
            reports[m.name] = ModuleReport(module: m.name, action: w.kind == .embedding ? "lora-embedding" : "lora", shape: shape, rank: w.rank,
                                           energyRetained: svd.energyRetained(rank: w.rank), relativeError: relErr,
                                           conditionRatio: Double(svd.s[0]) / Double(svd.s[w.rank - 1]), deltaNorm: svd.totalEnergy.squareRoot(),
                                           method: svd.randomized ? "randomized" : "exact", seconds: w.seconds)
        }
        let factorTypes = Set(contents.modules.map { tw.info($0.name + ".weight")!.dtype })
        contents.factorDType = o.factorDType ?? (factorTypes.count == 1 ? factorTypes.first! : .f32)

        // modules_to_save: leaf names as mergekit writes them, unless PEFT's suffix match
        // (`key.endswith(name)`) would also wrap a module that is not saved; then the full name.
        let saved = plan.filter { $0.action == "saved" }
        let allNames = plan.map(\.name)
        let savedSet = Set(saved.map(\.name))
        for m in saved {
            let lf = leaf(m.name)
            let entry = allNames.filter { $0.hasSuffix(lf) }.allSatisfy { savedSet.contains($0) } ? lf : m.name
            if !contents.modulesToSave.contains(entry) { contents.modulesToSave.append(entry) }
            for n in m.tensors { contents.saved.append((n, try tw.tensor(n))) }
        }
        contents.targetModules = AdapterContents.targetList(loraModules: loraNames, allModules: plan.filter { $0.role == .linear || $0.role == .embedding || $0.role == .lmHead }.map(\.name))

        var report = ExtractionReport(base: base, tuned: tuned, out: out, maxRank: contents.modules.isEmpty ? 0 : contents.maxRank,
                                      loraParameters: contents.modules.reduce(0) { $0 + $1.factors.rank * ($1.factors.rows + $1.factors.cols) },
                                      savedParameters: contents.saved.reduce(0) { $0 + $1.1.count }, adapterBytes: 0, seconds: 0,
                                      modules: plan.compactMap { reports[$0.name] }, notes: notes)
        if o.scaling == .mergekit && Set(contents.modules.map(\.factors.rank)).count > 1 {
            report.notes.append("scaling=mergekit: per-module ranks in alpha_pattern; llama.cpp ignores alpha_pattern and will mis-scale lower-rank modules")
        }
        let card = ModelCard.extraction(report: report, options: o, contents: contents)
        try ModelDirectory.assemble(at: out) { tmp in try contents.write(into: tmp, readme: card) }
        report.adapterBytes = FileOps.fileSize((out as NSString).appendingPathComponent(Adapter.weightsFile)) ?? 0
        report.seconds = Date().timeIntervalSince(start)
        return report
    }

    /// One module's delta, truncated SVD, rank and (without a global budget) factors and measured residual.
    static func decompose(_ i: Int, _ m: PlannedModule, _ bw: Checkpoint, _ tw: Checkpoint, _ o: ExtractionOptions) throws
        -> (Work, [String], String) {
        let t0 = Date()
        let w = m.name + ".weight"
        var notes = [String]()
        let shape = tw.info(w)!.shape
        let kind: LoRAKind = m.role == .embedding ? .embedding : .linear
        var d = try delta(w, bw, tw, roundToDType: o.deltaInCheckpointDType)
        var rows = shape[0], cols = shape[1]
        if kind == .embedding { d = transpose(d, rows: rows, cols: cols); swap(&rows, &cols) }
        let k = min(rows, cols)
        let cap = min(o.policy.maxRank, k)
        let q = min(k, cap + (o.oversampling ?? max(10, cap / 2)))
        let svd: TruncatedSVD
        if o.exact || LowRank.exactIsCheaper(rows: rows, cols: cols, q: q) {
            svd = try d.withUnsafeBufferPointer { try LowRank.exact($0, rows: rows, cols: cols, keep: cap) }
        } else {
            svd = try d.withUnsafeBufferPointer {
                try LowRank.randomized(DenseMap($0, rows: rows, cols: cols), q: q, powerIterations: o.powerIterations,
                                       seed: o.seed &+ UInt64(i))
            }
        }
        let rank = o.policy.rank(singularValues: Array(svd.s.prefix(cap)), totalEnergy: svd.totalEnergy)
        // Without a global budget the rank is final: measure ‖Δ − B·A‖ directly (1 − energy cancels
        // catastrophically when almost all energy is kept).
        var factors: LoRAFactors? = nil, residual: Double? = nil
        if o.parameterBudget == nil {
            let f = LoRAFactors(svd, rank: rank, split: o.split)
            if rank > 0 {
                BLAS.sgemm(m: rows, n: cols, k: rank, alpha: -1, a: f.b, lda: rank, b: f.a, ldb: cols, beta: 1, c: &d, ldc: cols)
            }
            residual = d.withUnsafeBufferPointer { LowRank.sumOfSquares($0) }
            factors = f
        }
        d = []
        // Bias deltas of decomposed modules cannot be carried by LoRA.
        for bn in m.tensors.dropFirst() {
            let bnorm = try delta(bn, bw, tw, roundToDType: false).withUnsafeBufferPointer { LowRank.sumOfSquares($0) }
            if bnorm > 0 { notes.append("\(bn): bias delta (‖Δ‖ = \(String(format: "%.3g", bnorm.squareRoot()))) is not representable by LoRA and was dropped") }
        }
        let work = Work(plan: i, kind: kind, svd: o.parameterBudget == nil ? truncated(svd, rank) : truncated(svd, cap),
                    rank: rank, seconds: Date().timeIntervalSince(t0), factors: factors, residual: residual)
        return (work, notes, "\(m.name) \(rows)×\(cols) \(svd.randomized ? "randomized" : "exact") rank \(rank) energy \(String(format: "%.4f", svd.energyRetained(rank: rank)))")
    }

    static func truncated(_ s: TruncatedSVD, _ r: Int) -> TruncatedSVD {
        if r >= s.k { return s }
        var t = s
        t.u = [Float](repeating: 0, count: s.rows * r)
        for i in 0..<s.rows { for j in 0..<r { t.u[i &* r &+ j] = s.u[i &* s.k &+ j] } }
        t.s = Array(s.s.prefix(r))
        t.vt = Array(s.vt.prefix(r * s.cols))
        return t
    }
}

/// One decomposed LoRA module of an extraction.
struct Work: Sendable {
    var plan: Int; var kind: LoRAKind; var svd: TruncatedSVD; var rank: Int; var seconds: Double
    var factors: LoRAFactors?; var residual: Double?
}

/// Work queue and results shared by the extraction workers (all access under one lock).
final class ParallelState: @unchecked Sendable {
    private let lock = NSLock()
    private var next = 0, done = 0
    private(set) var works: [Work?]
    private(set) var notes: [[String]]
    private(set) var error: Error?

    init(count: Int) {
        works = Array(repeating: nil, count: count)
        notes = Array(repeating: [], count: count)
    }

    /// The next queue position, or nil when the queue is empty or a worker failed.
    func take(_ count: Int) -> Int? {
        lock.lock(); defer { lock.unlock() }
        guard error == nil, next < count else { return nil }
        next += 1
        return next - 1
    }

    func finish(_ i: Int, _ w: Work, _ n: [String], report: (Int) -> Void) {
        lock.lock(); defer { lock.unlock() }
        works[i] = w
        notes[i] = n
        done += 1
        report(done)
    }

    func fail(_ e: Error) {
        lock.lock(); defer { lock.unlock() }
        if error == nil { error = e }
    }
}
