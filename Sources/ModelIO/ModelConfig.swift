import Basics
import Foundation

/// The fields of a Hugging Face `config.json` that LongContext uses, mapped from HF keys once.
///
/// Optional fields get the defaults transformers applies (`num_key_value_heads` = heads,
/// `head_dim` = hidden / heads, …). The raw, ordered JSON is kept separately by `ModelDirectory`
/// so that rewriting a config never drops fields this struct does not know.
public struct ModelConfig: Codable, Equatable, Sendable {
    public var modelType: String?
    public var architectures: [String]?
    public var hiddenSize: Int?
    public var intermediateSize: Int?
    public var numHiddenLayers: Int?
    public var numAttentionHeads: Int?
    public var _numKeyValueHeads: Int?
    public var _headDim: Int?
    public var vocabSize: Int?
    public var maxPositionEmbeddings: Int?
    public var rmsNormEps: Double?
    public var ropeTheta: Double?
    public var _tieWordEmbeddings: Bool?
    public var torchDtype: String?
    public var dtype: String?
    public var attentionBias: Bool?
    public var mlpBias: Bool?
    public var slidingWindow: Int?
    public var partialRotaryFactor: Double?
    public var originalMaxPositionEmbeddings: Int?

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type"
        case architectures
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case _numKeyValueHeads = "num_key_value_heads"
        case _headDim = "head_dim"
        case vocabSize = "vocab_size"
        case maxPositionEmbeddings = "max_position_embeddings"
        case rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta"
        case _tieWordEmbeddings = "tie_word_embeddings"
        case torchDtype = "torch_dtype"
        case dtype
        case attentionBias = "attention_bias"
        case mlpBias = "mlp_bias"
        case slidingWindow = "sliding_window"
        case partialRotaryFactor = "partial_rotary_factor"
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
    }

    public init() {}

    /// Lenient decoding: `null` is absent; a field of the wrong type is an error naming the field.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func opt<T: Decodable>(_ k: CodingKeys) throws -> T? { try c.decodeIfPresent(T.self, forKey: k) }
        modelType = try opt(.modelType)
        architectures = try opt(.architectures)
        hiddenSize = try opt(.hiddenSize)
        intermediateSize = try opt(.intermediateSize)
        numHiddenLayers = try opt(.numHiddenLayers)
        numAttentionHeads = try opt(.numAttentionHeads)
        _numKeyValueHeads = try opt(._numKeyValueHeads)
        _headDim = try opt(._headDim)
        vocabSize = try opt(.vocabSize)
        maxPositionEmbeddings = try opt(.maxPositionEmbeddings)
        rmsNormEps = try opt(.rmsNormEps)
        ropeTheta = try opt(.ropeTheta)
        _tieWordEmbeddings = try opt(._tieWordEmbeddings)
        torchDtype = try opt(.torchDtype)
        dtype = try opt(.dtype)
        attentionBias = try opt(.attentionBias)
        mlpBias = try opt(.mlpBias)
        slidingWindow = try opt(.slidingWindow)
        partialRotaryFactor = try opt(.partialRotaryFactor)
        originalMaxPositionEmbeddings = try opt(.originalMaxPositionEmbeddings)
    }

    public var numKeyValueHeads: Int? { _numKeyValueHeads ?? numAttentionHeads }
    public var headDim: Int? {
        if let h = _headDim { return h }
        guard let d = hiddenSize, let h = numAttentionHeads, h > 0 else { return nil }
        return d / h
    }
    /// `LlamaConfig`, `MistralConfig` and `Qwen2Config` default to untied (`False`).
    public var tieWordEmbeddings: Bool { _tieWordEmbeddings ?? false }
    /// `dtype` (transformers ≥ 4.56) or `torch_dtype` (older).
    public var weightDtype: String? { dtype ?? torchDtype }

    /// The architecture family, from `model_type`.
    public var family: ModelFamily { ModelFamily(modelType: modelType) }

    /// Decodes `config.json` bytes; errors name the file and the field.
    public static func decode(_ data: Data, path: String) throws -> ModelConfig {
        do { return try JSONDecoder().decode(ModelConfig.self, from: data) }
        catch let DecodingError.typeMismatch(type, ctx) {
            throw ModelIOError(path, "field '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))' should be \(Self.typeName(type))")
        } catch let DecodingError.valueNotFound(type, ctx) {
            throw ModelIOError(path, "field '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))' should be \(Self.typeName(type))")
        } catch let DecodingError.dataCorrupted(ctx) {
            let field = ctx.codingPath.map(\.stringValue).joined(separator: ".")
            if !field.isEmpty { throw ModelIOError(path, "field '\(field)' is invalid: \(ctx.debugDescription)") }
            do { _ = try JSONValue.parse(data) } catch let e as JSONError {
                throw ModelIOError(path, "not valid JSON: \(e.message) (byte \(e.offset))")
            }
            let detail = (ctx.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String ?? ctx.debugDescription
            throw ModelIOError(path, "a value cannot be read: \(detail)")
        } catch {
            throw ModelIOError(path, "cannot decode: \(error)")
        }
    }

    static func typeName(_ t: Any.Type) -> String {
        switch t {
        case is Int.Type: return "an integer"
        case is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        case is String.Type: return "a string"
        default: return "\(t)"
        }
    }

    /// Structural checks every Llama-family config must pass; each message names the field.
    public func validate(path: String) throws {
        func need(_ v: Int?, _ key: String) throws -> Int {
            guard let v else { throw ModelIOError(path, "missing '\(key)'") }
            guard v > 0 else { throw ModelIOError(path, "'\(key)' must be positive, got \(v)") }
            return v
        }
        let hidden = try need(hiddenSize, "hidden_size")
        let heads = try need(numAttentionHeads, "num_attention_heads")
        _ = try need(numHiddenLayers, "num_hidden_layers")
        _ = try need(vocabSize, "vocab_size")
        _ = try need(intermediateSize, "intermediate_size")
        let kv = try need(numKeyValueHeads, "num_key_value_heads")
        if heads % kv != 0 {
            throw ModelIOError(path, "num_attention_heads (\(heads)) is not a multiple of num_key_value_heads (\(kv))")
        }
        if _headDim == nil && hidden % heads != 0 {
            throw ModelIOError(path, "hidden_size (\(hidden)) is not divisible by num_attention_heads (\(heads)) and head_dim is not given")
        }
        if let hd = headDim, hd % 2 != 0 { throw ModelIOError(path, "head_dim (\(hd)) must be even for rotary embeddings") }
        if let m = maxPositionEmbeddings, m <= 0 { throw ModelIOError(path, "'max_position_embeddings' must be positive, got \(m)") }
        if let t = ropeTheta, !(t > 0) { throw ModelIOError(path, "'rope_theta' must be positive, got \(t)") }
    }
}

/// Architecture families LongContext recognises.
public enum ModelFamily: String, Sendable, CaseIterable {
    case llama, mistral, qwen2, qwen3, phi3, gemma, gemma2, other

    public init(modelType: String?) {
        switch modelType?.lowercased() {
        case "llama": self = .llama
        case "mistral", "mixtral": self = .mistral
        case "qwen2": self = .qwen2
        case "qwen3": self = .qwen3
        case "phi3": self = .phi3
        case "gemma": self = .gemma
        case "gemma2": self = .gemma2
        default: self = .other
        }
    }

    /// Llama-style decoders (RMSNorm, rotary attention with GQA, SwiGLU MLP) the engine runs.
    public var isLlamaFamily: Bool { [.llama, .mistral, .qwen2].contains(self) }
}
