import ArgumentParser
import GGUFImport
import ModelIO
import TensorCore

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a model from another format into a Hugging Face model directory.",
        subcommands: [ImportGGUF.self])
}

struct ImportGGUF: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gguf",
        abstract: "Import a Llama-family GGUF file (llama.cpp, Ollama, LM Studio) as config.json + safetensors + tokenizer.")

    @Argument(help: "The .gguf file.")
    var file: String

    @Option(help: "Output directory (must not exist; written atomically).")
    var out: String

    @Option(help: "Weight dtype of the output: bf16, f16 or f32 (f32 keeps the dequantised values exactly).")
    var dtype: String = "bf16"

    @Flag(help: "Print machine-readable JSON.")
    var json = false

    func run() async throws {
        guard let d = DType(name: dtype), [.bf16, .f16, .f32].contains(d) else {
            throw ValidationError("--dtype must be bf16, f16 or f32, got '\(dtype)'")
        }
        let report = try GGUFImporter.importModel(gguf: file, to: out, dtype: d, progress: Output.progress)
        Output.progressDone()
        if json { try Output.json(report); return }
        print(ImportGGUF.text(report), terminator: "")
    }

    static func text(_ r: GGUFImportReport) -> String {
        let types = r.sourceTypes.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
        return """
        imported \(r.source)
          → \(r.output)
          architecture \(r.architecture) (model_type \(r.modelType)), \(r.tensors) tensors, \(r.parameters) parameters
          source types: \(types)
          weights: \(r.dtype), \(r.bytesWritten) bytes, embeddings \(r.tiedEmbeddings ? "tied" : "untied")
          tokenizer: byte-level BPE, \(r.vocabSize) tokens, pre-tokenizer \(r.preTokenizer)
          took \(String(format: "%.2f", r.seconds)) s

        """
    }
}
