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
/// One request at a time (an actor: the engine is not thread-safe), on a thread of its own rather than Swift's
/// cooperative pool (a forward pass blocks for seconds; the HTTP server and every other task need the pool);
/// prompts are encoded with `Tokenizer.encodePrompt`, the request's sampling fields become `GenerationParameters`
/// (seed `nil` → 0). A generation stops early when the calling task is cancelled (a client that went away).
public actor EngineBackend: CompletionBackend {
    let lm: LanguageModel
    public nonisolated let model: String
    public nonisolated var name: String { "local:\(model)" }
    public nonisolated let contextLength: Int?
    private nonisolated let executor = DedicatedThreadExecutor(name: "longctx-generate")
    private nonisolated let aside: AsideEncoder
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// `model`: the id reported to clients (e.g. the directory name).
    public init(_ lm: LanguageModel, model: String) {
        self.lm = lm
        self.model = model
        contextLength = lm.model.configuration.contextLength
        aside = AsideEncoder(lm.tokenizer)
    }

    /// Prompt ids. The tokenizer is thread-safe, so this runs outside the engine's thread: a short text where it is
    /// called, a long one (over 64 KiB) on the encoder's own thread, one at a time — so a 10 MB prompt holds up
    /// neither generation nor the short requests.
    public nonisolated func tokenize(_ text: String) async -> [Int] {
        text.utf8.count > 1 << 16 ? await aside.encode(text) : lm.tokenizer.encodePrompt(text)
    }

    public func chatPrompt(_ turns: [ChatTurn]) throws -> String {
        guard lm.tokenizer.hasChatTemplate else { throw EvalError("\(lm.path): the tokenizer has no chat template") }
        return try lm.tokenizer.applyChatTemplate(turns.map { ChatMessage(role: $0.role, content: $0.content) })
    }

    public func complete(_ r: CompletionRequest, onText: @Sendable (String) -> Bool) throws -> CompletionResponse {
        let parameters = GenerationParameters(maxTokens: r.maxTokens, temperature: Float(r.temperature), topK: r.topK,
                                              topP: Float(r.topP), seed: r.seed ?? 0, stopStrings: r.stop)
        do {
            try Task.checkCancellation()
            let out = try lm.generate(promptIds: lm.tokenizer.encodePrompt(r.prompt), parameters: parameters) { !Task.isCancelled && onText($0) }
            return CompletionResponse(text: out.text, promptTokens: out.promptIds.count,
                                      completionTokens: out.generatedIds.count, finishReason: out.finishReason.rawValue)
        } catch {
            throw BackendFailure("generation failed: \(error)", attempts: 1)
        }
    }
}

/// Encodes long texts on a thread of its own, one at a time (see ``EngineBackend/tokenize(_:)``).
actor AsideEncoder {
    let tokenizer: Tokenizer
    private nonisolated let executor = DedicatedThreadExecutor(name: "longctx-encode")
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    init(_ tokenizer: Tokenizer) { self.tokenizer = tokenizer }
    func encode(_ text: String) -> [Int] { tokenizer.encodePrompt(text) }
}

/// A serial executor running its jobs on one dedicated thread, so long blocking work (a forward pass) never holds
/// a thread of Swift's cooperative pool.
public final class DedicatedThreadExecutor: SerialExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    /// Starts the thread; it and this executor live as long as the process (a backend's lifetime in practice).
    public init(name: String) {
        let thread = Thread { self.loop() }
        thread.name = name
        thread.start()
    }

    public func enqueue(_ job: UnownedJob) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedSerialExecutor())
        }
    }
}
