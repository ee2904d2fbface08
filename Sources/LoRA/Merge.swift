import Foundation
import ModelIO
import TensorCore

/// Result of `LoRAMerger.merge`.
public struct MergeReport: Codable, Sendable {
    public var out: String
    public var adapters: [String]
    public var weights: [Double]
    /// Tensors that received LoRA updates.
    public var mergedTensors: Int
    /// Tensors replaced by `modules_to_save` copies.
    public var replacedTensors: Int
    public var copiedTensors: Int
    public var shards: Int
    public var seconds: Double
    enum CodingKeys: String, CodingKey {
        case out, adapters, weights, shards, seconds
        case mergedTensors = "merged_tensors", replacedTensors = "replaced_tensors", copiedTensors = "copied_tensors"
    }
}

/// Merging LoRA adapters into a model: `W ← W + Σᵢ wᵢ·sᵢ·BᵢAᵢ` (`sᵢ` = PEFT's scaling of the module)
/// accumulated in f32 and rounded once to the checkpoint dtype, as PEFT's `merge_and_unload` computes it
/// for f32 weights; `modules_to_save` tensors replace the model's.
public enum LoRAMerger {
    struct Update { var adapter: Int; var lora: AdapterLoRA }

    /// Checks every adapter against the model (tensor names, shapes, vocabulary) and returns the plan:
    /// LoRA updates and replacements by model tensor name. Throws before anything is written.
    static func plan(_ ck: Checkpoint, _ model: String, _ adapters: [Adapter]) throws
        -> (updates: [String: [Update]], replace: [String: (Int, String)]) {
        var updates = [String: [Update]](), replace = [String: (Int, String)]()
        for (ai, ad) in adapters.enumerated() {
            let wPath = (ad.path as NSString).appendingPathComponent(Adapter.weightsFile)
            for m in ad.modules {
                let w = m.module + ".weight"
                guard let info = ck.info(w) else {
                    throw ModelIOError(wPath, "LoRA module '\(m.module)' has no weight '\(w)' in the model \(model): the adapter was made for another architecture")
                }
                let expected = m.kind == .linear ? [m.rows, m.cols] : [m.cols, m.rows]
                guard info.shape == expected else {
                    let what = m.kind == .embedding ? " (vocabulary or hidden size differs)" : (LoRAExtractor.headLeaves.contains(LoRAExtractor.leaf(m.module)) ? " (vocabulary size differs)" : "")
                    throw ModelIOError(wPath, "module '\(m.module)': the adapter's B·A is \(m.kind == .linear ? "\(m.rows)×\(m.cols)" : "(\(m.rows)×\(m.cols))ᵀ") but the model's \(w) is \(info.shape.map(String.init).joined(separator: "×"))\(what)")
                }
                guard info.dtype.isFloatingPoint else { throw ModelIOError(wPath, "module '\(m.module)': model weight \(w) is \(info.dtype.rawValue), not floating point") }
                updates[w, default: []].append(Update(adapter: ai, lora: m))
            }
            for (t, key) in ad.saved {
                // PEFT (`ensure_weight_tying`) saves a tied LM head beside the embedding; the model has only the latter.
                if t == "lm_head.weight", ck.info(t) == nil, ad.saved.contains(where: { $0.tensor == "model.embed_tokens.weight" }) { continue }
                guard let info = ck.info(t) else {
                    throw ModelIOError(wPath, "saved module tensor '\(key)' has no counterpart '\(t)' in the model \(model)")
                }
                let si = ad.file.info(key)!
                guard si.shape == info.shape else {
                    let vocab = LoRAExtractor.embeddingLeaves.contains(LoRAExtractor.leaf(String(t.dropLast(7)))) || LoRAExtractor.headLeaves.contains(LoRAExtractor.leaf(String(t.dropLast(7))))
                    throw ModelIOError(wPath, "saved tensor '\(key)' is \(si.shape) but the model's '\(t)' is \(info.shape)\(vocab ? " (vocabulary sizes differ: resize the model's embeddings first)" : "")")
                }
                if let prev = replace[t] {
                    throw ModelIOError(wPath, "'\(t)' is saved whole by both \(adapters[prev.0].path) and \(ad.path); merge them one at a time")
                }
                replace[t] = (ai, key)
            }
        }
        for t in replace.keys where updates[t] != nil {
            throw ModelIOError(adapters[replace[t]!.0].path, "'\(t)' is both saved whole and LoRA-updated by the adapters; refusing an ambiguous merge")
        }
        return (updates, replace)
    }

    /// Merges `adapters` (with `weights`, default 1 each) into the model at `model`, writing `out` (must
    /// not exist; appears by one rename when complete): shards re-planned with the model's largest shard
    /// size, the index rewritten, config and tokenizer files copied.
    @discardableResult
    public static func merge(model: String, adapters paths: [String], weights: [Double]? = nil, out: String,
                             progress: (String) -> Void = { _ in }) throws -> MergeReport {
        let start = Date()
        if FileOps.exists(out) { throw ModelIOError(out, "already exists; choose a new output directory") }
        guard !paths.isEmpty else { throw ModelIOError(out, "no adapter given") }
        let ws = weights ?? Array(repeating: 1, count: paths.count)
        guard ws.count == paths.count else { throw ModelIOError(out, "\(ws.count) weights given for \(paths.count) adapters") }
        for w in ws where !(w.isFinite && abs(w) <= 1e6) {
            throw ModelIOError(out, "adapter weight \(w) must be a finite number of magnitude at most 1e6")
        }
        let dir = try ModelDirectory(path: model)
        let ck = try dir.weights()
        let adapters = try paths.map { try Adapter(path: $0) }
        let (updates, replace) = try plan(ck, model, adapters)

        let infos = ck.infos
        let specs = infos.map { TensorSpec(name: $0.name, dtype: $0.dtype, shape: $0.shape) }
        var maxShard = 0
        for s in ck.namesByShard { maxShard = max(maxShard, s.names.reduce(0) { $0 + (ck.info($1)?.byteCount ?? 0) }) }
        var merged = 0, replaced = 0, copied = 0
        var shards = 0
        try ModelDirectory.assemble(at: out) { tmp in
            let writer = try CheckpointWriter(directory: tmp, specs: specs, maxShardBytes: ck.isSharded ? max(1, maxShard) : Int.max)
            shards = writer.shardCount
            for (i, info) in infos.enumerated() {
                let name = info.name
                if let (ai, key) = replace[name] {
                    try writer.append(name: name, tensor: try adapters[ai].file.tensor(key))
                    replaced += 1
                } else if let ups = updates[name] {
                    let w = try ck.tensor(name)
                    var acc = w.floats()
                    let rows = info.shape[0], cols = info.shape[1]
                    try acc.withUnsafeMutableBufferPointer { c in
                        for u in ups {
                            let f = try adapters[u.adapter].factors(u.lora)
                            let alpha = Float(ws[u.adapter] * u.lora.scaling)
                            if u.lora.kind == .linear {
                                // W[out, in] += α·B[out, r]·A[r, in]
                                BLAS.sgemm(m: rows, n: cols, k: f.rank, alpha: alpha, a: f.b, lda: f.rank, b: f.a, ldb: cols,
                                           beta: 1, c: c.baseAddress!, ldc: cols)
                            } else {
                                // W[V, D] += α·(B[D, r]·A[r, V])ᵀ = α·Aᵀ·Bᵀ
                                BLAS.sgemm(transA: true, transB: true, m: rows, n: cols, k: f.rank, alpha: alpha, a: f.a, lda: rows,
                                           b: f.b, ldb: f.rank, beta: 1, c: c.baseAddress!, ldc: cols)
                            }
                        }
                    }
                    if acc.contains(where: { !$0.isFinite }) {
                        let mods = ups.map { "\(paths[$0.adapter]) module '\($0.lora.module)'" }.joined(separator: ", ")
                        throw ModelIOError(out, "merging into '\(name)' gives NaN or infinite values (from \(mods)); check the adapter's factors, lora_alpha and the weights")
                    }
                    try writer.append(name: name, tensor: Tensor(shape: info.shape, floats: acc, dtype: info.dtype))
                    MappedPages.release(w)
                    merged += 1
                } else {
                    let t = try ck.tensor(name)
                    try writer.append(name: name, tensor: t)
                    MappedPages.release(t)
                    copied += 1
                }
                progress("[\(i + 1)/\(infos.count)] \(name)")
            }
            try writer.finish()
            for f in dir.companions {
                try FileOps.writeAtomically(try FileOps.read((model as NSString).appendingPathComponent(f)), to: (tmp as NSString).appendingPathComponent(f))
            }
            try FileOps.writeAtomically(try dir.configData(), to: (tmp as NSString).appendingPathComponent("config.json"))
        }
        return MergeReport(out: out, adapters: paths, weights: ws, mergedTensors: merged, replacedTensors: replaced, copiedTensors: copied,
                           shards: shards, seconds: Date().timeIntervalSince(start))
    }
}
