import ArgumentParser
import Demo
import Foundation
import GGUFImport
import ModelIO
import Training

/// `longctx demo`: the whole loop on two CPU cores (see `Demo.DemoRun`).
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "The toolkit's whole loop in minutes: a toy model (trained by longctx train) past its window with RoPE plans, progressive training, LoRA extract/merge and retrieval grids, and SmolLM2 beyond 8K.",
        discussion: "Writes OUT/summary.json and OUT/report.html (plus the models, the training run and the adapter). --from-scratch first trains the toy base with the toolkit's trainer into OUT/base (the shipped demo/base was made by `longctx demo --from-scratch --base-only --out DIR`).")

    @Option(help: "Output directory.") var out = "longctx-demo"
    @Option(help: "Seed of every prompt, corpus and training run.") var seed: UInt64 = 42
    @Option(help: "The toy base model directory.") var base = "demo/base"
    @Flag(help: "Train the toy base from scratch into OUT/base first (about 1500 steps).") var fromScratch = false
    @Flag(name: .customLong("base-only"), help: "With --from-scratch: stop after training the base.") var baseOnly = false
    @Flag(help: "The complete grids (more prompts per length; act one from 4K to 16K).") var full = false
    @Flag(name: .customLong("no-act-one"), help: "Skip act one (SmolLM2; needs `longctx models get`, fetched here when missing).") var noActOne = false
    @Option(help: "Training workers (fixed for reproducible results).") var workers = 2
    @Option(name: .customLong("base-steps"), help: "--from-scratch: training steps of the base.") var baseSteps: Int?
    @Option(name: .customLong("extension-steps"), help: "Steps of each progressive stage: one count for every stage, or one per stage (e.g. 30,30,100).") var extensionSteps: String?
    @Option(name: .customLong("extension-rope"), help: "RoPE of the progressive stages: keep (the base's own), theta, yarn or linear (`rope plan` for each stage's length).") var extensionRope: StageRopeChoice?
    @Option(name: .customLong("grid-prompts"), help: "Act two's prompts per depth and length.") var gridPrompts: Int?

    func run() async throws {
        var request = DemoRequest(base: DataFile.locate(base), out: out)
        request.seed = seed
        request.workers = workers
        if let baseSteps { request.recipe.baseSteps = baseSteps }
        if full { request.recipe.gridPerDepth = 8; request.actOne = .full }
        if let extensionSteps { request.recipe.extensionSteps = try Self.stepCounts(extensionSteps) }
        if let extensionRope { request.recipe.extensionRope = extensionRope }
        if let gridPrompts { request.recipe.gridPerDepth = gridPrompts }
        if fromScratch {
            request.base = (out as NSString).appendingPathComponent("base")
            try ToyBase.train(request.recipe, seed: seed, work: (out as NSString).appendingPathComponent("base-training"),
                              out: request.base, workers: workers, progress: TrainingProgress(stageCount: 1))
            if baseOnly { print("wrote \(request.base)"); return }
        }
        if !noActOne { request.actOneModel = try ModelStore.get(request.actOne.modelName, progress: Output.progress).directory }
        Output.progressDone()
        let outcome = try await DemoRun.run(request) { FileHandle.standardError.write(Data("\($0)\n".utf8)) }
        print(DemoSummaryText.lines(outcome), terminator: "")
    }
}

extension DemoCommand {
    /// `40` or `30,30,100`: positive step counts, comma-separated.
    static func stepCounts(_ text: String) throws -> [Int] {
        let counts = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !counts.isEmpty, counts.allSatisfy({ ($0 ?? 0) > 0 }) else {
            throw ValidationError("--extension-steps: expected positive step counts separated by commas (e.g. 40 or 30,30,100), got '\(text)'")
        }
        return counts.map { $0! }
    }
}

extension StageRopeChoice: ExpressibleByArgument {}
