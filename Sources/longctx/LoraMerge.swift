import ArgumentParser
import Foundation
import LoRA

struct LoraMerge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge LoRA adapters into a model: W += w·scale·B·A in f32, rounded once to the checkpoint dtype.",
        discussion: """
            Every adapter is checked against the model (names, shapes, vocabulary) before anything is written. \
            modules_to_save tensors replace the model's; shards and index are rewritten; config and tokenizer \
            files are copied.
            """)

    @Option(help: "Model directory to merge into.") var base: String
    @Option(help: "Adapter directory (repeatable).") var adapter: [String]
    @Option(help: "Weight per adapter, in --adapter order (default 1 each).") var weight: [Double] = []
    @Option(help: "Output model directory (must not exist).") var out: String
    @Flag(help: "Print the report as JSON.") var json = false

    func run() async throws {
        guard weight.isEmpty || weight.count == adapter.count else {
            throw ValidationError("give one --weight per --adapter (\(adapter.count)) or none")
        }
        let report = try LoRAMerger.merge(model: base, adapters: adapter, weights: weight.isEmpty ? nil : weight, out: out) { Output.progress($0) }
        Output.progressDone()
        if json { try Output.json(report); return }
        print("wrote \(out): \(report.mergedTensors) tensors LoRA-merged, \(report.replacedTensors) replaced (modules_to_save), \(report.copiedTensors) copied, \(report.shards) shard(s), \(String(format: "%.1f", report.seconds)) s")
    }
}
