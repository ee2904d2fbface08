import Basics
import Foundation
import ModelIO
import RoPE

/// A stage's RoPE for one base model: the configuration the engine runs and the `config.json` keys that make
/// transformers read the same configuration back (written into the stage's checkpoint).
public struct ResolvedStageRope: Sendable, Equatable {
    public var configuration: RopeConfiguration
    /// `config.json` updates in order (``RopeConfiguration/hfConfigUpdates(format:topLevelOriginal:extraRopeKeys:)``
    /// with both transformers 4.x and 5.x keys, as `longctx rope apply` writes them); `max_position_embeddings` is
    /// the stage's `seq_len` (or more when the model already had more). A `null` value means "remove the key".
    public var configUpdates: JSONObject
    /// One line for logs and the report, e.g. `yarn ×4 (θ 10000)`.
    public var summary: String

    /// `config` with ``configUpdates`` applied (`null` updates of absent keys are skipped, as `rope apply` does).
    public func apply(to config: JSONObject) -> JSONObject {
        var result = config
        for (key, value) in configUpdates.entries {
            if value == .null && result[key] == nil { continue }
            result[key] = value
        }
        return result
    }
}

extension StageSpec {
    /// Resolves this stage's RoPE against the base model's `config.json` (`configPath` names it in errors).
    ///
    /// - `keep`: the model's own RoPE, with `max_position_embeddings` raised to `seq_len`.
    /// - `explicit`: the model's config with `rope_theta`, `rope_scaling` replaced by the stage's keys, read back
    ///   through transformers' rules (``HFRopeConfig/resolve(layerType:)``), so every check of `longctx rope show`
    ///   applies (e.g. `factor` < 1, a llama3 scaling without `low_freq_factor`).
    /// - `plan`: ``RoPE/plan(from:targetLength:method:stages:options:)`` for `seq_len`, from the model's unscaled
    ///   RoPE (fails when `seq_len` does not exceed the trained length, as `longctx rope plan` does).
    /// The written keys are read back and must reproduce the stage's frequencies exactly.
    public func resolveRope(baseConfig: JSONObject, configPath: String) throws -> ResolvedStageRope {
        let label = "stages[\(index)] (\(name))"
        let base = try Self.resolve(baseConfig, location: configPath)
        let configuration: RopeConfiguration
        switch rope {
        case .keep:
            var config = base
            config.maxPositionEmbeddings = Swift.max(base.maxPositionEmbeddings ?? 0, seqLen)
            configuration = config
        case .explicit(let type, let theta, let parameters):
            var edited = baseConfig
            edited["rope_theta"] = .double(theta ?? base.theta)
            if let type, type != .default {
                edited["rope_scaling"] = .object(JSONObject([("rope_type", .string(type.rawValue))] + parameters.entries))
            } else {
                edited["rope_scaling"] = nil
            }
            edited["rope_parameters"] = nil
            edited["max_position_embeddings"] = .int(Swift.max(base.maxPositionEmbeddings ?? 0, seqLen))
            configuration = try Self.resolve(edited, location: "\(label).rope")
        case .plan(let method, let options):
            do {
                configuration = try RoPE.plan(from: base, targetLength: seqLen, method: method, options: options)
                    .final.configuration
            } catch let error as RopeError {
                throw TrainingInputError("\(label).plan", "\(method.rawValue) for seq_len \(seqLen) on \(configPath): \(error)")
            }
        }
        let updates = configuration.hfConfigUpdates(
            format: .both, topLevelOriginal: baseConfig["original_max_position_embeddings"] != nil)
        let resolved = ResolvedStageRope(configuration: configuration, configUpdates: updates,
                                         summary: Self.summary(configuration))
        try Self.checkRoundTrip(resolved, baseConfig: baseConfig, seqLen: seqLen, label: label)
        return resolved
    }

    static func resolve(_ config: JSONObject, location: String) throws -> RopeConfiguration {
        do {
            return try HFRopeConfig.decode(Data(JSONValue.object(config).serialized().utf8)).resolve().configuration
        } catch let error as RopeError {
            throw TrainingInputError(location, "\(error)")
        }
    }

    /// Reads the updated config back as transformers would and insists on the same frequencies at `seqLen`.
    static func checkRoundTrip(_ resolved: ResolvedStageRope, baseConfig: JSONObject, seqLen: Int, label: String) throws {
        let written = try resolve(resolved.apply(to: baseConfig), location: label)
        let expected = try resolved.configuration.frequencies(sequenceLength: seqLen)
        let actual = try written.frequencies(sequenceLength: seqLen)
        guard expected.invFreq == actual.invFreq, expected.attentionFactor == actual.attentionFactor else {
            throw TrainingInputError(label, "internal error: the stage's config.json keys do not reproduce its RoPE frequencies")
        }
    }

    /// `yarn ×4 (θ 10000)`, `θ 1000000`, `llama3 ×8 (θ 500000)`.
    public static func summary(_ configuration: RopeConfiguration) -> String {
        let config = configuration.exportable
        let theta = "θ \(RoPE.formatNumber(config.theta))"
        guard config.ropeType != .default else { return theta }
        let factor = config.factor.map { " ×\(RoPE.formatNumber($0))" } ?? ""
        return "\(config.ropeType.rawValue)\(factor) (\(theta))"
    }
}

extension TrainingStages {
    /// Every stage's RoPE for the base model at `modelDirectory` (reads its `config.json`). Fails on the first stage
    /// whose settings the model cannot take, naming the stages file and the stage.
    public func resolveRopes(modelDirectory: String) throws -> [ResolvedStageRope] {
        let configPath = (modelDirectory as NSString).appendingPathComponent("config.json")
        let config: JSONObject
        do { config = try FileOps.readJSONObject(configPath).0 } catch { throw TrainingInputError(configPath, "\(error)") }
        return try stages.map { stage in
            do { return try stage.resolveRope(baseConfig: config, configPath: configPath) } catch let error as TrainingInputError {
                throw TrainingInputError(path, "\(error)")
            }
        }
    }
}
