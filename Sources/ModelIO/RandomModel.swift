import Basics
import Foundation
import TensorCore

/// Writes a random-initialised Llama-family model directory (config.json + safetensors), the
/// weights named and shaped as transformers' `LlamaForCausalLM`/`Qwen2ForCausalLM`/`MistralForCausalLM`
/// save them. Linear weights and biases ~ N(0, 0.02²) (`initializer_range`; biases non-zero so tests
/// exercise them), norms 1.
public struct RandomModelSpec: Sendable {
    public var architecture: String = "llama"   // llama | qwen2 | mistral
    public var layers = 2
    public var hiddenSize = 64
    public var intermediateSize = 128
    public var heads = 4
    public var kvHeads = 2
    public var headDim: Int? = nil
    public var vocabSize = 256
    public var maxPositionEmbeddings = 2048
    public var ropeTheta = 10000.0
    public var tieEmbeddings = false
    public var dtype: DType = .f32
    public var seed: UInt64 = 0
    public var maxShardBytes: Int = 5_000_000_000

    public init() {}

    var resolvedHeadDim: Int { headDim ?? hiddenSize / heads }

    /// The config.json this spec describes (keys in transformers' order of importance, not sorted).
    public func configJSON() -> JSONObject {
        let arch: (String, String) = {
            switch architecture {
            case "qwen2": return ("Qwen2ForCausalLM", "qwen2")
            case "mistral": return ("MistralForCausalLM", "mistral")
            default: return ("LlamaForCausalLM", "llama")
            }
        }()
        var o = JSONObject([
            ("architectures", .array([.string(arch.0)])),
            ("model_type", .string(arch.1)),
            ("hidden_size", .int(hiddenSize)),
            ("intermediate_size", .int(intermediateSize)),
            ("num_hidden_layers", .int(layers)),
            ("num_attention_heads", .int(heads)),
            ("num_key_value_heads", .int(kvHeads)),
            ("head_dim", .int(resolvedHeadDim)),
            ("vocab_size", .int(vocabSize)),
            ("max_position_embeddings", .int(maxPositionEmbeddings)),
            ("rms_norm_eps", .double(1e-6)),
            ("rope_theta", .double(ropeTheta)),
            ("hidden_act", .string("silu")),
            ("tie_word_embeddings", .bool(tieEmbeddings)),
            ("torch_dtype", .string(dtype.torchName)),
            ("bos_token_id", .int(1)),
            ("eos_token_id", .int(2)),
            ("initializer_range", .double(0.02)),
        ])
        if architecture == "llama" {
            o["attention_bias"] = .bool(false)
            o["mlp_bias"] = .bool(false)
        }
        if architecture == "mistral" { o["sliding_window"] = .null }
        return o
    }

    /// Tensor names and shapes in the order transformers writes them.
    public func tensorSpecs() -> [TensorSpec] {
        let hd = resolvedHeadDim
        var s = [TensorSpec(name: "model.embed_tokens.weight", dtype: dtype, shape: [vocabSize, hiddenSize])]
        for l in 0..<layers {
            let p = "model.layers.\(l)."
            s.append(TensorSpec(name: p + "input_layernorm.weight", dtype: dtype, shape: [hiddenSize]))
            s.append(TensorSpec(name: p + "self_attn.q_proj.weight", dtype: dtype, shape: [heads * hd, hiddenSize]))
            s.append(TensorSpec(name: p + "self_attn.k_proj.weight", dtype: dtype, shape: [kvHeads * hd, hiddenSize]))
            s.append(TensorSpec(name: p + "self_attn.v_proj.weight", dtype: dtype, shape: [kvHeads * hd, hiddenSize]))
            if architecture == "qwen2" {
                s.append(TensorSpec(name: p + "self_attn.q_proj.bias", dtype: dtype, shape: [heads * hd]))
                s.append(TensorSpec(name: p + "self_attn.k_proj.bias", dtype: dtype, shape: [kvHeads * hd]))
                s.append(TensorSpec(name: p + "self_attn.v_proj.bias", dtype: dtype, shape: [kvHeads * hd]))
            }
            s.append(TensorSpec(name: p + "self_attn.o_proj.weight", dtype: dtype, shape: [hiddenSize, heads * hd]))
            s.append(TensorSpec(name: p + "post_attention_layernorm.weight", dtype: dtype, shape: [hiddenSize]))
            s.append(TensorSpec(name: p + "mlp.gate_proj.weight", dtype: dtype, shape: [intermediateSize, hiddenSize]))
            s.append(TensorSpec(name: p + "mlp.up_proj.weight", dtype: dtype, shape: [intermediateSize, hiddenSize]))
            s.append(TensorSpec(name: p + "mlp.down_proj.weight", dtype: dtype, shape: [hiddenSize, intermediateSize]))
        }
        s.append(TensorSpec(name: "model.norm.weight", dtype: dtype, shape: [hiddenSize]))
        if !tieEmbeddings { s.append(TensorSpec(name: "lm_head.weight", dtype: dtype, shape: [vocabSize, hiddenSize])) }
        return s
    }

    /// Writes the model directory at `out` (atomically; `out` must not exist).
    public func write(to out: String) throws {
        guard ["llama", "qwen2", "mistral"].contains(architecture) else {
            throw ModelIOError(out, "unknown architecture '\(architecture)' (llama, qwen2 or mistral)")
        }
        guard heads > 0, kvHeads > 0, heads % kvHeads == 0 else {
            throw ModelIOError(out, "heads (\(heads)) must be a positive multiple of kv heads (\(kvHeads))")
        }
        guard resolvedHeadDim > 0, resolvedHeadDim % 2 == 0 else { throw ModelIOError(out, "head_dim must be positive and even") }
        let specs = tensorSpecs()
        let config = configJSON()
        try ModelDirectory.assemble(at: out) { tmp in
            var rng = SeededRandom(seed: seed)
            let w = try CheckpointWriter(directory: tmp, specs: specs, maxShardBytes: maxShardBytes)
            for s in specs {
                let n = s.shape.reduce(1, *)
                let v = s.name.hasSuffix("norm.weight") ? [Float](repeating: 1, count: n)
                                                        : (0..<n).map { _ in 0.02 * rng.normal() }
                try w.append(name: s.name, tensor: Tensor(shape: s.shape, floats: v, dtype: s.dtype))
            }
            try w.finish()
            try FileOps.writeAtomically(JSONValue.object(config).serialized() + "\n",
                                        to: (tmp as NSString).appendingPathComponent("config.json"))
        }
    }
}
