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
    /// ``TransformerModel/init(directory:weights:compute:)``.
    public static func load(directory: String, weights: WeightFormat = .stored,
                            compute: ComputePrecision = .f32) throws -> LanguageModel {
        let model = try TransformerModel(directory: directory, weights: weights, compute: compute)
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
    /// still be the start of a stop string) and returns `false` to cancel. (A ``TextStepper`` run to the end.)
    public func generate(promptIds: [Int], parameters: GenerationParameters,
                         onText: (String) throws -> Bool = { _ in true }) throws -> GenerationResult {
        let stepper = try TextStepper(self, promptIds: promptIds, parameters: parameters)
        while !stepper.isFinished { try stepper.step(onText: onText) }
        return stepper.result
    }
}

/// One prompt's text generation advanced a step at a time (a prompt chunk or one token, see ``TokenStepper``),
/// with stop ids, stop strings and streamed text, so a scheduler can interleave several prompts on one model.
/// ``LanguageModel/generate(promptIds:parameters:onText:)`` runs one to the end. Not thread-safe; its steps must
/// not overlap with any other forward call on the same model.
public final class TextStepper: @unchecked Sendable {
    public let lm: LanguageModel
    public private(set) var tokens: TokenStepper
    let stopIds: Set<Int>
    let stopStrings: [String]
    /// Characters held back while they could still be the start of a stop string.
    let holdBack: Int
    private var decoder: StreamingDecoder
    private var text = ""
    /// Characters of `text` already passed to `onText`.
    private var emitted = 0
    private var stopped = false

    /// `prefillChunk`: prompt tokens per step (nil: all in one; see ``TokenStepper/init(model:promptIds:parameters:stopTokenIds:cache:prefillChunk:)``).
    public init(_ lm: LanguageModel, promptIds: [Int], parameters: GenerationParameters, prefillChunk: Int? = nil) throws {
        self.lm = lm
        stopIds = Set(lm.tokenizer.eosTokenIds + parameters.stopTokenIds)
        stopStrings = parameters.stopStrings.filter { !$0.isEmpty }
        holdBack = max(0, (stopStrings.map(\.count).max() ?? 0) - 1)
        decoder = lm.tokenizer.makeStreamingDecoder(skipSpecialTokens: false)
        tokens = try TokenStepper(model: lm.model, promptIds: promptIds, parameters: parameters, stopTokenIds: stopIds,
                                  prefillChunk: prefillChunk)
    }

    public var isFinished: Bool { tokens.isFinished }

    /// One step; `onText` receives text that became final and returns `false` to stop. When this step ends the
    /// generation, the text still held back is passed on too.
    public func step(onText: (String) throws -> Bool) throws {
        try tokens.step(lm.model) { id in try push(id, onText) }
        if tokens.isFinished && !stopped && emitted < text.count {
            let rest = String(text.dropFirst(emitted))
            emitted = text.count
            _ = try onText(rest)
        }
    }

    private func push(_ id: Int, _ onText: (String) throws -> Bool) throws -> Bool {
        if stopIds.contains(id) { return true }
        text += decoder.push(id)
        for stop in stopStrings {
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

    /// The result so far (complete once ``isFinished``).
    public var result: GenerationResult {
        let t = tokens.result
        var ids = t.generatedIds
        if let last = ids.last, stopIds.contains(last) { ids.removeLast() }
        return GenerationResult(promptIds: t.promptIds, generatedIds: t.generatedIds,
                                text: stopped ? text : lm.tokenizer.decode(ids), finishReason: t.finishReason,
                                prefillSeconds: t.prefillSeconds, decodeSeconds: t.decodeSeconds,
                                prefillTokensPerSecond: t.prefillTokensPerSecond,
                                decodeTokensPerSecond: t.decodeTokensPerSecond)
    }
}
