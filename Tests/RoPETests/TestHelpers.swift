import Basics
import Foundation
import RoPE

/// Builds `config.json` bytes from a dictionary literal.
func configData(_ object: [String: Any]) -> Data {
    try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
}

/// Decodes and resolves a config, returning every issue (from the resolution or from the thrown error).
func issues(of object: [String: Any], layerType: String? = nil) -> [RopeIssue] {
    issues(ofData: configData(object), layerType: layerType)
}

func issues(ofData data: Data, layerType: String? = nil) -> [RopeIssue] {
    do {
        return try HFRopeConfig.decode(data).resolve(layerType: layerType).issues
    } catch let error as RopeError {
        return error.issues
    } catch {
        return [RopeIssue(.malformedConfig, field: "?", "\(error)")]
    }
}

func resolve(_ object: [String: Any], layerType: String? = nil) throws -> RopeConfiguration {
    try HFRopeConfig.decode(configData(object)).resolve(layerType: layerType).configuration
}

/// Llama-3.1-8B's rope-relevant config keys (transformers 4.x form, rope.md §7).
var llama31Config: [String: Any] {
    [
    "model_type": "llama", "head_dim": 128, "hidden_size": 4096, "num_attention_heads": 32,
    "max_position_embeddings": 131072, "rope_theta": 500000.0,
    "rope_scaling": ["factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"],
    ]
}

/// Applies top-level updates to a config object, the way `rope apply` does (set or replace keys).
func applying(_ updates: JSONObject, to object: [String: Any]) -> [String: Any] {
    var result = object
    for (key, value) in updates.entries { result[key] = foundationValue(value) }
    return result
}

func foundationValue(_ value: JSONValue) -> Any {
    switch value {
    case .null: return NSNull()
    case .bool(let b): return b
    case .number: return value.intValue.map { $0 as Any } ?? value.doubleValue!
    case .string(let s): return s
    case .array(let a): return a.map(foundationValue)
    case .object(let members):
        var dictionary: [String: Any] = [:]
        for (key, member) in members.entries { dictionary[key] = foundationValue(member) }
        return dictionary
    }
}
