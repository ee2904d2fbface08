import Basics
import EvalBackends
import Evaluation
import Foundation
import LoRA
import ModelIO
import RoPE
import Training

/// One evaluated model of the demo: its name in `summary.json`, a title, the RoPE it ran with and every scored
/// prompt of its grid.
public struct PhaseResult: Sendable {
    public var key: String
    public var title: String
    public var modelDirectory: String
    public var rope: String
    public var lengths: [Int]
    public var results: [SampleResult]

    public init(key: String, title: String, modelDirectory: String, rope: String, lengths: [Int], results: [SampleResult]) {
        self.key = key
        self.title = title
        self.modelDirectory = modelDirectory
        self.rope = rope
        self.lengths = lengths
        self.results = results
    }

    /// Mean score per length, in the grid's order.
    public var accuracy: [(length: Int, value: Double)] {
        RetrievalCheck.rows(results, lengths: lengths).map { ($0.length, $0.accuracy) }
    }
}

/// The building blocks of the acts: a training-free RoPE plan written as a model directory, a retrieval grid, the
/// LoRA round trip.
public enum DemoSteps {
    /// Writes a copy of `base` (weights linked) whose config carries `rope plan`'s `method` for `target` tokens
    /// (from the base's unscaled RoPE and trained length, as `longctx rope apply` writes it). Returns the plan.
    @discardableResult
    public static func applyPlan(base: String, method: RopePlanMethod, target: Int, out: String) throws -> RopePlan {
        let directory = try ModelDirectory(path: base)
        let config = directory.configJSON
        let source = try HFRopeConfig.decode(Data(JSONValue.object(config).serialized().utf8)).resolve().configuration
        let plan = try RoPE.plan(from: source, targetLength: target, method: method)
        var updated = config
        let updates = plan.final.configuration.hfConfigUpdates(
            format: .both, topLevelOriginal: config["original_max_position_embeddings"] != nil)
        for (key, value) in updates.entries {
            if value == .null && updated[key] == nil { continue }
            updated[key] = value
        }
        FileOps.remove(out)
        try directory.writeCopy(to: out, config: updated, linkWeights: true)
        return plan
    }

    /// One line for a model's RoPE, e.g. `yarn ×8 (θ 10000)`.
    public static func ropeSummary(_ modelDirectory: String) throws -> String {
        let config = try ModelDirectory(path: modelDirectory).configJSON
        return StageSpec.summary(try HFRopeConfig.decode(Data(JSONValue.object(config).serialized().utf8)).resolve().configuration)
    }

    /// The passkey grid of `modelDirectory`: per length `depths` depths × `perDepth` prompts, keys and layout as given.
    public static func grid(key: String, title: String, modelDirectory: String, lengths: [Int], depths: Int,
                            perDepth: Int, keys: Passkey.Keys, layout: Passkey.Layout, seed: UInt64,
                            log: @escaping @Sendable (String) -> Void) async throws -> PhaseResult {
        let started = Date()
        let results = try await RetrievalCheck.results(modelDirectory: modelDirectory, lengths: lengths, samples: depths,
                                                       perDepth: perDepth, seed: seed, keys: keys, layout: layout)
        let phase = PhaseResult(key: key, title: title, modelDirectory: modelDirectory,
                                rope: try ropeSummary(modelDirectory), lengths: lengths, results: results)
        let cells = phase.accuracy.map { "\(formatLength($0.length)) \(Int(($0.value * 100).rounded())) %" }
        log(String(format: "%@: %@  (%.0f s)", key, cells.joined(separator: ", "), Date().timeIntervalSince(started)))
        return phase
    }

    /// `lora extract` of `tuned − base` (rank `rank`, embeddings and norms saved whole) into `adapter`, then
    /// `lora merge` of it onto `base` into `merged`, whose config is then `tuned`'s (the RoPE the adapter was trained
    /// with). Returns the extraction report.
    public static func loraRoundTrip(base: String, tuned: String, rank: Int, adapter: String,
                                     merged: String) throws -> ExtractionReport {
        FileOps.remove(adapter)
        FileOps.remove(merged)
        var options = ExtractionOptions()
        options.policy.maxRank = rank
        options.exact = true
        let report = try LoRAExtractor.extract(base: base, tuned: tuned, out: adapter, options: options)
        try LoRAMerger.merge(model: base, adapters: [adapter], out: merged)
        let tunedConfig = try FileOps.read((tuned as NSString).appendingPathComponent("config.json"))
        try FileOps.writeAtomically(String(decoding: tunedConfig, as: UTF8.self),
                                    to: (merged as NSString).appendingPathComponent("config.json"))
        return report
    }
}
