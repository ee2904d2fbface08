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
/// at a time — a prompt chunk or one token — shortest remaining work first (with one step in four for the longest-waiting, so none starves) by default, so
/// a long request does not hold up short ones. Prompts
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

    /// `model`: the id reported to clients (e.g. the directory name). `maxActive`: generations admitted at once
    /// (each holds a KV cache for its prompt + max tokens; more wait); `prefillChunk`: prompt tokens per step;
    /// `policy`: which admitted generation steps next, and which waiting one is admitted next. Models whose rope frequencies change per forward call (dynamic NTK, longrope) run one generation at
    /// a time with the prompt in one call, as transformers computes them.
    public init(_ lm: LanguageModel, model: String, maxActive: Int = 8, prefillChunk: Int = 128,
                policy: SchedulingPolicy = .shortestFirst) {
        self.lm = lm
        self.model = model
        contextLength = lm.model.configuration.contextLength
        aside = AsideEncoder(lm.tokenizer)
        let exact = lm.model.chunkedPrefillIsExact
        scheduler = EngineScheduler(lm, maxActive: exact ? maxActive : 1, prefillChunk: exact ? prefillChunk : nil,
                                    policy: policy)
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

/// Which admitted generation the engine steps next (`longctx serve --schedule`).
public enum SchedulingPolicy: String, CaseIterable, Sendable {
    /// Shortest remaining work first (``ShortestWorkFirst``): a short request overtakes long ones; one step in
    /// ``ShortestWorkFirst/share`` goes to the request waiting longest, so none starves.
    case shortestFirst = "shortest-first"
    /// Every active generation one step per round, in turn; the queue in arrival order.
    case roundRobin = "round-robin"
}

/// Shortest remaining work first, with a share for the rest so nothing starves. A request's work is the tokens it
/// still has to run: prompt not yet prefilled + generation budget left (`max_tokens` capped at the context; an upper
/// bound, as a stop may come sooner).
/// - Stepping: the admitted request with the least work runs next (ties in arrival order) — except every
///   ``share``-th step, which goes to the admitted request that has waited longest since it last ran. A short
///   request beside long ones thus gets at least (share − 1)/share of the engine, and every admitted request runs at
///   least once every `share × admitted` steps, however many short ones keep arriving. (Aging the key instead — least
///   work minus time waited — would let a long request, once aged, hold the engine to its end.)
/// - Admission (a free place, requests queued): the smallest key first, key = the engine's token clock at its
///   arrival (tokens run so far) + its work, i.e. least work minus age. A request with key k is admitted before every
///   request arriving after clock k, so none waits forever.
/// Work is counted in tokens, so a prompt token weighs as much as a generated one (in a forward pass it costs less).
public enum ShortestWorkFirst {
    /// One step in `share` runs the request that has waited longest since it last ran.
    public static let share = 4

    /// The position in `jobs` (admitted, in arrival order: work left, number of the step it last ran — or was
    /// admitted at) of the one to run at step `step`; nil if none.
    public static func next(_ jobs: [(work: Int, lastRun: Int)], step: Int) -> Int? {
        step % share == 0
            ? jobs.indices.min { jobs[$0].lastRun < jobs[$1].lastRun }
            : jobs.indices.min { jobs[$0].work < jobs[$1].work }
    }

    /// The position in `queued` (in arrival order: token clock at arrival, work) of the one to admit next; nil if none.
    public static func admit(_ queued: [(arrival: Int, work: Int)]) -> Int? {
        queued.indices.min { queued[$0].arrival + queued[$0].work < queued[$1].arrival + queued[$1].work }
    }
}

/// Runs generations on one dedicated thread, up to `maxActive` of them admitted at once (each holds its KV cache
/// from its first step to its end), one step at a time — a prompt chunk of `prefillChunk` tokens, or one token:
/// continuous batching without batched matrix products. `policy` chooses the step and the admission order: least
/// remaining work first with a share for the longest-waiting (``ShortestWorkFirst``), or every admitted request one
/// step per round and the queue in arrival order (``SchedulingPolicy/roundRobin``).
/// Cancelled requests leave at the next step, wherever they are. The model sees one forward call at a time, always
/// from this thread.
final class EngineScheduler: @unchecked Sendable {
    /// One request; its fields other than `cancelled` belong to the scheduler's thread once submitted.
    final class Job: @unchecked Sendable {
        let promptIds: [Int]
        let parameters: GenerationParameters
        var onText: (@Sendable (String) -> Bool)?
        var continuation: CheckedContinuation<GenerationResult, any Error>?
        var stepper: TextStepper?
        /// The engine's token clock when the scheduler took the job in.
        var arrival = 0
        /// The number of the last step that ran the job, or of the step before its admission.
        var lastRun = 0
        /// The number of the step that ended the job (``EngineScheduler/steps``); set before its caller resumes.
        var endStep = 0
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
    let policy: SchedulingPolicy
    private let condition = NSCondition()
    /// Submitted, not yet taken in by the scheduler's thread (guarded by `condition`).
    private var arriving: [Job] = []
    /// Submitted and not yet finished (guarded by `condition`).
    private var unfinished = 0
    /// Steps run so far (guarded by `condition`).
    private var stepCount = 0
    /// Taken in, not yet admitted, in arrival order (the scheduler's thread only).
    private var queued: [Job] = []
    /// Admitted: being generated (the scheduler's thread only).
    private var active: [Job] = []
    /// Tokens run so far: the admission clock of ``ShortestWorkFirst`` (the scheduler's thread only).
    private var clock = 0

    init(_ lm: LanguageModel, maxActive: Int, prefillChunk: Int?, policy: SchedulingPolicy = .shortestFirst) {
        self.lm = lm
        self.maxActive = max(1, maxActive)
        self.prefillChunk = prefillChunk
        self.policy = policy
        let thread = Thread {
            nameThisThread("longctx-engine")
            self.loop()
        }
        thread.start()
    }

    /// Requests submitted and not yet finished (waiting or being generated).
    var pending: Int { condition.withLock { unfinished } }
    /// Steps run so far; during a step (in `onText`), that step's number, counted from 1.
    var steps: Int { condition.withLock { stepCount } }

    /// Generates after `promptIds`; `onText` is called on the scheduler's thread and must not be kept after this
    /// returns. Cancelling the calling task stops the generation at its next step (the result so far is returned).
    func generate(promptIds: [Int], parameters: GenerationParameters,
                  onText: @escaping @Sendable (String) -> Bool) async throws -> GenerationResult {
        try await submit(Job(promptIds: promptIds, parameters: parameters, onText: onText))
    }

    /// Queues `job` and returns its result (see ``generate(promptIds:parameters:onText:)``).
    func submit(_ job: Job) async throws -> GenerationResult {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                job.continuation = continuation
                condition.lock()
                arriving.append(job)
                unfinished += 1
                condition.signal()
                condition.unlock()
            }
        } onCancel: { job.cancel() }
    }

    private func loop() {
        while true {
            condition.lock()
            while active.isEmpty && queued.isEmpty && arriving.isEmpty { condition.wait() }
            for job in arriving { job.arrival = clock }
            queued += arriving
            arriving.removeAll()
            condition.unlock()
            dropCancelled()
            admit()
            switch policy {
            case .roundRobin: active.removeAll { !advance($0) }
            case .shortestFirst:
                let step = condition.withLock { stepCount + 1 }
                if let i = ShortestWorkFirst.next(active.map { (remaining($0), $0.lastRun) }, step: step), !advance(active[i]) {
                    active.remove(at: i)
                }
            }
        }
    }

    /// Tokens `job` still has to run (see ``ShortestWorkFirst``).
    private func remaining(_ job: Job) -> Int {
        job.stepper?.tokens.remainingTokens ?? job.promptIds.count + lm.model.generationBudget(job.parameters.maxTokens)
    }

    /// Ends every cancelled request, queued or admitted, so that none holds a place it will not use.
    private func dropCancelled() {
        queued.removeAll { job in
            guard job.cancelled else { return false }
            finish(job, .failure(CancellationError()))
            return true
        }
        active.removeAll { job in
            guard job.cancelled else { return false }
            finish(job, job.stepper.map { .success($0.result) } ?? .failure(CancellationError()))
            return true
        }
    }

    /// Fills the free places from the queue, in the policy's order.
    private func admit() {
        while active.count < maxActive, !queued.isEmpty {
            let i = policy == .roundRobin ? 0 : ShortestWorkFirst.admit(queued.map { ($0.arrival, remaining($0)) }) ?? 0
            queued[i].lastRun = condition.withLock { stepCount }
            active.append(queued.remove(at: i))
        }
    }

    /// One step of `job`; false once it has ended (its caller resumed).
    private func advance(_ job: Job) -> Bool {
        job.lastRun = condition.withLock {
            stepCount += 1
            return stepCount
        }
        do {
            if job.stepper == nil {
                if job.cancelled { throw CancellationError() }
                job.stepper = try TextStepper(lm, promptIds: job.promptIds, parameters: job.parameters, prefillChunk: prefillChunk)
            }
            guard let s = job.stepper else { return false }
            if !job.cancelled {
                let before = s.tokens.remainingTokens
                try s.step { piece in !job.cancelled && job.onText?(piece) != false }
                clock += max(1, before - s.tokens.remainingTokens)
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
        job.endStep = condition.withLock {
            unfinished -= 1
            return stepCount
        }
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
        let thread = Thread {
            nameThisThread(name)
            self.loop()
        }
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

/// Names the calling thread as the OS shows it (`/proc/PID/task/TID/comm`, where `scripts/soak` reads each thread's
/// CPU time; Linux keeps 15 bytes). On Linux through `/proc/thread-self/comm`: Foundation's `Thread.name`, set from
/// within a new thread, sometimes named another thread.
func nameThisThread(_ name: String) {
    #if os(Linux)
    try? String(name.utf8.prefix(15))!.write(toFile: "/proc/thread-self/comm", atomically: false, encoding: .utf8)
    #else
    Thread.current.name = name
    #endif
}
