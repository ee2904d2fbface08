import Evaluation
import Foundation
import Tokenizers
import Transformer

/// Token counting with the target model's tokenizer, exactly as the engine is fed (`Tokenizer.encodePrompt`).
public struct TokenizerCounter: TokenCounting {
    public let tokenizer: Tokenizer
    public init(tokenizer: Tokenizer) { self.tokenizer = tokenizer }
    public func tokenCount(_ text: String) -> Int { tokenizer.encodePrompt(text).count }
}

/// The built-in engine as a completion backend, behind `longctx serve` and `longctx eval --model`.
///
/// One request at a time (an actor: the engine is not thread-safe); prompts are encoded with
/// `Tokenizer.encodePrompt`, the request's sampling fields become `GenerationParameters` (seed `nil` → 0).
public actor EngineBackend: CompletionBackend {
    let lm: LanguageModel
    public nonisolated let model: String
    public nonisolated var name: String { "local:\(model)" }

    /// `model`: the id reported to clients (e.g. the directory name).
    public init(_ lm: LanguageModel, model: String) {
        self.lm = lm
        self.model = model
    }

    public func tokenize(_ text: String) -> [Int] { lm.tokenizer.encodePrompt(text) }

    public func chatPrompt(_ turns: [ChatTurn]) throws -> String {
        guard lm.tokenizer.hasChatTemplate else { throw EvalError("\(lm.path): the tokenizer has no chat template") }
        return try lm.tokenizer.applyChatTemplate(turns.map { ChatMessage(role: $0.role, content: $0.content) })
    }

    public func complete(_ r: CompletionRequest, onText: @Sendable (String) -> Bool) throws -> CompletionResponse {
        let parameters = GenerationParameters(maxTokens: r.maxTokens, temperature: Float(r.temperature), topK: r.topK,
                                              topP: Float(r.topP), seed: r.seed ?? 0, stopStrings: r.stop)
        do {
            let out = try lm.generate(promptIds: tokenize(r.prompt), parameters: parameters) { onText($0) }
            return CompletionResponse(text: out.text, promptTokens: out.promptIds.count,
                                      completionTokens: out.generatedIds.count, finishReason: out.finishReason.rawValue)
        } catch {
            throw BackendFailure("generation failed: \(error)", attempts: 1)
        }
    }
}
