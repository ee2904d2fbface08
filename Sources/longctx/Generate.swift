import ArgumentParser
import Foundation
import ModelIO
import Transformer

extension WeightFormat: ExpressibleByArgument {}
extension ComputePrecision: ExpressibleByArgument {}

struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text with the built-in engine; streams tokens and reports prefill and decode speed.")

    @Argument(help: "Model directory (config.json, safetensors, tokenizer.json).") var model: String
    @Option(help: "Prompt text.") var prompt: String?
    @Option(name: .customLong("prompt-file"), help: "Read the prompt from a file.") var promptFile: String?
    @Flag(help: "Format the prompt with the tokenizer's chat template (as a user message).") var chat = false
    @Option(help: "System message (with --chat).") var system: String?
    @Option(name: .customLong("max-tokens"), help: "Most tokens to generate.") var maxTokens = 128
    @Option(help: "Sampling temperature; 0 is greedy.") var temperature: Float = 0
    @Option(name: .customLong("top-k"), help: "Keep the k most likely tokens (0: all).") var topK = 0
    @Option(name: .customLong("top-p"), help: "Nucleus sampling mass (1: off).") var topP: Float = 1
    @Option(help: "Sampling seed.") var seed: UInt64 = 0
    @Option(name: .customLong("stop"), help: "Stop string (repeatable).") var stops: [String] = []
    @Option(help: "Weight matrices: stored (as in the checkpoint, f32 arithmetic; the reference), q8_0, q4_0, q4_1 or q4_k (quantized at load, or a k-quant GGUF import's own blocks; decoding runs on integer dot products).") var weights: WeightFormat = .stored
    @Option(help: "Matrix-product arithmetic: f32 (the reference) or bf16 (bf16 weights × bf16-rounded activations, f32 accumulation, on AMX tiles for prefill where the CPU has amx_bf16 and vdpbf16ps where it has avx512_bf16; f32 elsewhere).") var compute: ComputePrecision = .f32
    @Flag(help: "Print one JSON object (prompt_ids, generated_ids, text, timings) instead of streaming.") var json = false

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be >= 0, got \(maxTokens)") }
        guard temperature.isFinite, temperature >= 0 else { throw ValidationError("--temperature must be a finite number >= 0, got \(temperature)") }
        guard topK >= 0 else { throw ValidationError("--top-k must be >= 0, got \(topK)") }
        guard topP.isFinite, topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1], got \(topP)") }
    }

    func run() async throws {
        let text: String
        if let promptFile {
            text = try String(contentsOfFile: promptFile, encoding: .utf8)
        } else if let prompt {
            text = prompt
        } else {
            throw ValidationError("give --prompt or --prompt-file")
        }
        let lm = try LanguageModel.load(directory: try ModelResolver.resolve(model), weights: weights, compute: compute)
        let ids = try lm.promptIds(text, chat: chat, system: system)
        try lm.checkFits(promptTokens: ids.count, maxTokens: maxTokens, option: "--max-tokens")
        let parameters = GenerationParameters(maxTokens: maxTokens, temperature: temperature, topK: topK, topP: topP,
                                              seed: seed, stopStrings: stops)
        let result = try lm.generate(promptIds: ids, parameters: parameters) { piece in
            if !json { FileHandle.standardOutput.write(Data(piece.utf8)) }
            return true
        }
        if json { try Output.json(result); return }
        print("")
        let stats = String(format: "prefill %d tokens in %.3f s (%.1f tok/s), decode %d tokens in %.3f s (%.1f tok/s), %@",
                           result.promptIds.count, result.prefillSeconds, result.prefillTokensPerSecond,
                           result.generatedIds.count, result.decodeSeconds, result.decodeTokensPerSecond,
                           result.finishReason.rawValue)
        fflush(nil)  // the streamed text reaches the terminal before the statistics
        FileHandle.standardError.write(Data((stats + "\n").utf8))
    }
}

