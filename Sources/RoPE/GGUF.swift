import Foundation

/// A GGUF metadata value of the types the rope keys use.
public enum GGUFMetadataValue: Sendable, Equatable, CustomStringConvertible {
    case uint32(UInt32)
    case float32(Float)
    case string(String)
    case bool(Bool)

    public var description: String {
        switch self {
        case .uint32(let value): return "\(value)"
        case .float32(let value): return "\(value)"
        case .string(let value): return value
        case .bool(let value): return value ? "true" : "false"
        }
    }

    /// The GGUF type name (`uint32`, `float32`, `string`, `bool`).
    public var typeName: String {
        switch self {
        case .uint32: return "uint32"
        case .float32: return "float32"
        case .string: return "string"
        case .bool: return "bool"
        }
    }
}

/// The GGUF equivalent of a RoPE configuration (what llama.cpp's `convert_hf_to_gguf.py` writes, rope.md §5.3).
public struct GGUFRopeExport: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var key: String
        public var value: GGUFMetadataValue
    }

    public struct Tensor: Sendable, Equatable {
        /// e.g. `rope_freqs.weight`, `rope_factors_long.weight`.
        public var name: String
        /// Float32 values, one per pair.
        public var values: [Float]
    }

    public var architecture: String
    public var metadata: [Entry]
    public var tensors: [Tensor]
    /// Where llama.cpp's behaviour differs from transformers for this configuration.
    public var notes: [String]

    /// Value of a metadata key, if present.
    public subscript(key: String) -> GGUFMetadataValue? { metadata.first { $0.key == key }?.value }
}

extension RoPE {
    /// GGUF architecture name for a Hugging Face `model_type` (as llama.cpp's converter registers them);
    /// unknown types are returned unchanged.
    public static func ggufArchitecture(modelType: String) -> String {
        let map: [String: String] = [
            "llama": "llama", "mistral": "llama", "mixtral": "llama", "qwen2": "qwen2", "qwen2_moe": "qwen2moe",
            "qwen3": "qwen3", "qwen3_moe": "qwen3moe", "phi3": "phi3", "gemma": "gemma", "gemma2": "gemma2",
            "gemma3": "gemma3", "deepseek_v2": "deepseek2", "deepseek_v3": "deepseek2", "gpt_oss": "gpt-oss",
            "gpt_neox": "gptneox", "olmo2": "olmo2", "granite": "granite", "stablelm": "stablelm",
            "starcoder2": "starcoder2", "internlm2": "internlm2", "falcon": "falcon", "phi": "phi2",
        ]
        return map[modelType] ?? modelType
    }
}

extension RopeConfiguration {
    /// The GGUF metadata keys (`{arch}.rope.*`, `{arch}.context_length`) and rope tensors equivalent to this
    /// configuration, following llama.cpp's converter:
    ///
    /// - always `rope.dimension_count` (rotary dim) and `rope.freq_base` (θ; the NTK-aware base for `ntk`);
    /// - `linear`: `rope.scaling.type = linear`, `rope.scaling.factor`;
    /// - `yarn`: type `yarn`, `factor`, `original_context_length`, and when set `yarn_beta_fast`, `yarn_beta_slow`,
    ///   `yarn_attn_factor` (explicit `attention_factor`), `yarn_log_multiplier` (`0.1·mscale_all_dim`, deepseek2);
    /// - `longrope`: type `longrope`, `original_context_length`, `rope.scaling.attn_factor`, tensors
    ///   `rope_factors_short.weight` / `rope_factors_long.weight`;
    /// - `llama3`: no scaling keys; tensor `rope_freqs.weight` of per-pair divisors;
    /// - `dynamic`: no GGUF equivalent (plain RoPE, with a note).
    /// Throws when the configuration is invalid.
    public func ggufExport(architecture arch: String) throws -> GGUFRopeExport {
        try validate()
        let config = exportable
        var export = GGUFRopeExport(architecture: arch, metadata: [], tensors: [], notes: [])
        func put(_ key: String, _ value: GGUFMetadataValue) {
            export.metadata.append(.init(key: "\(arch).\(key)", value: value))
        }
        if let maxPositionEmbeddings = config.maxPositionEmbeddings {
            put("context_length", .uint32(UInt32(clamping: maxPositionEmbeddings)))
        }
        put("rope.dimension_count", .uint32(UInt32(clamping: config.rotaryDim)))
        put("rope.freq_base", .float32(Float(config.theta)))
        if ropeType == .ntk {
            export.notes.append("ntk is exported as a plain freq_base of \(config.theta) (θ·factor^(d/(d−2))).")
        }
        let original = config.originalMaxPositionEmbeddings.map { UInt32(clamping: $0) }
        switch config.ropeType {
        case .default, .ntk:
            break
        case .linear:
            put("rope.scaling.type", .string("linear"))
            put("rope.scaling.factor", .float32(Float(config.factor!)))
        case .dynamic:
            export.notes.append("llama.cpp has no dynamic NTK; the GGUF carries plain RoPE (θ \(config.theta)) and transformers' per-length base change is lost.")
        case .yarn:
            let factor = config.factor ?? Double(config.maxPositionEmbeddings!) / Double(config.originalMaxPositionEmbeddings!)
            put("rope.scaling.type", .string("yarn"))
            put("rope.scaling.factor", .float32(Float(factor)))
            if let original { put("rope.scaling.original_context_length", .uint32(original)) }
            if let betaFast = config.betaFast { put("rope.scaling.yarn_beta_fast", .float32(Float(betaFast))) }
            if let betaSlow = config.betaSlow { put("rope.scaling.yarn_beta_slow", .float32(Float(betaSlow))) }
            if let attentionFactor = config.attentionFactor {
                put("rope.scaling.yarn_attn_factor", .float32(Float(attentionFactor)))
                export.notes.append("recent llama.cpp (PR #17945) recomputes the YaRN magnitude from factor/mscale; an explicit attention_factor may not be honoured.")
            }
            if let mscaleAllDim = config.mscaleAllDim, mscaleAllDim != 0 {
                if arch == "deepseek2" {
                    put("rope.scaling.yarn_log_multiplier", .float32(Float(0.1 * mscaleAllDim)))
                } else {
                    export.notes.append("mscale_all_dim \(mscaleAllDim) has no generic GGUF key outside deepseek2; llama.cpp uses 0.1·ln(factor)+1.")
                }
            }
            if config.truncate == false {
                export.notes.append("llama.cpp always floors/ceils the YaRN correction range; truncate=false is not representable.")
            }
        case .longrope:
            let factor = config.factor ?? Double(config.maxPositionEmbeddings!) / Double(config.originalMaxPositionEmbeddings!)
            let attention = config.attentionFactor
                ?? RoPE.longropeAttentionFactor(factor: factor, originalLength: config.originalMaxPositionEmbeddings!)
            put("rope.scaling.type", .string("longrope"))
            if let original { put("rope.scaling.original_context_length", .uint32(original)) }
            put("rope.scaling.attn_factor", .float32(Float(attention)))
            export.tensors.append(.init(name: "rope_factors_long.weight", values: config.longFactor!.map { Float($0) }))
            export.tensors.append(.init(name: "rope_factors_short.weight", values: config.shortFactor!.map { Float($0) }))
            export.notes.append("llama.cpp picks the long factors per context size (n_ctx > original), transformers per sequence length.")
        case .llama3:
            export.tensors.append(.init(name: "rope_freqs.weight", values: config.llama3Divisors()))
        }
        return export
    }

    /// llama3 per-pair divisors as llama.cpp's converter stores them in `rope_freqs.weight`:
    /// 1 for wavelengths below `L/high`, `factor` above `L/low`, else `1 / ((1 − s)/factor + s)` with
    /// `s = (L/λ − low)/(high − low)` (Double arithmetic on the Float32 default frequencies, stored as Float32).
    public func llama3Divisors() -> [Float] {
        guard let factor, let low = lowFreqFactor, let high = highFreqFactor,
              let original = originalMaxPositionEmbeddings.map(Double.init) else { return [] }
        return RoPE.defaultInverseFrequencies(base: theta, rotaryDim: rotaryDim).map { inv in
            let wavelength = 2 * Double.pi / Double(inv)
            if wavelength < original / high { return 1 }
            if wavelength > original / low { return Float(factor) }
            let smooth = (original / wavelength - low) / (high - low)
            return Float(1 / ((1 - smooth) / factor + smooth))
        }
    }
}
