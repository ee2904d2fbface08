import Foundation
import ModelIO
import Tokenizers

/// Text-level result of ``LanguageModel/generate(promptIds:parameters:onText:)``.
public struct GenerationResult: Sendable, Codable {
    public var promptIds: [Int]
    public var generatedIds: [Int]
    /// The generated text, without the stop token and cut before a matched stop string.
    public var text: String
    public var finishReason: FinishReason
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    public var prefillTokensPerSecond: Double
    public var decodeTokensPerSecond: Double

    enum CodingKeys: String, CodingKey {
        case promptIds = "prompt_ids", generatedIds = "generated_ids", text
        case finishReason = "finish_reason", prefillSeconds = "prefill_seconds", decodeSeconds = "decode_seconds"
        case prefillTokensPerSecond = "prefill_tokens_per_second", decodeTokensPerSecond = "decode_tokens_per_second"
    }
}

/// A model directory's engine and tokenizer together: prompt formatting, generation with stop strings and
/// streamed text. Not thread-safe: serialise calls per instance.
public final class LanguageModel: @unchecked Sendable {
    public let model: TransformerModel
    public let tokenizer: Tokenizer
    public var path: String { model.directory.path }

    /// Loads `config.json`, the safetensors weights and `tokenizer.json` (+ `tokenizer_config.json`,
    /// `generation_config.json`) from `directory`, and checks that the tokenizer fits the model; `weights` as in
    /// ``TransformerModel/init(directory:weights:)``.
    public static func load(directory: String, weights: WeightFormat = .stored) throws -> LanguageModel {
        let model = try TransformerModel(directory: directory, weights: weights)
        let tokenizer = try Tokenizer.load(directory: directory)
        return try LanguageModel(model: model, tokenizer: tokenizer)
    }

    public init(model: TransformerModel, tokenizer: Tokenizer) throws {
        let vocab = model.configuration.vocabSize
        if tokenizer.vocabularySize > vocab {
            throw EngineError("\(model.directory.path): tokenizer.json has \(tokenizer.vocabularySize) tokens but the model's vocab_size is \(vocab): tokenizer and model do not belong together")
        }
        self.model = model
        self.tokenizer = tokenizer
    }

    /// Refuses a prompt of `promptTokens` that with `maxTokens` to generate does not fit the model's context
    /// (`max_position_embeddings`), naming `option` and the limit.
    public func checkFits(promptTokens: Int, maxTokens: Int, option: String) throws {
        guard let context = model.configuration.contextLength else { return }
        guard promptTokens < context else {
            throw EngineError("the prompt has \(promptTokens) tokens but the model's context (max_position_embeddings) is \(context)")
        }
        guard maxTokens <= context - promptTokens else {
            throw EngineError("\(option) \(maxTokens): the prompt (\(promptTokens) tokens) plus \(option) exceeds the model's context of \(context) tokens; use at most \(context - promptTokens)")
        }
    }

    /// Token ids for a prompt: through the chat template (as `apply_chat_template(..., add_generation_prompt=True)`
    /// then encoding without extra special tokens) when `chat`, else plain encoding with the tokenizer's special tokens.
    public func promptIds(_ prompt: String, chat: Bool, system: String? = nil) throws -> [Int] {
        guard chat else { return tokenizer.encode(prompt) }
        var messages: [ChatMessage] = []
        if let system { messages.append(ChatMessage(role: "system", content: system)) }
        messages.append(ChatMessage(role: "user", content: prompt))
        return tokenizer.encode(try tokenizer.applyChatTemplate(messages, addGenerationPrompt: true), addSpecialTokens: false)
    }

    /// Generates after `promptIds`, stopping at the tokenizer's end-of-sequence ids, `parameters.stopTokenIds`,
    /// a stop string, or `maxTokens`. `onText` receives the text as it becomes final (held back while it could
    /// still be the start of a stop string) and returns `false` to cancel.
    public func generate(promptIds: [Int], parameters: GenerationParameters,
                         onText: (String) throws -> Bool = { _ in true }) throws -> GenerationResult {
        let stopIds = Set(tokenizer.eosTokenIds + parameters.stopTokenIds)
        var decoder = tokenizer.makeStreamingDecoder(skipSpecialTokens: false)
        var text = ""
        var emitted = 0  // characters of `text` already passed to onText
        var stopped = false
        let holdBack = max(0, (parameters.stopStrings.map(\.count).max() ?? 0) - 1)
        let tokens = try model.generate(promptIds: promptIds, parameters: parameters, stopTokenIds: stopIds) { id in
            if stopIds.contains(id) { return true }
            text += decoder.push(id)
            for stop in parameters.stopStrings where !stop.isEmpty {
                if let r = text.range(of: stop) {
                    text = String(text[..<r.lowerBound])
                    stopped = true
                }
            }
            let ready = stopped ? text.count : max(emitted, text.count - holdBack)
            if ready > emitted {
                let piece = String(text.dropFirst(emitted).prefix(ready - emitted))
                emitted = ready
                if try !onText(piece) { return false }
            }
            return !stopped
        }
        if !stopped && emitted < text.count { _ = try onText(String(text.dropFirst(emitted))) }
        var ids = tokens.generatedIds
        if let last = ids.last, stopIds.contains(last) { ids.removeLast() }
        return GenerationResult(promptIds: tokens.promptIds, generatedIds: tokens.generatedIds,
                                text: stopped ? text : tokenizer.decode(ids), finishReason: tokens.finishReason,
                                prefillSeconds: tokens.prefillSeconds, decodeSeconds: tokens.decodeSeconds,
                                prefillTokensPerSecond: tokens.prefillTokensPerSecond,
                                decodeTokensPerSecond: tokens.decodeTokensPerSecond)
    }
}
