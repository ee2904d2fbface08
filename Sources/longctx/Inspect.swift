import ArgumentParser
import ModelIO

struct Inspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model directory: architecture, parameters by dtype, tensors, RoPE and context.")

    @Argument(help: "A Hugging Face model directory (config.json + safetensors).")
    var model: String

    @Flag(help: "Print machine-readable JSON.")
    var json = false

    @Flag(name: .customLong("no-tensors"), help: "Leave the tensor list out of the text report.")
    var noTensors = false

    func run() async throws {
        let summary = try ModelSummary(ModelDirectory(path: ModelResolver.resolve(model)))
        if json { try Output.json(summary) } else { print(summary.text(showTensors: !noTensors), terminator: "") }
    }
}
