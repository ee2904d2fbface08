import Foundation

/// One generation request, the same for an evaluation run and for `longctx serve`: greedy by default, every
/// sampling field explicit.
public struct CompletionRequest: Sendable {
    public var prompt: String
    public var maxTokens: Int
    /// 0: greedy (argmax).
    public var temperature: Double
    /// Keep only the `topK` most likely tokens (0: all).
    public var topK: Int
    public var topP: Double
    /// Seed of the sampling stream; `nil` leaves it to the backend (the engine uses 0, a server its own default).
    public var seed: UInt64?
    /// Generation stops before the first of these in the text.
    public var stop: [String]

    public init(prompt: String, maxTokens: Int, temperature: Double = 0, topK: Int = 0, topP: Double = 1,
                seed: UInt64? = nil, stop: [String] = []) {
        self.prompt = prompt; self.maxTokens = maxTokens; self.temperature = temperature; self.topK = topK
        self.topP = topP; self.seed = seed; self.stop = stop
    }
}

public struct CompletionResponse: Sendable {
    public var text: String
    public var promptTokens: Int?
    public var completionTokens: Int?
    /// "stop" or "length" (OpenAI's names).
    public var finishReason: String?
    /// How many attempts it took (1 = first try).
    public var attempts: Int
    public init(text: String, promptTokens: Int?, completionTokens: Int? = nil, finishReason: String?, attempts: Int = 1) {
        self.text = text; self.promptTokens = promptTokens; self.completionTokens = completionTokens
        self.finishReason = finishReason; self.attempts = attempts
    }
}

/// A backend that failed for good (after its retries): recorded as a failed sample, never scored.
public struct BackendFailure: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var attempts: Int
    public init(_ message: String, attempts: Int) { self.message = message; self.attempts = attempts }
    public var description: String { message }
}

/// A chat turn.
public struct ChatTurn: Codable, Sendable {
    public var role: String
    public var content: String
    public init(role: String, content: String) { self.role = role; self.content = content }
}

/// The one generation interface: anything that turns a prompt into a completion — the built-in engine
/// (`EngineBackend`) or an OpenAI-compatible server (`OpenAIBackend`). The evaluation runner and the HTTP server
/// (`OpenAIServer`) both consume it, so a request flows through the same types in both.
public protocol CompletionBackend: Sendable {
    /// Where completions come from, for reports (`local:NAME`, `openai:URL#MODEL`).
    var name: String { get }
    /// The model id (what `/v1/models` lists).
    var model: String { get }
    /// Generates a completion; `onText` receives the text as it is produced (in pieces where the backend streams)
    /// and returns false to stop early.
    func complete(_ request: CompletionRequest, onText: @Sendable (String) -> Bool) async throws -> CompletionResponse
    /// Prompt token ids for `text`, special tokens (BOS) added as the model is fed.
    func tokenize(_ text: String) async throws -> [Int]
    /// The chat template applied to `turns`, with the generation prompt added.
    func chatPrompt(_ turns: [ChatTurn]) async throws -> String
    /// Most positions (prompt + generated) the model supports; nil when unknown (a remote server).
    var contextLength: Int? { get }
}

extension CompletionBackend {
    public var contextLength: Int? { nil }

    /// A completion without streaming.
    public func complete(_ request: CompletionRequest) async throws -> CompletionResponse {
        try await complete(request) { _ in true }
    }

    public func tokenize(_ text: String) async throws -> [Int] {
        throw BackendFailure("\(name): no tokenizer available", attempts: 1)
    }

    public func chatPrompt(_ turns: [ChatTurn]) async throws -> String {
        throw BackendFailure("\(name): no chat template available", attempts: 1)
    }
}

/// Runs samples through a backend with at most `concurrency` in flight, appending each result to the store
/// as it finishes and skipping samples the store already has scored.
public enum EvalRunner {
    public static func run(samples: [EvalSample], backend: any CompletionBackend, store: ResultStore,
                           concurrency: Int = 1, seed: UInt64? = nil,
                           progress: @escaping @Sendable (_ done: Int, _ total: Int) -> Void = { _, _ in }) async throws {
        let todo = samples.filter { !store.isDone($0.id) }
        let total = todo.count
        var done = 0
        progress(0, total)
        try await withThrowingTaskGroup(of: SampleResult.self) { group in
            var next = 0
            func launch() {
                let s = todo[next]
                next += 1
                group.addTask {
                    let start = Date()
                    let req = CompletionRequest(prompt: s.prompt, maxTokens: s.tokensToGenerate, seed: seed)
                    do {
                        let r = try await backend.complete(req)
                        return SampleResult(sample: s, prediction: r.text, servedPromptTokens: r.promptTokens, error: nil,
                                            attempts: r.attempts, seconds: Date().timeIntervalSince(start))
                    } catch let f as BackendFailure {
                        return SampleResult(sample: s, prediction: nil, servedPromptTokens: nil, error: f.message,
                                            attempts: f.attempts, seconds: Date().timeIntervalSince(start))
                    } catch {
                        return SampleResult(sample: s, prediction: nil, servedPromptTokens: nil, error: "\(error)",
                                            attempts: 1, seconds: Date().timeIntervalSince(start))
                    }
                }
            }
            while next < todo.count && next < max(concurrency, 1) { launch() }
            while let r = try await group.next() {
                try store.append(r)
                done += 1
                progress(done, total)
                if next < todo.count { launch() }
            }
        }
    }
}
