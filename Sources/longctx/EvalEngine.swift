import Evaluation
import Foundation
import Tokenizers
import Transformer

/// Token counting with the target model's tokenizer, exactly as the engine is fed (`Tokenizer.encodePrompt`).
struct TokenizerCounter: TokenCounting {
    let tokenizer: Tokenizer
    func tokenCount(_ text: String) -> Int { tokenizer.encodePrompt(text).count }
}

/// The built-in engine behind `longctx serve` and `--model` evaluation.
final class EngineGenerator: TextGenerating {
    let lm: LanguageModel
    let modelName: String

    init(_ lm: LanguageModel, name: String) {
        self.lm = lm
        self.modelName = name
    }

    func encode(_ text: String) -> [Int] { lm.tokenizer.encodePrompt(text) }

    func chatPrompt(_ messages: [ChatTurn]) throws -> String {
        guard lm.tokenizer.hasChatTemplate else { throw EvalError("\(lm.path): the tokenizer has no chat template") }
        return try lm.tokenizer.applyChatTemplate(messages.map { ChatMessage(role: $0.role, content: $0.content) })
    }

    func generate(promptIds: [Int], parameters p: TextGenerationParameters,
                  onToken: (Int, String) -> Bool) throws -> TextGenerationOutput {
        let params = GenerationParameters(maxTokens: p.maxTokens, temperature: Float(p.temperature), topK: p.topK,
                                          topP: Float(p.topP), seed: p.seed, stopStrings: p.stopStrings)
        let r = try lm.generate(promptIds: promptIds, parameters: params) { piece in onToken(-1, piece) }
        return TextGenerationOutput(promptIds: r.promptIds, generatedIds: r.generatedIds, text: r.text,
                                    finishReason: r.finishReason.rawValue, prefillSeconds: r.prefillSeconds,
                                    decodeSeconds: r.decodeSeconds)
    }
}
