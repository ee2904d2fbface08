import Basics
import Distributed
import EvalBackends
import Evaluation
import Foundation
import LoRA
import ModelIO
import RoPE
import Training

/// What `longctx demo` runs.
public struct DemoRequest: Sendable {
    /// The toy base (a model directory; the repository ships `demo/base`).
    public var base: String
    public var out: String
    public var seed: UInt64 = 42
    public var recipe = ToyRecipe()
    /// Act one's model directory (SmolLM2-135M-Instruct); `nil` skips act one.
    public var actOneModel: String?
    public var actOne = ActOneGrid.quick
    /// Training workers (fixed, so that a run is reproducible across machines).
    public var workers = 2

    public init(base: String, out: String) {
        self.base = base
        self.out = out
    }
}

/// Everything a demo run measured (the contents of `summary.json` and `report.html`).
public struct DemoOutcome: Sendable {
    public var request: DemoRequest
    public var phases: [PhaseResult] = []
    public var extensionLog: [TrainingLogRecord] = []
    public var extensionStages: [String] = []
    public var lora: ExtractionReport?
    public var plans: [(key: String, plan: RopePlan)] = []
    public var actOne: ActOneResult?
    /// Seconds per part, for the report only (never in `summary.json`, which must not change between runs).
    public var timings: [(String, Double)] = []

    public init(request: DemoRequest) { self.request = request }
}

/// `longctx demo`: act two (the toy base: grids, training-free plans, progressive training, LoRA round trip) and
/// act one (SmolLM2 inside and beyond its window), then `summary.json` and `report.html` in `out`.
public enum DemoRun {
    public static func run(_ request: DemoRequest, log: @escaping @Sendable (String) -> Void) async throws -> DemoOutcome {
        let r = request.recipe
        var outcome = DemoOutcome(request: request)
        try FileOps.makeDirectory(request.out)
        func path(_ name: String) -> String { (request.out as NSString).appendingPathComponent(name) }
        var timings: [(String, Double)] = []
        var clock = Date()
        func lap(_ name: String) {
            timings.append((name, Date().timeIntervalSince(clock)))
            clock = Date()
        }
        let lengths = r.gridLengths
        func grid(_ key: String, _ title: String, _ model: String) async throws -> PhaseResult {
            let phase = try await DemoSteps.grid(key: key, title: title, modelDirectory: model, lengths: lengths,
                                                 depths: r.gridDepths, perDepth: r.gridPerDepth, keys: r.keys, layout: r.layout,
                                                 seed: request.seed, log: log)
            lap("grid: \(key)")
            return phase
        }

        log("act two (a): the base, trained at \(r.trainedLength) tokens, from \(r.trainedLength) to \(formatLength(r.finalLength))")
        outcome.phases.append(try await grid("base", "Base (trained at \(r.trainedLength))", request.base))

        log("act two (b): training-free RoPE plans for \(formatLength(r.finalLength)) (×\(r.finalLength / r.trainedLength))")
        for (key, method, title) in [("yarn_untrained", RopePlanMethod.yarn, "YaRN"), ("pi_untrained", .linear, "Linear PI"),
                                     ("theta_untrained", .theta, "θ plan")] {
            let model = path("models/\(key)")
            let plan = try DemoSteps.applyPlan(base: request.base, method: method, target: r.finalLength, out: model)
            outcome.plans.append((key, plan))
            outcome.phases.append(try await grid(key, "\(title), no training", model))
        }

        log("act two (c): progressive training \(r.extensionLengths.map(formatLength).joined(separator: " → ")) (stage RoPE: \(r.extensionRope.rawValue))"
            + (r.ringWorkers > 1 ? ", ring attention over \(r.ringWorkers) workers" : ", single process"))
        let training = try trainExtension(request, work: path("extension"))
        outcome.extensionStages = training.stages
        outcome.extensionLog = training.log
        lap("progressive training")
        log("act two (d): the extended model")
        outcome.phases.append(try await grid("extended", "Extended (trained to \(formatLength(r.finalLength)))", training.model))

        log("act two (e): LoRA extract (extended − base, rank \(r.loraRank)) into adapters/, merge onto the base")
        let merged = path("models/merged")
        outcome.lora = try DemoSteps.loraRoundTrip(base: request.base, tuned: training.model, rank: r.loraRank,
                                                   adapter: path("adapters/extended-minus-base"), merged: merged)
        lap("lora extract + merge")
        outcome.phases.append(try await grid("merged", "Base + extracted LoRA, merged", merged))

        if let model = request.actOneModel {
            log("act one: \(request.actOne.modelName) at \(request.actOne.lengths.map(formatLength).joined(separator: ", ")), as is and with a YaRN plan")
            outcome.actOne = try await ActOne.run(model: model, grid: request.actOne, work: path("models"),
                                                  seed: request.seed, log: log)
            lap("act one")
        }
        outcome.timings = timings
        try DemoReport.write(outcome, to: request.out)
        return outcome
    }

    /// Act two (c): the supervised passkey corpus up to the final length and the progressive stages, trained from the
    /// base; returns the final model directory.
    static func trainExtension(_ request: DemoRequest, work: String) throws -> (model: String, stages: [String], log: [TrainingLogRecord]) {
        let r = request.recipe
        FileOps.remove(work)
        try FileOps.makeDirectory(work)
        let corpus = (work as NSString).appendingPathComponent("passkey-\(r.finalLength).jsonl")
        try ToyBase.writeCorpus(modelDirectory: request.base, keys: r.keys, layout: r.layout, seed: request.seed &+ 1,
                                count: r.extensionRecords, maxTokens: r.finalLength, to: corpus)
        let stages = (work as NSString).appendingPathComponent("stages.yaml")
        try FileOps.writeAtomically(r.extensionStagesYAML(seed: request.seed), to: stages)
        let run = (work as NSString).appendingPathComponent("run")
        let parsed = try TrainingStages.load(path: stages)
        let stageLines = try zip(parsed.stages, parsed.resolveRopes(modelDirectory: request.base)).map { stage, rope in
            "\(stage.name): \(rope.summary), \(stage.steps) steps" + (stage.ring.map { ", ring attention over \($0) workers" } ?? "")
        }
        let progress = TrainingProgress(stageCount: parsed.stages.count)
        let records: [TrainingLogRecord]
        if r.ringWorkers > 1 {
            // Each of the ring's workers runs its own trainer with an equal share of the threads.
            let train = TrainRequest(model: request.base, data: [DomainSpec(path: corpus)], stagesPath: stages, out: run,
                                     workers: max(1, request.workers / r.ringWorkers))
            records = try RingTraining.train(train, ring: r.ringWorkers, progress: progress, check: nil)
        } else {
            let train = TrainRequest(model: request.base, data: [DomainSpec(path: corpus)], stagesPath: stages, out: run,
                                     workers: request.workers)
            records = try Trainer(train).run(progress: progress)
        }
        return ((run as NSString).appendingPathComponent("final"), stageLines, records)
    }
}
