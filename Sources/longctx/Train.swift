import ArgumentParser
import Foundation
import ModelIO
import Training

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Progressive continued pretraining: the stages of a YAML file (lengths, RoPE, budgets, schedules), packed documents with document masks, checkpoints per stage, exact resume.")

    @Option(help: "Model directory (or a known short name such as smollm2-135m-instruct).") var model: String
    @Option(help: "Training data: a .txt/.md file (one document), a .jsonl file (a `text` field per line), a directory of them, or a corpus from `longctx data pack`; repeat for several domains (PATH or PATH:WEIGHT).")
    var data: [String] = []
    @Option(help: "Stages file (YAML); see eval/stages/.") var stages: String
    @Option(help: "Output directory: stage-K/ and final/ model directories, train.jsonl, state.lcts, report.html.") var out: String
    @Flag(help: "Continue the run in --out from its last training state (bit-identical to an uninterrupted run).") var resume = false
    @Option(help: "Parallel workers (a resumed run must use the same number).") var workers = max(1, ProcessInfo.processInfo.activeProcessorCount)

    func run() throws {
        let request = TrainRequest(model: try ModelResolver.resolve(model), data: try data.map(DomainSpec.init(parsing:)),
                                   stagesPath: stages, out: out, resume: resume, workers: workers)
        let trainer = try Trainer(request)
        try trainer.run(progress: TrainingProgress(stageCount: trainer.stages.stages.count))
        print("wrote \(trainer.stageDirectory(trainer.stages.stages.count - 1)) and \((out as NSString).appendingPathComponent("final")); log \((out as NSString).appendingPathComponent("train.jsonl"))")
    }
}
