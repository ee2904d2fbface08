import Foundation

/// One generation request from the harness: greedy by default, every sampling field explicit.
public struct CompletionRequest: Sendable {
    public var prompt: String
    public var maxTokens: Int
    public var temperature: Double
    public var topP: Double
    public var seed: UInt64?
    public var stop: [String]

    public init(prompt: String, maxTokens: Int, temperature: Double = 0, topP: Double = 1, seed: UInt64? = nil, stop: [String] = []) {
        self.prompt = prompt; self.maxTokens = maxTokens; self.temperature = temperature
        self.topP = topP; self.seed = seed; self.stop = stop
    }
}

public struct CompletionResponse: Sendable {
    public var text: String
    public var promptTokens: Int?
    public var finishReason: String?
    /// How many attempts it took (1 = first try).
    public var attempts: Int
    public init(text: String, promptTokens: Int?, finishReason: String?, attempts: Int = 1) {
        self.text = text; self.promptTokens = promptTokens; self.finishReason = finishReason; self.attempts = attempts
    }
}

/// A backend that failed for good (after its retries): recorded as a failed sample, never scored.
public struct BackendFailure: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var attempts: Int
    public init(_ message: String, attempts: Int) { self.message = message; self.attempts = attempts }
    public var description: String { message }
}

/// Anything that turns a prompt into a completion: the built-in engine or an OpenAI-compatible server.
public protocol CompletionBackend: Sendable {
    var name: String { get }
    func complete(_ request: CompletionRequest) async throws -> CompletionResponse
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

// MARK: - Built-in engine

/// Sampling settings handed to a text generator (mirrors the engine's `GenerationParameters`).
public struct TextGenerationParameters: Sendable {
    public var maxTokens: Int
    public var temperature: Double
    public var topK: Int
    public var topP: Double
    public var seed: UInt64
    public var stopStrings: [String]
    public init(maxTokens: Int, temperature: Double = 0, topK: Int = 0, topP: Double = 1, seed: UInt64 = 0, stopStrings: [String] = []) {
        self.maxTokens = maxTokens; self.temperature = temperature; self.topK = topK; self.topP = topP
        self.seed = seed; self.stopStrings = stopStrings
    }
}

/// What a generation produced (mirrors the engine's `GenerationResult`).
public struct TextGenerationOutput: Sendable {
    public var promptIds: [Int]
    public var generatedIds: [Int]
    public var text: String
    /// "stop" or "length".
    public var finishReason: String
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    public init(promptIds: [Int], generatedIds: [Int], text: String, finishReason: String, prefillSeconds: Double, decodeSeconds: Double) {
        self.promptIds = promptIds; self.generatedIds = generatedIds; self.text = text
        self.finishReason = finishReason; self.prefillSeconds = prefillSeconds; self.decodeSeconds = decodeSeconds
    }
}

/// A chat turn.
public struct ChatTurn: Codable, Sendable {
    public var role: String
    public var content: String
    public init(role: String, content: String) { self.role = role; self.content = content }
}

/// A local model behind `longctx serve` and the built-in backend. Not required to be thread-safe:
/// callers go through `SerialGenerator`, which runs one request at a time.
public protocol TextGenerating: AnyObject {
    var modelName: String { get }
    /// Prompt ids for a prompt string, special tokens (BOS) added as the tokenizer does.
    func encode(_ text: String) -> [Int]
    /// The chat template applied to `messages` with the generation prompt added.
    func chatPrompt(_ messages: [ChatTurn]) throws -> String
    func generate(promptIds: [Int], parameters: TextGenerationParameters,
                  onToken: (Int, String) -> Bool) throws -> TextGenerationOutput
}

/// Serialises requests to one generator (concurrency 1).
public actor SerialGenerator {
    nonisolated(unsafe) let generator: any TextGenerating
    public nonisolated let modelName: String

    public init(_ generator: any TextGenerating) {
        self.generator = generator
        self.modelName = generator.modelName
    }

    public func chatPrompt(_ messages: [ChatTurn]) throws -> String { try generator.chatPrompt(messages) }

    public func encode(_ text: String) -> [Int] { generator.encode(text) }

    /// Generates from `prompt`; `onToken` receives text pieces and returns false to stop.
    public func generate(prompt: String, parameters: TextGenerationParameters,
                         onToken: @Sendable (String) -> Bool = { _ in true }) throws -> TextGenerationOutput {
        let ids = generator.encode(prompt)
        return try generator.generate(promptIds: ids, parameters: parameters) { _, piece in onToken(piece) }
    }
}

/// The built-in engine as an evaluation backend (greedy, same prompt encoding as `longctx serve`).
public struct LocalBackend: CompletionBackend {
    public let generator: SerialGenerator
    public var name: String { "local:\(generator.modelName)" }
    public init(_ generator: SerialGenerator) { self.generator = generator }

    public func complete(_ r: CompletionRequest) async throws -> CompletionResponse {
        do {
            let out = try await generator.generate(prompt: r.prompt, parameters: TextGenerationParameters(
                maxTokens: r.maxTokens, temperature: r.temperature, topP: r.topP, seed: r.seed ?? 0, stopStrings: r.stop))
            return CompletionResponse(text: out.text, promptTokens: out.promptIds.count, finishReason: out.finishReason)
        } catch {
            throw BackendFailure("generation failed: \(error)", attempts: 1)
        }
    }
}
