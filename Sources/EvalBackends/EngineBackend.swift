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
/// Generation runs on a thread of its own (``EngineScheduler``), never on Swift's cooperative pool (a forward pass
/// blocks; the HTTP server and every other task need the pool), and interleaves up to `maxActive` requests a step
/// at a time — a prompt chunk or one token each in turn — so a long request does not hold up short ones. Prompts
/// are encoded with `Tokenizer.encodePrompt` outside that thread; the request's sampling fields become
/// `GenerationParameters` (seed `nil` → 0). A generation stops at its next step when the calling task is
/// cancelled (a client that went away) and returns what it has.
public final class EngineBackend: CompletionBackend, @unchecked Sendable {
    let lm: LanguageModel
    public let model: String
    public var name: String { "local:\(model)" }
    public let contextLength: Int?
    private let aside: AsideEncoder
    let scheduler: EngineScheduler

    /// `model`: the id reported to clients (e.g. the directory name). `maxActive`: generations interleaved at once
    /// (each holds a KV cache for its prompt + max tokens; more wait in arrival order); `prefillChunk`: prompt tokens
    /// per step. Models whose rope frequencies change per forward call (dynamic NTK, longrope) run one generation at
    /// a time with the prompt in one call, as transformers computes them.
    public init(_ lm: LanguageModel, model: String, maxActive: Int = 8, prefillChunk: Int = 128) {
        self.lm = lm
        self.model = model
        contextLength = lm.model.configuration.contextLength
        aside = AsideEncoder(lm.tokenizer)
        let exact = lm.model.chunkedPrefillIsExact
        scheduler = EngineScheduler(lm, maxActive: exact ? maxActive : 1, prefillChunk: exact ? prefillChunk : nil)
    }

    /// Prompt ids. The tokenizer is thread-safe, so this runs outside the engine's thread: a short text where it is
    /// called, a long one (over 64 KiB) on the encoder's own thread, one at a time — so a 10 MB prompt holds up
    /// neither generation nor the short requests.
    public func tokenize(_ text: String) async -> [Int] {
        text.utf8.count > 1 << 16 ? await aside.encode(text) : lm.tokenizer.encodePrompt(text)
    }

    public func chatPrompt(_ turns: [ChatTurn]) throws -> String {
        guard lm.tokenizer.hasChatTemplate else { throw EvalError("\(lm.path): the tokenizer has no chat template") }
        return try lm.tokenizer.applyChatTemplate(turns.map { ChatMessage(role: $0.role, content: $0.content) })
    }

    public func complete(_ r: CompletionRequest, onText: @Sendable (String) -> Bool) async throws -> CompletionResponse {
        let parameters = GenerationParameters(maxTokens: r.maxTokens, temperature: Float(r.temperature), topK: r.topK,
                                              topP: Float(r.topP), seed: r.seed ?? 0, stopStrings: r.stop)
        do {
            let ids = await tokenize(r.prompt)
            try Task.checkCancellation()
            let out = try await withoutActuallyEscaping(onText) { onText in
                try await scheduler.generate(promptIds: ids, parameters: parameters, onText: onText)
            }
            return CompletionResponse(text: out.text, promptTokens: out.promptIds.count,
                                      completionTokens: out.generatedIds.count, finishReason: out.finishReason.rawValue)
        } catch {
            throw BackendFailure("generation failed: \(error)", attempts: 1)
        }
    }
}

/// Runs generations on one dedicated thread, interleaving up to `maxActive` of them round-robin, one step each per
/// round (a prompt chunk of `prefillChunk` tokens, or one token: the simplest form of continuous batching, without
/// batched matrix products); further requests wait in arrival order. A generation's KV cache exists while it is
/// active. The model sees one forward call at a time, always from this thread.
final class EngineScheduler: @unchecked Sendable {
    /// One request; its fields other than `cancelled` belong to the scheduler's thread once submitted.
    final class Job: @unchecked Sendable {
        let promptIds: [Int]
        let parameters: GenerationParameters
        var onText: (@Sendable (String) -> Bool)?
        var continuation: CheckedContinuation<GenerationResult, any Error>?
        var stepper: TextStepper?
        private let lock = NSLock()
        private var flag = false
        init(promptIds: [Int], parameters: GenerationParameters, onText: @escaping @Sendable (String) -> Bool) {
            self.promptIds = promptIds; self.parameters = parameters; self.onText = onText
        }
        var cancelled: Bool { lock.withLock { flag } }
        func cancel() { lock.withLock { flag = true } }
    }

    let lm: LanguageModel
    let maxActive: Int
    let prefillChunk: Int?
    private let condition = NSCondition()
    /// Submitted, not yet active (guarded by `condition`).
    private var waiting: [Job] = []
    /// Being generated (the scheduler's thread only).
    private var active: [Job] = []
    /// Submitted and not yet finished (guarded by `condition`).
    private var unfinished = 0

    init(_ lm: LanguageModel, maxActive: Int, prefillChunk: Int?) {
        self.lm = lm
        self.maxActive = max(1, maxActive)
        self.prefillChunk = prefillChunk
        let thread = Thread { self.loop() }
        thread.name = "longctx-generate"
        thread.start()
    }

    /// Requests submitted and not yet finished (waiting or being generated).
    var pending: Int { condition.withLock { unfinished } }

    /// Generates after `promptIds`; `onText` is called on the scheduler's thread and must not be kept after this
    /// returns. Cancelling the calling task stops the generation at its next step (the result so far is returned).
    func generate(promptIds: [Int], parameters: GenerationParameters,
                  onText: @escaping @Sendable (String) -> Bool) async throws -> GenerationResult {
        let job = Job(promptIds: promptIds, parameters: parameters, onText: onText)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                job.continuation = continuation
                condition.lock()
                waiting.append(job)
                unfinished += 1
                condition.signal()
                condition.unlock()
            }
        } onCancel: { job.cancel() }
    }

    private func loop() {
        while true {
            condition.lock()
            while active.isEmpty && waiting.isEmpty { condition.wait() }
            let room = min(maxActive - active.count, waiting.count)
            if room > 0 { active += waiting.prefix(room); waiting.removeFirst(room) }
            condition.unlock()
            active.removeAll { !advance($0) }
        }
    }

    /// One step of `job`; false once it has ended (its caller resumed).
    private func advance(_ job: Job) -> Bool {
        do {
            if job.stepper == nil {
                if job.cancelled { throw CancellationError() }
                job.stepper = try TextStepper(lm, promptIds: job.promptIds, parameters: job.parameters, prefillChunk: prefillChunk)
            }
            guard let s = job.stepper else { return false }
            if !job.cancelled {
                try s.step { piece in !job.cancelled && job.onText?(piece) != false }
                if !s.isFinished { return true }
            }
            finish(job, .success(s.result))
        } catch {
            finish(job, .failure(error))
        }
        return false
    }

    /// Resumes the caller, after dropping everything of the job's that the caller lent it (the closure) or that holds
    /// memory (the cache).
    private func finish(_ job: Job, _ result: Result<GenerationResult, any Error>) {
        job.onText = nil
        job.stepper = nil
        let continuation = job.continuation
        job.continuation = nil
        condition.withLock { unfinished -= 1 }
        continuation?.resume(with: result)
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
