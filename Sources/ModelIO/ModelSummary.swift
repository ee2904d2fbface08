import Basics
import Foundation
import RoPE
import TensorCore

/// What `longctx inspect` reports about a model directory.
public struct ModelSummary: Codable, Sendable {
    public struct TensorEntry: Codable, Sendable {
        public let name: String
        public let dtype: String
        public let shape: [Int]
        public let file: String
    }
    public struct Rope: Codable, Sendable {
        /// `rope_theta` (top level in transformers 4.x, inside `rope_parameters` in 5.x).
        public let theta: Double?
        /// `rope_type` (or legacy `type`) of `rope_scaling`/`rope_parameters`; `default` when absent.
        public let type: String
        public let factor: Double?
        /// The raw scaling object as written in config.json (compact JSON), if any.
        public let parameters: String?
    }
    public let path: String
    public let architecture: String
    public let modelType: String
    public let family: String
    public let engineSupported: Bool
    public let layers: Int?
    public let hiddenSize: Int?
    public let intermediateSize: Int?
    public let attentionHeads: Int?
    public let keyValueHeads: Int?
    public let headDim: Int?
    public let vocabSize: Int?
    public let tiedEmbeddings: Bool
    public let configDtype: String?
    /// Context the model was trained for (`original_max_position_embeddings` when a scaling
    /// config names it, else `max_position_embeddings`).
    public let trainedContext: Int?
    public let maxPositionEmbeddings: Int?
    public let rope: Rope
    public let parameters: Int
    public let parametersByDtype: [String: Int]
    public let bytes: Int
    public let shards: [String]
    public let tensors: [TensorEntry]

    enum CodingKeys: String, CodingKey {
        case path, architecture, family, layers, rope, parameters, bytes, shards, tensors
        case modelType = "model_type"
        case engineSupported = "engine_supported"
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case attentionHeads = "num_attention_heads"
        case keyValueHeads = "num_key_value_heads"
        case headDim = "head_dim"
        case vocabSize = "vocab_size"
        case tiedEmbeddings = "tie_word_embeddings"
        case configDtype = "dtype"
        case trainedContext = "trained_context"
        case maxPositionEmbeddings = "max_position_embeddings"
        case parametersByDtype = "parameters_by_dtype"
    }

    /// Reads `dir`'s config and weight headers (no tensor data is touched).
    public init(_ dir: ModelDirectory) throws {
        let c = dir.config
        try c.validate(path: dir.configPath)
        let ck = try dir.weights()
        path = dir.path
        architecture = c.architectures?.first ?? "unknown"
        modelType = c.modelType ?? "unknown"
        family = c.family.rawValue
        engineSupported = c.family.isLlamaFamily
        layers = c.numHiddenLayers
        hiddenSize = c.hiddenSize
        intermediateSize = c.intermediateSize
        attentionHeads = c.numAttentionHeads
        keyValueHeads = c.numKeyValueHeads
        headDim = c.headDim
        vocabSize = c.vocabSize
        tiedEmbeddings = c.tieWordEmbeddings
        configDtype = c.weightDtype
        maxPositionEmbeddings = c.maxPositionEmbeddings
        // Read RoPE settings as transformers 5.x does (RoPE's codec); fall back to the raw keys when the
        // codec cannot resolve them (an unsupported type), so inspect still reports the model.
        let scaling: JSONObject? = {
            if let s = dir.configJSON["rope_scaling"]?.objectValue, !s.isEmpty { return s }
            return dir.configJSON["rope_parameters"]?.objectValue
        }()
        if let data = try? dir.configData(), let resolved = try? HFRopeConfig.decode(data).resolve() {
            let r = resolved.configuration
            trainedContext = r.trainedContextLength
            rope = Rope(theta: r.theta, type: r.ropeType.rawValue, factor: r.factor,
                        parameters: scaling.map { JSONValue.object($0).serialized(indent: nil) })
        } else {
            let original = scaling?["original_max_position_embeddings"]?.intValue ?? c.originalMaxPositionEmbeddings
            trainedContext = original ?? c.maxPositionEmbeddings
            let type = scaling?["rope_type"]?.stringValue ?? scaling?["type"]?.stringValue ?? "default"
            rope = Rope(theta: scaling?["rope_theta"]?.doubleValue ?? c.ropeTheta, type: type,
                        factor: scaling?["factor"]?.doubleValue,
                        parameters: scaling.map { JSONValue.object($0).serialized(indent: nil) })
        }
        var total = 0, byType = [String: Int](), nbytes = 0
        var list = [TensorEntry]()
        for name in ck.names {
            guard let info = ck.info(name) else { continue }
            total += info.count
            byType[info.dtype.rawValue, default: 0] += info.count
            nbytes += info.byteCount
            list.append(TensorEntry(name: name, dtype: info.dtype.rawValue, shape: info.shape, file: ck.shardName(of: name) ?? ""))
        }
        parameters = total
        parametersByDtype = byType
        bytes = nbytes
        shards = ck.shardNames
        tensors = list
    }

    /// Human-readable report.
    public func text(showTensors: Bool = true) -> String {
        func opt<T>(_ v: T?) -> String { v.map { "\($0)" } ?? "?" }
        var s = ""
        s += "model        \(path)\n"
        s += "architecture \(architecture) (model_type \(modelType)\(engineSupported ? "" : ", not run by the built-in engine"))\n"
        s += "shape        \(opt(layers)) layers, hidden \(opt(hiddenSize)), intermediate \(opt(intermediateSize)), "
        s += "heads \(opt(attentionHeads)) (kv \(opt(keyValueHeads)), head_dim \(opt(headDim))), vocab \(opt(vocabSize))"
        s += tiedEmbeddings ? ", tied embeddings\n" : "\n"
        s += "context      trained \(opt(trainedContext)), max_position_embeddings \(opt(maxPositionEmbeddings))\n"
        s += "rope         theta \(rope.theta.map { Self.number($0) } ?? "?"), type \(rope.type)"
        if let p = rope.parameters { s += " \(p)" }
        s += "\n"
        let dtypes = parametersByDtype.sorted { $0.key < $1.key }.map { "\($0.key) \(Self.grouped($0.value))" }.joined(separator: ", ")
        s += "parameters   \(Self.grouped(parameters)) (\(dtypes)), \(Self.bytesText(bytes)) in \(shards.count) file\(shards.count == 1 ? "" : "s")\n"
        if showTensors {
            s += "tensors      \(tensors.count)\n"
            let w = tensors.map(\.name.count).max() ?? 0
            for t in tensors {
                s += "  \(t.name.padding(toLength: w, withPad: " ", startingAt: 0))  \(t.dtype.padding(toLength: 4, withPad: " ", startingAt: 0))  [\(t.shape.map(String.init).joined(separator: ", "))]\n"
            }
        }
        return s
    }

    static func grouped(_ n: Int) -> String {
        let d = String(n)
        var out = ""
        for (i, ch) in d.enumerated() {
            if i > 0 && (d.count - i) % 3 == 0 { out += "," }
            out.append(ch)
        }
        return out
    }

    static func number(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : String(v)
    }

    static func bytesText(_ b: Int) -> String {
        if b >= 1 << 30 { return String(format: "%.2f GiB", Double(b) / Double(1 << 30)) }
        if b >= 1 << 20 { return String(format: "%.1f MiB", Double(b) / Double(1 << 20)) }
        if b >= 1 << 10 { return String(format: "%.1f KiB", Double(b) / Double(1 << 10)) }
        return "\(b) B"
    }
}
