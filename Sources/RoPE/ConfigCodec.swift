import Basics
import Foundation

/// The keys of one rope dict: transformers 4.x `rope_scaling` or 5.x `rope_parameters` (flat or one layer type's
/// entry). Every key is mapped here once; keys this module does not model are kept in ``otherKeys``.
public struct HFRopeParameters: Codable, Sendable, Equatable {
    /// `rope_type`.
    public var ropeType: String?
    /// `type` — the legacy alias of `rope_type` (used when `rope_type` is absent).
    public var legacyType: String?
    /// `rope_theta` (5.x keeps θ inside the dict).
    public var ropeTheta: Double?
    /// `partial_rotary_factor` (5.x keeps it inside the dict).
    public var partialRotaryFactor: Double?
    public var factor: Double?
    public var originalMaxPositionEmbeddings: Int?
    public var attentionFactor: Double?
    public var betaFast: Double?
    public var betaSlow: Double?
    public var mscale: Double?
    public var mscaleAllDim: Double?
    public var truncate: Bool?
    public var lowFreqFactor: Double?
    public var highFreqFactor: Double?
    public var shortFactor: [Double]?
    public var longFactor: [Double]?
    /// Keys not modelled above (e.g. `finetuned`, `mrope_section`), sorted by key.
    public var otherKeys: JSONObject

    public init() {
        otherKeys = JSONObject()
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case ropeType = "rope_type"
        case legacyType = "type"
        case ropeTheta = "rope_theta"
        case partialRotaryFactor = "partial_rotary_factor"
        case factor
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
        case attentionFactor = "attention_factor"
        case betaFast = "beta_fast"
        case betaSlow = "beta_slow"
        case mscale
        case mscaleAllDim = "mscale_all_dim"
        case truncate
        case lowFreqFactor = "low_freq_factor"
        case highFreqFactor = "high_freq_factor"
        case shortFactor = "short_factor"
        case longFactor = "long_factor"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        ropeType = try c.decodeIfPresent(String.self, forKey: .ropeType)
        legacyType = try c.decodeIfPresent(String.self, forKey: .legacyType)
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta)
        partialRotaryFactor = try c.decodeIfPresent(Double.self, forKey: .partialRotaryFactor)
        factor = try c.decodeIfPresent(Double.self, forKey: .factor)
        originalMaxPositionEmbeddings = try c.decodeWholeNumber(forKey: .originalMaxPositionEmbeddings)
        attentionFactor = try c.decodeIfPresent(Double.self, forKey: .attentionFactor)
        betaFast = try c.decodeIfPresent(Double.self, forKey: .betaFast)
        betaSlow = try c.decodeIfPresent(Double.self, forKey: .betaSlow)
        mscale = try c.decodeIfPresent(Double.self, forKey: .mscale)
        mscaleAllDim = try c.decodeIfPresent(Double.self, forKey: .mscaleAllDim)
        truncate = try c.decodeIfPresent(Bool.self, forKey: .truncate)
        lowFreqFactor = try c.decodeIfPresent(Double.self, forKey: .lowFreqFactor)
        highFreqFactor = try c.decodeIfPresent(Double.self, forKey: .highFreqFactor)
        shortFactor = try c.decodeIfPresent([Double].self, forKey: .shortFactor)
        longFactor = try c.decodeIfPresent([Double].self, forKey: .longFactor)
        let any = try decoder.container(keyedBy: AnyKey.self)
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        otherKeys = JSONObject(try any.allKeys.filter { !known.contains($0.stringValue) }
            .sorted { $0.stringValue < $1.stringValue }
            .map { ($0.stringValue, try any.decode(JSONValue.self, forKey: $0)) })
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(ropeType, forKey: .ropeType)
        try c.encodeIfPresent(legacyType, forKey: .legacyType)
        try c.encodeIfPresent(ropeTheta, forKey: .ropeTheta)
        try c.encodeIfPresent(partialRotaryFactor, forKey: .partialRotaryFactor)
        try c.encodeIfPresent(factor, forKey: .factor)
        try c.encodeIfPresent(originalMaxPositionEmbeddings, forKey: .originalMaxPositionEmbeddings)
        try c.encodeIfPresent(attentionFactor, forKey: .attentionFactor)
        try c.encodeIfPresent(betaFast, forKey: .betaFast)
        try c.encodeIfPresent(betaSlow, forKey: .betaSlow)
        try c.encodeIfPresent(mscale, forKey: .mscale)
        try c.encodeIfPresent(mscaleAllDim, forKey: .mscaleAllDim)
        try c.encodeIfPresent(truncate, forKey: .truncate)
        try c.encodeIfPresent(lowFreqFactor, forKey: .lowFreqFactor)
        try c.encodeIfPresent(highFreqFactor, forKey: .highFreqFactor)
        try c.encodeIfPresent(shortFactor, forKey: .shortFactor)
        try c.encodeIfPresent(longFactor, forKey: .longFactor)
        var any = encoder.container(keyedBy: AnyKey.self)
        for (key, value) in otherKeys.entries { try any.encode(value, forKey: AnyKey(key)) }
    }

    /// Whether the dict is empty (Python falsiness: `{}` counts as absent for `rope_scaling or rope_parameters`).
    public var isEmpty: Bool { self == HFRopeParameters() }

    /// The config keys present in this dict (modelled and other).
    public var presentKeys: [String] {
        var keys: [String] = []
        func note(_ value: Any?, _ key: CodingKeys) { if value != nil { keys.append(key.rawValue) } }
        note(ropeType, .ropeType); note(legacyType, .legacyType); note(ropeTheta, .ropeTheta)
        note(partialRotaryFactor, .partialRotaryFactor); note(factor, .factor)
        note(originalMaxPositionEmbeddings, .originalMaxPositionEmbeddings); note(attentionFactor, .attentionFactor)
        note(betaFast, .betaFast); note(betaSlow, .betaSlow); note(mscale, .mscale); note(mscaleAllDim, .mscaleAllDim)
        note(truncate, .truncate); note(lowFreqFactor, .lowFreqFactor); note(highFreqFactor, .highFreqFactor)
        note(shortFactor, .shortFactor); note(longFactor, .longFactor)
        return keys + otherKeys.keys
    }

    /// Keys transformers 5.23 expects for each rope type (required ∪ optional, plus `rope_type`, `type`,
    /// `rope_theta`, `partial_rotary_factor`, which are always accepted).
    static func recognizedKeys(for type: RopeType) -> Set<String> {
        let always: Set<String> = ["rope_type", "type", "rope_theta", "partial_rotary_factor"]
        switch type {
        case .default: return always
        case .linear, .dynamic, .ntk: return always.union(["factor"])
        case .yarn:
            return always.union(["factor", "original_max_position_embeddings", "attention_factor", "beta_fast",
                                 "beta_slow", "mscale", "mscale_all_dim", "truncate"])
        case .longrope:
            return always.union(["short_factor", "long_factor", "original_max_position_embeddings",
                                 "attention_factor", "factor"])
        case .llama3:
            return always.union(["factor", "original_max_position_embeddings", "low_freq_factor", "high_freq_factor"])
        }
    }
}

/// `rope_parameters` in transformers 5.x: one dict, or one dict per layer type
/// (`{"full_attention": {...}, "sliding_attention": {...}}`, Gemma-3 style; `null` entries are NoPE layers).
public enum HFRopeParametersField: Codable, Sendable, Equatable {
    case flat(HFRopeParameters)
    case nested([String: HFRopeParameters?])

    public init(from decoder: Decoder) throws {
        let any = try decoder.container(keyedBy: AnyKey.self)
        let modelled = Set(HFRopeParameters.CodingKeys.allCases.map(\.rawValue))
        let looksNested = !any.allKeys.isEmpty && any.allKeys.allSatisfy { key in
            !modelled.contains(key.stringValue)
                && ((try? any.decodeNil(forKey: key)) == true
                    || (try? any.decode([String: JSONValue].self, forKey: key)) != nil)
        }
        if looksNested {
            var layers: [String: HFRopeParameters?] = [:]
            for key in any.allKeys {
                layers[key.stringValue] = try any.decodeIfPresent(HFRopeParameters.self, forKey: key)
            }
            self = .nested(layers)
        } else {
            self = .flat(try HFRopeParameters(from: decoder))
        }
    }

    public func encode(to encoder: Encoder) throws {
        switch self {
        case .flat(let parameters):
            try parameters.encode(to: encoder)
        case .nested(let layers):
            var any = encoder.container(keyedBy: AnyKey.self)
            for (key, value) in layers.sorted(by: { $0.key < $1.key }) {
                try any.encode(value, forKey: AnyKey(key))
            }
        }
    }
}

/// The RoPE-relevant part of a Hugging Face `config.json`: every key is mapped once here.
/// Decode with ``decode(_:)`` (maps decoding failures to errors that name the field), then
/// ``resolve(layerType:)`` applies transformers 5.x's standardisation (`standardize_rope_params`).
public struct HFRopeConfig: Codable, Sendable, Equatable {
    public var modelType: String?
    /// Top-level `rope_theta` (4.x).
    public var ropeTheta: Double?
    public var maxPositionEmbeddings: Int?
    /// Top-level `original_max_position_embeddings` (Phi-3 style). For llama3/yarn/longrope transformers 5.x gives it
    /// priority over the value inside the rope dict.
    public var originalMaxPositionEmbeddings: Int?
    public var headDim: Int?
    public var hiddenSize: Int?
    public var numAttentionHeads: Int?
    /// Top-level `partial_rotary_factor` (4.x).
    public var partialRotaryFactor: Double?
    /// DeepSeek-V2/V3 (MLA): the rotary part of each head; transformers sets `head_dim` to it.
    public var qkRopeHeadDim: Int?
    /// DeepSeek-V3 `rope_interleave` (interleaved pair layout; transformers' default for DeepSeek-V3 is `true`).
    public var ropeInterleave: Bool?
    /// transformers 4.x `rope_scaling`.
    public var ropeScaling: HFRopeParameters?
    /// transformers 5.x `rope_parameters`.
    public var ropeParameters: HFRopeParametersField?

    public init() {}

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type"
        case ropeTheta = "rope_theta"
        case maxPositionEmbeddings = "max_position_embeddings"
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
        case headDim = "head_dim"
        case hiddenSize = "hidden_size"
        case numAttentionHeads = "num_attention_heads"
        case partialRotaryFactor = "partial_rotary_factor"
        case qkRopeHeadDim = "qk_rope_head_dim"
        case ropeInterleave = "rope_interleave"
        case ropeScaling = "rope_scaling"
        case ropeParameters = "rope_parameters"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType)
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta)
        maxPositionEmbeddings = try c.decodeWholeNumber(forKey: .maxPositionEmbeddings)
        originalMaxPositionEmbeddings = try c.decodeWholeNumber(forKey: .originalMaxPositionEmbeddings)
        headDim = try c.decodeWholeNumber(forKey: .headDim)
        hiddenSize = try c.decodeWholeNumber(forKey: .hiddenSize)
        numAttentionHeads = try c.decodeWholeNumber(forKey: .numAttentionHeads)
        partialRotaryFactor = try c.decodeIfPresent(Double.self, forKey: .partialRotaryFactor)
        qkRopeHeadDim = try c.decodeWholeNumber(forKey: .qkRopeHeadDim)
        ropeInterleave = try c.decodeIfPresent(Bool.self, forKey: .ropeInterleave)
        ropeScaling = try c.decodeIfPresent(HFRopeParameters.self, forKey: .ropeScaling)
        ropeParameters = try c.decodeIfPresent(HFRopeParametersField.self, forKey: .ropeParameters)
    }

    /// Decodes the RoPE keys of a `config.json`. Wrong JSON types throw ``RopeError/invalidConfiguration(_:)``
    /// with a ``RopeRule/wrongType`` issue naming the key path (e.g. `rope_scaling.factor`).
    public static func decode(_ data: Data) throws -> HFRopeConfig {
        do {
            return try JSONDecoder().decode(HFRopeConfig.self, from: data)
        } catch let error as DecodingError {
            throw RopeError.invalidConfiguration([HFRopeConfig.issue(for: error)])
        } catch {
            throw RopeError.invalidConfiguration([RopeIssue(.malformedConfig, field: "config.json",
                                                            "not valid JSON: \(error.localizedDescription)")])
        }
    }

    static func issue(for error: DecodingError) -> RopeIssue {
        func path(_ codingPath: [CodingKey]) -> String {
            let text = codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
                .reduce("") { $0.isEmpty || $1.hasPrefix("[") ? $0 + $1 : $0 + "." + $1 }
            return text.isEmpty ? "config.json" : text
        }
        switch error {
        case .typeMismatch(let type, let context):
            let expected = type == String.self ? "a string" : type == Bool.self ? "a boolean"
                : (type == Int.self ? "an integer" : (type == Double.self ? "a number" : "\(type)"))
            let field = path(context.codingPath)
            if field == "config.json" {
                return RopeIssue(.malformedConfig, field: field, "top level must be a JSON object")
            }
            return RopeIssue(.wrongType, field: field, "expected \(expected)")
        case .dataCorrupted(let context):
            let field = path(context.codingPath)
            if field == "config.json" {
                return RopeIssue(.malformedConfig, field: field, "not valid JSON: \(context.debugDescription)")
            }
            return RopeIssue(.wrongType, field: field, context.debugDescription)
        case .keyNotFound(let key, let context):
            return RopeIssue(.missingRequiredKey, field: path(context.codingPath + [key]), "missing")
        case .valueNotFound(_, let context):
            return RopeIssue(.wrongType, field: path(context.codingPath), "unexpected null")
        @unknown default:
            return RopeIssue(.malformedConfig, field: "config.json", "\(error)")
        }
    }
}

/// A config resolved to one ``RopeConfiguration`` plus what was found on the way.
public struct HFRopeResolution: Sendable, Equatable {
    public var configuration: RopeConfiguration
    /// Where the rope dict came from: `rope_scaling`, `rope_parameters`, `rope_parameters.<layer>`, or `none`.
    public var source: String
    /// All findings (codec-level and ``RopeConfiguration/diagnostics(fieldPrefix:)``); no errors when resolution succeeded.
    public var issues: [RopeIssue]
    public var warnings: [RopeIssue] { issues.filter { $0.severity == .warning } }
}

extension HFRopeConfig {
    /// Layer types of a nested `rope_parameters` (empty when flat or absent).
    public var layerTypes: [String] {
        if case .nested(let layers) = ropeParameters { return layers.keys.sorted() }
        return []
    }

    /// Resolves the config the way transformers 5.23 does (`convert_rope_params_to_dict` + `standardize_rope_params`):
    /// - the rope dict is `rope_scaling` if non-empty, else `rope_parameters` (for a nested one: `layerType`, or
    ///   `full_attention`, or the only entry);
    /// - `rope_type` falls back to `type`, then `default`;
    /// - `rope_theta` and `partial_rotary_factor` come from the dict, else the top level
    ///   (θ default 10000 with a ``RopeRule/thetaMissing`` warning; factor default 1);
    /// - `head_dim`: `qk_rope_head_dim` (DeepSeek MLA), else `head_dim`, else `hidden_size / num_attention_heads`;
    /// - for llama3/yarn/longrope, `original_max_position_embeddings` is the top-level key if present (it wins
    ///   over the dict, Phi-3 style), else the dict's, else `max_position_embeddings`.
    /// Throws ``RopeError/invalidConfiguration(_:)`` listing every error (with warnings) otherwise.
    public func resolve(layerType: String? = nil) throws -> HFRopeResolution {
        var issues: [RopeIssue] = []
        var dict = HFRopeParameters()
        var source = "none"
        var nested = false
        if let scaling = ropeScaling, !scaling.isEmpty {
            dict = scaling
            source = "rope_scaling"
        } else if let parameters = ropeParameters {
            switch parameters {
            case .flat(let flat):
                dict = flat
                source = "rope_parameters"
            case .nested(let layers):
                nested = true
                let names = layers.keys.sorted()
                let chosen = layerType ?? (layers["full_attention"] != nil ? "full_attention"
                                                                               : (names.count == 1 ? names[0] : nil))
                guard let chosen, let entry = layers[chosen] else {
                    let what = layerType.map { "layer type '\($0)' not found" } ?? "nested by layer type"
                    throw RopeError.invalidConfiguration([RopeIssue(
                        .malformedConfig, field: "rope_parameters",
                        "\(what); choose one of: \(names.joined(separator: ", "))")])
                }
                guard let entry else {
                    throw RopeError.invalidConfiguration([RopeIssue(
                        .malformedConfig, field: "rope_parameters.\(chosen)", "is null (no RoPE for this layer type)")])
                }
                dict = entry
                source = "rope_parameters.\(chosen)"
            }
        }
        let prefix = source == "none" ? "" : source + "."

        let typeName = dict.ropeType ?? dict.legacyType ?? "default"
        guard let type = RopeType(configName: typeName) else {
            let known = RopeType.allCases.map(\.rawValue).joined(separator: ", ")
            throw RopeError.invalidConfiguration([RopeIssue(
                .unknownRopeType, field: prefix + (dict.ropeType != nil ? "rope_type" : "type"),
                "unknown rope type '\(typeName)' (known: \(known))")])
        }

        var theta = dict.ropeTheta ?? ropeTheta
        if theta == nil {
            issues.append(RopeIssue(.thetaMissing, field: "rope_theta", "absent; assuming transformers' default 10000"))
            theta = 10_000
        }

        let headDimension: Int
        if let qkRopeHeadDim {
            headDimension = qkRopeHeadDim
        } else if let headDim {
            headDimension = headDim
        } else if let hiddenSize, let numAttentionHeads, numAttentionHeads > 0 {
            headDimension = hiddenSize / numAttentionHeads
        } else {
            throw RopeError.invalidConfiguration([RopeIssue(
                .missingRequiredKey, field: "head_dim",
                "missing, and hidden_size / num_attention_heads cannot be computed (hidden_size=\(hiddenSize.map(String.init) ?? "missing"), num_attention_heads=\(numAttentionHeads.map(String.init) ?? "missing"))")])
        }

        var original = dict.originalMaxPositionEmbeddings
        if [.llama3, .yarn, .longrope].contains(type) {
            if !nested, let top = originalMaxPositionEmbeddings {
                original = top
            } else if original == nil {
                original = maxPositionEmbeddings
            }
        }

        let configuration = RopeConfiguration(
            ropeType: type, theta: theta!, headDim: headDimension,
            partialRotaryFactor: dict.partialRotaryFactor ?? partialRotaryFactor ?? 1.0,
            maxPositionEmbeddings: maxPositionEmbeddings, factor: dict.factor,
            originalMaxPositionEmbeddings: original, attentionFactor: dict.attentionFactor,
            betaFast: dict.betaFast, betaSlow: dict.betaSlow, mscale: dict.mscale, mscaleAllDim: dict.mscaleAllDim,
            truncate: dict.truncate, lowFreqFactor: dict.lowFreqFactor, highFreqFactor: dict.highFreqFactor,
            shortFactor: dict.shortFactor, longFactor: dict.longFactor)

        let recognized = HFRopeParameters.recognizedKeys(for: type)
        for key in dict.presentKeys where !recognized.contains(key) {
            issues.append(RopeIssue(.unrecognizedKey, field: prefix + key,
                                    "not used by rope_type '\(type.rawValue)' (ignored)"))
        }
        issues += configuration.diagnostics(fieldPrefix: prefix)
        if issues.contains(where: { $0.severity == .error }) {
            throw RopeError.invalidConfiguration(issues)
        }
        return HFRopeResolution(configuration: configuration, source: source, issues: issues)
    }

    /// Pair layout the model uses in transformers: interleaved for DeepSeek-V3 (`rope_interleave`, default true),
    /// half-split otherwise.
    public var pairLayout: RopePairLayout {
        if let ropeInterleave { return ropeInterleave ? .interleaved : .halfSplit }
        return modelType == "deepseek_v3" ? .interleaved : .halfSplit
    }
}

/// Which transformers generation a written config targets.
public enum HFConfigFormat: String, Sendable, CaseIterable {
    /// `rope_theta` + `rope_scaling` (+ top-level `partial_rotary_factor`).
    case transformers4
    /// `rope_parameters` with `rope_theta` (and `partial_rotary_factor`) inside.
    case transformers5
    /// Both. transformers 5.x prefers `rope_scaling` when it is non-empty, so both carry the same parameters.
    case both
}

extension RopeConfiguration {
    /// The configuration as transformers can load it: `ntk` (which transformers lacks) becomes `default` with
    /// θ replaced by the NTK-aware base `θ·factor^(d/(d−2))` — the same inverse frequencies bit for bit.
    public var exportable: RopeConfiguration {
        guard ropeType == .ntk, let factor else { return self }
        var copy = unscaled
        copy.theta = RoPE.ntkAwareBase(theta: theta, factor: factor, rotaryDim: rotaryDim)
        return copy
    }

    /// The scaling keys of this configuration in transformers' spelling and a stable order
    /// (no `rope_type`/`rope_theta`/`partial_rotary_factor`). Doubles stay doubles, lengths are ints.
    public var scalingMembers: JSONObject {
        var members: [(String, JSONValue)] = []
        func add(_ key: String, _ value: Double?) { if let value { members.append((key, .double(value))) } }
        add("factor", factor)
        if let originalMaxPositionEmbeddings, [.yarn, .llama3, .longrope].contains(ropeType) {
            members.append(("original_max_position_embeddings", .int(originalMaxPositionEmbeddings)))
        }
        switch ropeType {
        case .llama3:
            add("low_freq_factor", lowFreqFactor)
            add("high_freq_factor", highFreqFactor)
        case .yarn:
            add("beta_fast", betaFast)
            add("beta_slow", betaSlow)
            add("mscale", mscale)
            add("mscale_all_dim", mscaleAllDim)
            add("attention_factor", attentionFactor)
            if let truncate { members.append(("truncate", .bool(truncate))) }
        case .longrope:
            add("attention_factor", attentionFactor)
            if let shortFactor { members.append(("short_factor", .array(shortFactor.map { .double($0) }))) }
            if let longFactor { members.append(("long_factor", .array(longFactor.map { .double($0) }))) }
        default:
            break
        }
        return JSONObject(members)
    }

    /// Top-level `config.json` keys to set so that transformers reads this configuration back, in order.
    ///
    /// - `transformers4`: `rope_theta`, `rope_scaling` (`null` for default), `partial_rotary_factor` when ≠ 1,
    ///   and `rope_parameters: null` (a stale one would be read by 5.x when `rope_scaling` is null).
    /// - `transformers5`: `rope_scaling: null` (a stale one would win in 5.x) and
    ///   `rope_parameters` = `{rope_type, rope_theta, [partial_rotary_factor], …scaling keys}`.
    /// - `both`: `rope_theta`, `rope_scaling`, `partial_rotary_factor` when ≠ 1, and `rope_parameters`, consistent.
    ///
    /// Always: `max_position_embeddings` when set. With `topLevelOriginal`, also the top-level
    /// `original_max_position_embeddings` (needed when the source config has one: transformers 5.x lets it
    /// override the dict). `extraRopeKeys` (e.g. a preserved `mrope_section`) are appended to each rope dict.
    public func hfConfigUpdates(format: HFConfigFormat, topLevelOriginal: Bool = false,
                                extraRopeKeys: JSONObject = JSONObject()) -> JSONObject {
        let config = exportable
        var updates: [(String, JSONValue)] = []
        let scaling = config.scalingMembers.entries + extraRopeKeys.entries
        let typeMember: (String, JSONValue) = ("rope_type", .string(config.ropeType.rawValue))
        if format != .transformers5 {
            updates.append(("rope_theta", .double(config.theta)))
            if config.ropeType == .default && extraRopeKeys.isEmpty {
                updates.append(("rope_scaling", .null))
            } else {
                updates.append(("rope_scaling", .object(JSONObject([typeMember] + scaling))))
            }
            if config.partialRotaryFactor != 1 {
                updates.append(("partial_rotary_factor", .double(config.partialRotaryFactor)))
            }
        }
        if format == .transformers5 {
            // A stale `rope_scaling` would win over `rope_parameters` in transformers 5.x.
            updates.append(("rope_scaling", .null))
        }
        if format == .transformers4 {
            // A stale `rope_parameters` would be read by transformers 5.x when `rope_scaling` is null.
            updates.append(("rope_parameters", .null))
        } else {
            var dict: [(String, JSONValue)] = [typeMember, ("rope_theta", .double(config.theta))]
            if config.partialRotaryFactor != 1 {
                dict.append(("partial_rotary_factor", .double(config.partialRotaryFactor)))
            }
            updates.append(("rope_parameters", .object(JSONObject(dict + scaling))))
        }
        if let maxPositionEmbeddings = config.maxPositionEmbeddings {
            updates.append(("max_position_embeddings", .int(maxPositionEmbeddings)))
        }
        if topLevelOriginal, let original = config.originalMaxPositionEmbeddings ?? config.trainedContextLength {
            updates.append(("original_max_position_embeddings", .int(original)))
        }
        return JSONObject(updates)
    }
}

// MARK: - Decoding helpers

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { return nil }
}

extension KeyedDecodingContainer {
    /// An integer that may be written as `4096` or `4096.0` (Python configs sometimes carry floats).
    func decodeWholeNumber(forKey key: Key) throws -> Int? {
        if try !contains(key) || decodeNil(forKey: key) { return nil }
        if let value = try? decode(Int.self, forKey: key) { return value }
        let value = try decode(Double.self, forKey: key)
        guard let whole = Int(exactly: value) else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath + [key],
                                                    debugDescription: "expected an integer, got \(value)"))
        }
        return whole
    }
}
