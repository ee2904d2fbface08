import Basics
import Foundation
import ModelIO
import RoPE
import TensorCore

/// What an import wrote.
public struct GGUFImportReport: Codable, Sendable {
    public var source: String
    public var output: String
    public var architecture: String
    public var modelType: String
    public var tensors: Int
    public var parameters: Int
    public var dtype: String
    public var bytesWritten: Int
    public var tiedEmbeddings: Bool
    public var vocabSize: Int
    public var preTokenizer: String
    public var seconds: Double
    /// GGUF tensor types found, with how many tensors of each (e.g. `Q4_1: 210`).
    public var sourceTypes: [String: Int]
}

/// Converts a GGUF file (llama.cpp's format) into a Hugging Face model directory that transformers
/// loads: `config.json`, `model.safetensors`, `tokenizer.json`, `tokenizer_config.json`,
/// `special_tokens_map.json`, `generation_config.json`.
///
/// The inverse of llama.cpp's `convert_hf_to_gguf.py` for the Llama family:
/// - tensor names map back (`blk.N.attn_q.weight` → `model.layers.N.self_attn.q_proj.weight`, …);
/// - shapes are GGUF `ne` reversed (`token_embd` `ne=[d, V]` is the `[V, d]` embedding);
/// - for `llama`, Q and K rows are un-permuted: the converter's `permute` reshapes rows to
///   `(heads, 2, hd/2)` and swaps the last two axes, so GGUF row `h·hd + 2i + j` is HF row
///   `h·hd + j·hd/2 + i` (K uses the KV head count). `qwen2` is converted without that permutation;
/// - no `output.weight` means tied embeddings;
/// - rope θ, context length and the `rope.scaling.*` keys map back to `rope_theta`/`rope_scaling`;
///   a `rope_freqs.weight` tensor (llama3 rope) is matched against llama3 divisors.
public enum GGUFImporter {
    public static let architectures = ["llama", "qwen2"]

    /// Imports `gguf` into a new directory `out` (which must not exist), atomically.
    public static func importModel(gguf path: String, to out: String, dtype: DType = .bf16,
                                   progress: ((String) -> Void)? = nil) throws -> GGUFImportReport {
        guard dtype == .bf16 || dtype == .f32 || dtype == .f16 else {
            throw ModelIOError(out, "unsupported output dtype \(dtype.rawValue) (use bf16, f16 or f32)")
        }
        if FileOps.exists(out) { throw ModelIOError(out, "already exists; choose a new output directory") }
        let start = Date()
        let g = try GGUFFile(path: path)
        let arch = try g.string("general.architecture")
        guard architectures.contains(arch) else {
            throw ModelIOError(path, "general.architecture '\(arch)' is not supported: import handles the Llama family (\(architectures.joined(separator: ", ")))")
        }
        let hp = try Hyperparameters(g, arch: arch)
        let plan = try tensorPlan(g, hp: hp)
        let tokenizer = try GGUFTokenizerBuilder(g)
        guard tokenizer.tokens.count == hp.vocabSize else {
            throw ModelIOError(path, "tokenizer.ggml.tokens has \(tokenizer.tokens.count) entries but token_embd has \(hp.vocabSize) rows")
        }
        let config = hp.configJSON(dtype: dtype, tied: !plan.contains { $0.hfName == "lm_head.weight" },
                                   tokenizer: tokenizer)

        var bytes = 0
        var params = 0
        var types = [String: Int]()
        try ModelDirectory.assemble(at: out) { tmp in
            func file(_ name: String) -> String { (tmp as NSString).appendingPathComponent(name) }
            let specs = plan.map { TensorSpec(name: $0.hfName, dtype: dtype, shape: $0.info.shape) }
            let w = try SafetensorsWriter(path: file(Checkpoint.singleFile), specs: specs, metadata: ["format": "pt"])
            for (i, item) in plan.enumerated() {
                progress?("import: tensor \(i + 1)/\(plan.count) \(item.hfName)")
                var t = try g.dequantized(item.info.name)
                if let heads = item.unpermuteHeads { t = unpermuteRotary(t, heads: heads) }
                try w.append(name: item.hfName, tensor: t)
                bytes += specs[i].byteCount
                params += t.count
                types[item.info.type.description, default: 0] += 1
            }
            try w.finish()
            try writeBlocks(g, plan: plan, to: file(GGUFBlocks.fileName))
            try FileOps.writeAtomically(JSONValue.object(config).serialized() + "\n", to: file("config.json"))
            try FileOps.writeAtomically(JSONValue.object(tokenizer.tokenizerJSON()).serialized() + "\n", to: file("tokenizer.json"))
            try FileOps.writeAtomically(JSONValue.object(tokenizer.tokenizerConfigJSON(maxLength: hp.contextLength)).serialized() + "\n",
                                        to: file("tokenizer_config.json"))
            try FileOps.writeAtomically(JSONValue.object(tokenizer.specialTokensMapJSON()).serialized() + "\n",
                                        to: file("special_tokens_map.json"))
            try FileOps.writeAtomically(JSONValue.object(tokenizer.generationConfigJSON()).serialized() + "\n",
                                        to: file("generation_config.json"))
        }
        return GGUFImportReport(source: path, output: out, architecture: arch, modelType: hp.modelType,
                                tensors: plan.count, parameters: params, dtype: dtype.torchName, bytesWritten: bytes,
                                tiedEmbeddings: !plan.contains { $0.hfName == "lm_head.weight" },
                                vocabSize: hp.vocabSize, preTokenizer: tokenizer.preName,
                                seconds: Date().timeIntervalSince(start), sourceTypes: types)
    }

    /// Keeps the quantized blocks of every quantized matrix in `gguf-blocks.safetensors` (``GGUFBlocks``) when the
    /// file holds a type that re-quantizing the dequantized weights does not reproduce (k-quants, Q5_0, …); Q/K rows
    /// are reordered as ``unpermuteRotary(_:heads:)`` reorders the dequantized ones (blocks run along a row).
    static func writeBlocks(_ g: GGUFFile, plan: [PlannedTensor], to path: String) throws {
        let quantized = plan.filter { $0.info.shape.count == 2 && $0.info.type.blockGeometry.elements > 1 }
        guard quantized.contains(where: { !GGUFBlocks.reproducible.contains($0.info.type) }) else { return }
        let specs = quantized.map { t in
            TensorSpec(name: t.hfName, dtype: .u8, shape: [t.info.shape[0], t.info.byteCount / t.info.shape[0]])
        }
        let types = Dictionary(uniqueKeysWithValues: quantized.map { ($0.hfName, String($0.info.type.rawValue)) })
        let w = try SafetensorsWriter(path: path, specs: specs, metadata: types)
        for (t, spec) in zip(quantized, specs) {
            let src = try g.bytes(t.info.name)
            if let heads = t.unpermuteHeads {
                let order = rotaryRowOrder(rows: spec.shape[0], heads: heads)
                let rows = GGUFBlocks.reorderRows(src, rowBytes: spec.shape[1], order: order)
                try rows.withUnsafeBytes { try w.append(name: t.hfName, bytes: $0) }
            } else {
                try w.append(name: t.hfName, bytes: src)
            }
        }
        try w.finish()
    }

    /// The row order of ``unpermuteRotary(_:heads:)``: output row `h·hd + j·hd/2 + i` is input row `h·hd + 2i + j`.
    static func rotaryRowOrder(rows: Int, heads: Int) -> [Int] {
        let hd = rows / heads, half = hd / 2
        var order = [Int](repeating: 0, count: rows)
        for h in 0..<heads { for i in 0..<half { for j in 0..<2 { order[h * hd + j * half + i] = h * hd + 2 * i + j } } }
        return order
    }

    /// Undoes llama.cpp's `LlamaModel.permute` on a `[heads·hd, in]` (or `[heads·hd]`) tensor:
    /// output row `h·hd + j·hd/2 + i` = input row `h·hd + 2i + j` (the half-split rotary layout HF uses).
    /// Matches transformers' `reverse_permute_weights` in its GGUF loader.
    public static func unpermuteRotary(_ t: Tensor, heads: Int) -> Tensor {
        let rows = t.shape[0]
        let cols = t.count / max(rows, 1)
        let hd = rows / heads
        let half = hd / 2
        let src = t.floats()
        var dst = [Float](repeating: 0, count: src.count)
        src.withUnsafeBufferPointer { s in
            dst.withUnsafeMutableBufferPointer { d in
                for h in 0..<heads {
                    for i in 0..<half {
                        for j in 0..<2 {
                            let from = (h &* hd &+ 2 &* i &+ j) &* cols
                            let to = (h &* hd &+ j &* half &+ i) &* cols
                            for c in 0..<cols { d[to &+ c] = s[from &+ c] }
                        }
                    }
                }
            }
        }
        return Tensor(shape: t.shape, floats: dst)
    }

    struct PlannedTensor {
        var info: GGUFTensorInfo
        var hfName: String
        /// Heads for Q/K un-permutation (llama only).
        var unpermuteHeads: Int?
    }

    static let layerNames: [String: String] = [
        "attn_norm.weight": "input_layernorm.weight",
        "attn_q.weight": "self_attn.q_proj.weight", "attn_q.bias": "self_attn.q_proj.bias",
        "attn_k.weight": "self_attn.k_proj.weight", "attn_k.bias": "self_attn.k_proj.bias",
        "attn_v.weight": "self_attn.v_proj.weight", "attn_v.bias": "self_attn.v_proj.bias",
        "attn_output.weight": "self_attn.o_proj.weight",
        "ffn_norm.weight": "post_attention_layernorm.weight",
        "ffn_gate.weight": "mlp.gate_proj.weight",
        "ffn_up.weight": "mlp.up_proj.weight",
        "ffn_down.weight": "mlp.down_proj.weight",
    ]

    /// Maps every GGUF tensor to its HF name and checks its shape against the hyperparameters.
    static func tensorPlan(_ g: GGUFFile, hp: Hyperparameters) throws -> [PlannedTensor] {
        var plan = [PlannedTensor]()
        var layerItems = [[PlannedTensor]](repeating: [], count: hp.layers)
        var head = [PlannedTensor]()
        var tail = [PlannedTensor]()
        for t in g.tensors {
            func expect(_ shape: [Int]) throws {
                guard t.shape == shape else {
                    throw ModelIOError(g.path, "tensor '\(t.name)' has shape \(t.shape) (ne \(t.ne)), expected \(shape) from the metadata")
                }
            }
            switch t.name {
            case "token_embd.weight":
                try expect([hp.vocabSize, hp.hidden])
                head.append(PlannedTensor(info: t, hfName: "model.embed_tokens.weight"))
            case "output_norm.weight":
                try expect([hp.hidden])
                tail.append(PlannedTensor(info: t, hfName: "model.norm.weight"))
            case "output.weight":
                try expect([hp.vocabSize, hp.hidden])
                tail.append(PlannedTensor(info: t, hfName: "lm_head.weight"))
            case "rope_freqs.weight":
                continue  // folded into rope_scaling by Hyperparameters
            default:
                let parts = t.name.split(separator: ".", maxSplits: 2)
                guard parts.count == 3, parts[0] == "blk", let layer = Int(parts[1]), let suffix = layerNames[String(parts[2])] else {
                    throw ModelIOError(g.path, "tensor '\(t.name)' has no Hugging Face equivalent for a \(hp.arch) model")
                }
                guard layer >= 0, layer < hp.layers else {
                    throw ModelIOError(g.path, "tensor '\(t.name)': layer \(layer) is outside 0..<\(hp.layers) (\(hp.arch).block_count)")
                }
                let kind = String(parts[2])
                let q = hp.heads * hp.headDim, kv = hp.kvHeads * hp.headDim
                let shapes: [String: [Int]] = [
                    "attn_norm.weight": [hp.hidden], "ffn_norm.weight": [hp.hidden],
                    "attn_q.weight": [q, hp.hidden], "attn_k.weight": [kv, hp.hidden], "attn_v.weight": [kv, hp.hidden],
                    "attn_q.bias": [q], "attn_k.bias": [kv], "attn_v.bias": [kv],
                    "attn_output.weight": [hp.hidden, q],
                    "ffn_gate.weight": [hp.intermediate, hp.hidden], "ffn_up.weight": [hp.intermediate, hp.hidden],
                    "ffn_down.weight": [hp.hidden, hp.intermediate],
                ]
                try expect(shapes[kind]!)
                var heads: Int? = nil
                if hp.arch == "llama" {
                    if kind.hasPrefix("attn_q.") { heads = hp.heads }
                    if kind.hasPrefix("attn_k.") { heads = hp.kvHeads }
                }
                layerItems[layer].append(PlannedTensor(info: t, hfName: "model.layers.\(layer).\(suffix)", unpermuteHeads: heads))
            }
        }
        guard !head.isEmpty else { throw ModelIOError(g.path, "missing tensor 'token_embd.weight'") }
        for (l, items) in layerItems.enumerated() {
            for need in ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"]
            where !items.contains(where: { $0.info.name == "blk.\(l).\(need).weight" }) {
                throw ModelIOError(g.path, "missing tensor 'blk.\(l).\(need).weight'")
            }
        }
        guard tail.contains(where: { $0.hfName == "model.norm.weight" }) else {
            throw ModelIOError(g.path, "missing tensor 'output_norm.weight'")
        }
        plan = head
        let order = Array(layerNames.values).sorted()
        for items in layerItems {
            plan += items.sorted { order.firstIndex(of: String($0.hfName.split(separator: ".", maxSplits: 3)[3]))! < order.firstIndex(of: String($1.hfName.split(separator: ".", maxSplits: 3)[3]))! }
        }
        plan += tail
        return plan
    }
}

/// The `{arch}.*` hyperparameters of a GGUF file, validated, and their `config.json`.
struct Hyperparameters {
    var arch: String
    var layers: Int
    var hidden: Int
    var intermediate: Int
    var heads: Int
    var kvHeads: Int
    var headDim: Int
    var contextLength: Int
    var ropeTheta: Double
    var rmsEps: Double
    var vocabSize: Int
    var ropeScaling: JSONObject?

    var modelType: String { arch == "qwen2" ? "qwen2" : "llama" }

    init(_ g: GGUFFile, arch: String) throws {
        self.arch = arch
        func k(_ s: String) -> String { "\(arch).\(s)" }
        func positive(_ key: String) throws -> Int {
            let v = try g.int(key)
            guard v > 0 else { throw ModelIOError(g.path, "metadata '\(key)' must be positive, got \(v)") }
            return v
        }
        layers = try positive(k("block_count"))
        // Size nothing from metadata before checking it against the tensors actually present.
        let present = Set(g.tensors.compactMap { t -> Int? in
            let parts = t.name.split(separator: ".", maxSplits: 2)
            return parts.count == 3 && parts[0] == "blk" ? Int(parts[1]) : nil
        })
        guard layers <= present.count else {
            throw ModelIOError(g.path, "metadata '\(k("block_count"))' is \(layers) but the file has tensors for \(present.count) layer(s)")
        }
        hidden = try positive(k("embedding_length"))
        intermediate = try positive(k("feed_forward_length"))
        heads = try positive(k("attention.head_count"))
        kvHeads = g[k("attention.head_count_kv")] == nil ? heads : try positive(k("attention.head_count_kv"))
        guard heads % kvHeads == 0 else {
            throw ModelIOError(g.path, "\(k("attention.head_count")) (\(heads)) is not a multiple of \(k("attention.head_count_kv")) (\(kvHeads))")
        }
        if g[k("attention.key_length")] != nil {
            headDim = try positive(k("attention.key_length"))
        } else {
            guard hidden % heads == 0 else {
                throw ModelIOError(g.path, "\(k("embedding_length")) (\(hidden)) is not divisible by the head count (\(heads))")
            }
            headDim = hidden / heads
        }
        if let rot = g[k("rope.dimension_count")]?.intValue, rot != headDim {
            throw ModelIOError(g.path, "\(k("rope.dimension_count")) = \(rot) differs from the head dimension \(headDim): partial rotary is not supported")
        }
        contextLength = try positive(k("context_length"))
        ropeTheta = g[k("rope.freq_base")] == nil ? 10000 : try g.double(k("rope.freq_base"))
        guard ropeTheta.isFinite, ropeTheta > 1 else {
            throw ModelIOError(g.path, "metadata '\(k("rope.freq_base"))' must be a finite number > 1, got \(ropeTheta)")
        }
        rmsEps = try g.double(k("attention.layer_norm_rms_epsilon"))
        guard rmsEps.isFinite, rmsEps > 0, rmsEps < 1 else {
            throw ModelIOError(g.path, "metadata '\(k("attention.layer_norm_rms_epsilon"))' must be a finite number in (0, 1), got \(rmsEps)")
        }
        guard let embd = g.info("token_embd.weight") else { throw ModelIOError(g.path, "missing tensor 'token_embd.weight'") }
        vocabSize = embd.shape[0]
        ropeScaling = try Hyperparameters.ropeScaling(g, arch: arch, theta: ropeTheta, headDim: headDim, context: contextLength)
    }

    /// `rope_scaling` from `{arch}.rope.scaling.*` (rope.md §5.3: the converter's keys mapped back).
    static func ropeScaling(_ g: GGUFFile, arch: String, theta: Double, headDim: Int, context: Int) throws -> JSONObject? {
        func k(_ s: String) -> String { "\(arch).rope.scaling.\(s)" }
        var type = g[k("type")]?.stringValue
        var factor = g[k("factor")]?.doubleValue
        if factor == nil, let legacy = g["\(arch).rope.scale_linear"]?.doubleValue {
            factor = legacy
            if type == nil { type = "linear" }
        }
        if let t = g.info("rope_freqs.weight") {
            // llama3: per-pair divisors; recover (factor, low, high, original) by matching the defaults
            // llama.cpp's converter applies (low 1, high 4, original 8192) with factor = the largest divisor.
            let divisors = try g.dequantized(t.name).floats()
            let f = Double(divisors.max() ?? 1)
            let candidate = RopeConfiguration(ropeType: .llama3, theta: theta, headDim: headDim, factor: f,
                                              originalMaxPositionEmbeddings: 8192, lowFreqFactor: 1, highFreqFactor: 4)
            let expected = candidate.llama3Divisors()
            guard expected.count == divisors.count,
                  zip(expected, divisors).allSatisfy({ abs($0 - $1) <= 1e-5 * max(1, abs($0)) }) else {
                throw ModelIOError(g.path, "tensor 'rope_freqs.weight' does not match llama3 rope scaling with factor \(f), low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 8192; cannot map it to rope_scaling")
            }
            return JSONObject([("rope_type", .string("llama3")), ("factor", .double(f)), ("low_freq_factor", .double(1)),
                               ("high_freq_factor", .double(4)), ("original_max_position_embeddings", .int(8192))])
        }
        guard let type, type != "none" else { return nil }
        switch type {
        case "linear":
            guard let factor else { throw ModelIOError(g.path, "\(k("type")) is linear but \(k("factor")) is missing") }
            return JSONObject([("rope_type", .string("linear")), ("factor", .double(factor))])
        case "yarn":
            guard let factor else { throw ModelIOError(g.path, "\(k("type")) is yarn but \(k("factor")) is missing") }
            var o = JSONObject([("rope_type", .string("yarn")), ("factor", .double(factor)),
                                ("original_max_position_embeddings", .int(g[k("original_context_length")]?.intValue ?? context))])
            if let v = g[k("yarn_beta_fast")]?.doubleValue { o["beta_fast"] = .double(v) }
            if let v = g[k("yarn_beta_slow")]?.doubleValue { o["beta_slow"] = .double(v) }
            if let v = g[k("yarn_attn_factor")]?.doubleValue { o["attention_factor"] = .double(v) }
            if let v = g[k("yarn_ext_factor")]?.doubleValue { o["extrapolation_factor"] = .double(v) }
            return o
        default:
            throw ModelIOError(g.path, "\(k("type")) '\(type)' is not supported by import (none, linear, yarn, llama3 via rope_freqs)")
        }
    }

    func configJSON(dtype: DType, tied: Bool, tokenizer: GGUFTokenizerBuilder) -> JSONObject {
        var c = JSONObject()
        c["architectures"] = .array([.string(arch == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM")])
        c["attention_bias"] = .bool(arch == "qwen2")
        c["attention_dropout"] = .double(0)
        if let b = tokenizer.bosId { c["bos_token_id"] = .int(b) }
        if let e = tokenizer.eosId { c["eos_token_id"] = .int(e) }
        c["head_dim"] = .int(headDim)
        c["hidden_act"] = .string("silu")
        c["hidden_size"] = .int(hidden)
        c["initializer_range"] = .double(0.02)
        c["intermediate_size"] = .int(intermediate)
        c["max_position_embeddings"] = .int(contextLength)
        if arch == "llama" { c["mlp_bias"] = .bool(false) }
        c["model_type"] = .string(modelType)
        c["num_attention_heads"] = .int(heads)
        c["num_hidden_layers"] = .int(layers)
        c["num_key_value_heads"] = .int(kvHeads)
        if let p = tokenizer.padId { c["pad_token_id"] = .int(p) }
        c["rms_norm_eps"] = .float(Float(rmsEps))
        c["rope_scaling"] = ropeScaling.map { .object($0) } ?? .null
        c["rope_theta"] = .float(Float(ropeTheta))
        c["tie_word_embeddings"] = .bool(tied)
        c["torch_dtype"] = .string(dtype.torchName)
        c["use_cache"] = .bool(true)
        c["vocab_size"] = .int(vocabSize)
        return c
    }
}
