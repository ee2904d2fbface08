import Basics
import Evaluation
import Foundation
import Hummingbird
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// The request context of the server's router: Hummingbird's basic context plus the request's connection, so a
/// handler can tell that its client went away.
public struct ServeContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    /// Whether the client is still there: the connection is open and, on Linux, the client has not closed its side.
    /// While a response is pending NIO reads nothing more (HTTP pipelining), so a client's close shows only in the
    /// kernel's TCP state (`CLOSE_WAIT` instead of `ESTABLISHED`). A client that half-closes its socket after
    /// sending a request is therefore taken as gone, as nginx takes it.
    @Sendable public func connected() async -> Bool {
        guard channel.isActive else { return false }
        #if os(Linux)
        guard let socket = channel as? any SocketOptionProvider else { return true }
        guard let info = try? await socket.getTCPInfo().get() else { return false }
        return info.tcpi_state == 1  // TCP_ESTABLISHED
        #else
        return true
        #endif
    }
}

/// An OpenAI-compatible HTTP server over a completion backend (`longctx serve` serves the built-in engine):
/// `GET /v1/models`, `POST /v1/completions`, `POST /v1/chat/completions` (both with `stream: true` as
/// Server-Sent Events ending in `data: [DONE]`), `POST /tokenize` (vLLM's shape) and `GET /health` (with the
/// number of generation requests admitted and not finished).
/// Each HTTP request becomes one `CompletionRequest` to the backend (which serialises what must be serial); it is
/// cancelled when its client goes away (streamed or not) or its deadline passes.
public struct OpenAIServer: Sendable {
    /// Bounds on the work one server accepts.
    public struct Limits: Sendable {
        /// Generation requests admitted at once (running + waiting); more are answered 503 at once.
        public var maxQueued: Int
        /// Seconds a generation request may take from admission (queueing included); then it stops (504).
        public var requestSeconds: Double
        /// Longest prompt accepted, in UTF-8 bytes, checked before it is tokenized (400 beyond); nil: ``bytesPerToken``
        /// per token of the model's context (no limit when the context is unknown).
        public var maxPromptBytes: Int?
        /// The default prompt limit's bytes per context token: 8× the ≈4 of English text in Llama-family
        /// tokenizers, so a prompt this long is too long for the context in practice and is refused without
        /// spending seconds tokenizing it (a 10 MB prompt takes tens of seconds).
        public static let bytesPerToken = 32
        /// Requests per client address (nil: no limit, the default — a local eval harness or a reverse proxy in
        /// front sends everything from one address). Over it a request is answered 429 with `Retry-After` before
        /// its body is read.
        public var rateLimit: RateLimit?
        public init(maxQueued: Int = 64, requestSeconds: Double = 600, maxPromptBytes: Int? = nil, rateLimit: RateLimit? = nil) {
            self.maxQueued = maxQueued; self.requestSeconds = requestSeconds; self.maxPromptBytes = maxPromptBytes
            self.rateLimit = rateLimit
        }

        /// The body limit of a generation request for a model of `context` tokens: the prompt limit at 6 bytes per
        /// byte (the longest JSON escape, `\u0001`) and 1 MiB for the other fields.
        func bodyBytes(context: Int?) -> Int {
            guard let p = promptBytes(context: context), p <= (OpenAIRequest.maxBodyBytes - (1 << 20)) / 6 else { return OpenAIRequest.maxBodyBytes }
            return 6 * p + (1 << 20)
        }

        /// The prompt limit for a model of `context` tokens.
        func promptBytes(context: Int?) -> Int? {
            maxPromptBytes ?? context.map { $0.multipliedReportingOverflow(by: Self.bytesPerToken).overflow ? Int.max : $0 * Self.bytesPerToken }
        }
    }

    public let backend: any CompletionBackend
    public let host: String
    public let port: Int
    public let limits: Limits
    let admission: Admission
    let limiter: ClientRateLimiter?

    public init(backend: any CompletionBackend, host: String = "127.0.0.1", port: Int = 8000, limits: Limits = Limits()) {
        self.init(backend: backend, host: host, port: port, limits: limits, limiter: limits.rateLimit.map { ClientRateLimiter($0) })
    }

    /// With the rate limiter given (tests hand it a clock of their own, so its refills do not depend on timing).
    init(backend: any CompletionBackend, host: String = "127.0.0.1", port: Int = 8000, limits: Limits, limiter: ClientRateLimiter?) {
        self.backend = backend
        self.host = host
        self.port = port
        self.limits = limits
        self.admission = Admission(limit: limits.maxQueued)
        self.limiter = limiter
    }

    struct Failure: Error {
        let status: HTTPResponse.Status
        let message: String
        init(status: HTTPResponse.Status, message: String) { self.status = status; self.message = message }
        init(_ e: OpenAIRequest.Invalid) { status = HTTPResponse.Status(code: e.status); message = e.message }
    }

    /// Counts admitted generation requests against a limit.
    final class Admission: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        let limit: Int
        init(limit: Int) { self.limit = max(1, limit) }
        func enter() -> Bool {
            lock.lock(); defer { lock.unlock() }
            guard count < limit else { return false }
            count += 1
            return true
        }
        func leave() { lock.lock(); count -= 1; lock.unlock() }
        /// Requests admitted and not yet finished.
        var admitted: Int { lock.withLock { count } }
    }

    /// When a request must be finished by; generation stops at the first piece of text after it.
    struct Deadline: Sendable {
        let end: ContinuousClock.Instant
        let seconds: Double
        init(seconds: Double) {
            self.seconds = seconds
            end = .now + .milliseconds(Int64(min(seconds, 1e9) * 1000))
        }
        var passed: Bool { ContinuousClock.now >= end }
    }

    static func json(_ obj: Any, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// An error answer in OpenAI's shape, `{"error":{"code":…,"message":…,"type":…}}`, written without
    /// JSONSerialization (a refusal should cost as little as possible).
    static func error(_ status: HTTPResponse.Status, _ message: String, headers: HTTPFields = [:]) -> Response {
        let body = JSONValue.object(JSONObject([("error", .object(JSONObject([
            ("code", .int(Int(status.code))), ("message", .string(message)),
            ("type", .string(status.code >= 500 ? "server_error" : "invalid_request_error")),
        ])))])).serialized(indent: nil)
        var h = headers
        h[.contentType] = "application/json"
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    /// The decoded body, read up to `limit` bytes. A longer one is refused with 413 — from its `Content-Length`
    /// alone, before any of it is read, or (chunked) once `limit` bytes have come; ``ClientPolicy`` then reads and
    /// drops what remains of a declared body (up to ``OpenAIRequest/maxBodyBytes``, so a client that sends it all
    /// before reading gets the answer) and closes the connection.
    static func body(_ request: Request, limit: Int = OpenAIRequest.maxBodyBytes) async throws -> OpenAIRequest.Body {
        if let declared = request.headers[.contentLength].flatMap({ Int($0) }), declared > limit {
            throw tooLarge(String(declared), limit: limit)
        }
        var buf = ByteBuffer()
        for try await part in request.body {
            guard buf.readableBytes + part.readableBytes <= limit else { throw tooLarge("over \(limit)", limit: limit) }
            var p = part
            buf.writeBuffer(&p)
        }
        do { return try OpenAIRequest.decode(Data(buf.readableBytesView)) } catch let e as OpenAIRequest.Invalid {
            throw Failure(e)
        }
    }

    static func tooLarge(_ size: String, limit: Int) -> Failure {
        Failure(status: .contentTooLarge, message: "request body is \(size) bytes; this server accepts at most \(limit)\(limit < OpenAIRequest.maxBodyBytes ? " for a generation request (6 per byte of its longest prompt, JSON escapes included, + 1 MiB)" : "")")
    }

    static func sampling(_ b: OpenAIRequest.Body) throws -> OpenAIRequest.Sampling {
        do { return try OpenAIRequest.sampling(b) } catch let e as OpenAIRequest.Invalid { throw Failure(e) }
    }

    /// Refuses a model name other than the served one (404, as OpenAI's API answers an unknown model).
    static func checkModel(_ b: OpenAIRequest.Body, _ gen: any CompletionBackend) throws {
        if let m = b.model, m != gen.model {
            throw Failure(status: .notFound, message: "The model '\(m)' does not exist (this server serves '\(gen.model)')")
        }
    }

    /// The router with every endpoint.
    public func router() -> Router<ServeContext> {
        let gen = backend
        let admission = admission, limits = limits, limiter = limiter
        let bodyLimit = limits.bodyBytes(context: gen.contextLength)
        let router = Router(context: ServeContext.self)
        router.get("/health") { _, _ in Self.json(["status": "ok", "generating": admission.admitted]) }
        router.add(middleware: ClientPolicy(limiter: limiter))  // every endpoint below, not /health
        router.get("/v1/models") { _, _ in
            Self.json(["object": "list", "data": [["id": gen.model, "object": "model", "created": 0, "owned_by": "longctx"]]])
        }
        router.post("/tokenize") { req, _ in
            do {
                let b = try await Self.body(req)
                guard let p = b.prompt else { throw Failure(status: .badRequest, message: "'prompt' (string) is required") }
                let ids: [Int]
                do { ids = try await gen.tokenize(p) } catch {
                    throw Failure(status: .notImplemented, message: "tokenize: \(error)")
                }
                return Self.json(["tokens": ids, "count": ids.count])
            } catch let f as Failure { return Self.error(f.status, f.message) }
        }
        router.post("/v1/completions") { req, context in
            do {
                let b = try await Self.body(req, limit: bodyLimit)
                try Self.checkModel(b, gen)
                guard let prompt = b.prompt else { throw Failure(status: .badRequest, message: "'prompt' (string) is required") }
                return try await Self.generate(gen, prompt: prompt, sampling: Self.sampling(b), chat: false, admission: admission,
                                               limits: limits, connected: context.connected)
            } catch let f as Failure { return Self.error(f.status, f.message) }
        }
        router.post("/v1/chat/completions") { req, context in
            do {
                let b = try await Self.body(req, limit: bodyLimit)
                try Self.checkModel(b, gen)
                guard let turns = b.messages, !turns.isEmpty else {
                    throw Failure(status: .badRequest, message: "'messages' must be a non-empty array")
                }
                let prompt: String
                do { prompt = try await gen.chatPrompt(turns) } catch {
                    throw Failure(status: .badRequest, message: "chat template: \(error)")
                }
                return try await Self.generate(gen, prompt: prompt, sampling: Self.sampling(b), chat: true, admission: admission,
                                               limits: limits, connected: context.connected)
            } catch let f as Failure { return Self.error(f.status, f.message) }
        }
        return router
    }

    static func usage(_ out: CompletionResponse) -> [String: Int] {
        let prompt = out.promptTokens ?? 0, completion = out.completionTokens ?? 0
        return ["prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion]
    }

    /// The error line a failed generation reports (a backend's own failure message, else "generation failed: …").
    static func failure(_ error: any Error) -> String {
        (error as? BackendFailure)?.message ?? "generation failed: \(error)"
    }

    /// A prompt that encodes to nothing, or one that with `max_tokens` does not fit the model's context, is refused
    /// with 400 before any generation (vLLM's check and message).
    static func checkLength(promptTokens: Int, maxTokens: Int, context: Int?) throws {
        guard promptTokens > 0 else { throw Failure(status: .badRequest, message: "'prompt' is empty (no tokens)") }
        guard let context else { return }
        let (total, overflow) = promptTokens.addingReportingOverflow(maxTokens)
        if overflow || total > context {
            throw Failure(status: .badRequest, message: "This model's maximum context length is \(context) tokens. However, you requested \(overflow ? "more than \(Int.max)" : String(total)) tokens (\(promptTokens) in the prompt, \(maxTokens) in the completion). Please reduce the length of the prompt or 'max_tokens'.")
        }
    }

    /// Calls `cancel` once the client goes away or the deadline passes (checked every `every` seconds). Cancel the
    /// returned watcher when the work is done.
    static func watch(connected: @escaping @Sendable () async -> Bool, deadline: Deadline, every: Double = 0.1,
                      cancel: @escaping @Sendable () -> Void) -> Task<Void, Never> {
        Task {
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: UInt64(every * 1e9))
                if Task.isCancelled { return }
                let gone = await !connected()
                if gone || deadline.passed { cancel(); return }
            }
        }
    }

    /// What one request generates, with its ids and names.
    struct Generation: Sendable {
        let request: CompletionRequest
        let chat: Bool
        let id: String
        let created: Int
        let model: String
        let deadline: Deadline
        var timeout: Failure {
            Failure(status: .gatewayTimeout, message: "generation did not finish within the request deadline of \(deadline.seconds) s")
        }
    }

    /// Admits the request (503 when `limits.maxQueued` are already admitted), checks its length against the
    /// model's context, and generates — stopping at the deadline (504) or when the client goes away.
    static func generate(_ gen: any CompletionBackend, prompt: String, sampling: OpenAIRequest.Sampling, chat: Bool,
                         admission: Admission, limits: Limits,
                         connected: @escaping @Sendable () async -> Bool = { true }) async throws -> Response {
        guard admission.enter() else {
            throw Failure(status: .serviceUnavailable, message: "server busy: \(admission.limit) requests already queued; retry later")
        }
        var admitted = true
        defer { if admitted { admission.leave() } }
        let deadline = Deadline(seconds: limits.requestSeconds)
        if let limit = limits.promptBytes(context: gen.contextLength), prompt.utf8.count > limit {
            throw Failure(status: .badRequest, message: "\(chat ? "'messages'" : "'prompt'") is \(prompt.utf8.count) bytes; this server accepts prompts of at most \(limit) bytes (\(limits.maxPromptBytes == nil ? "\(Limits.bytesPerToken) per token of the model's context" : "--max-prompt-bytes"))")
        }
        if let context = gen.contextLength {
            let count = (try? await gen.tokenize(prompt).count) ?? 1
            try checkLength(promptTokens: count, maxTokens: sampling.request.maxTokens, context: context)
        }
        var request = sampling.request
        request.prompt = prompt
        let g = Generation(request: request, chat: chat, id: (chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.lowercased().prefix(12),
                           created: Int(Date().timeIntervalSince1970), model: gen.model, deadline: deadline)
        guard sampling.stream else { return try await complete(gen, g, connected: connected) }
        admitted = false  // the streaming task leaves when it ends
        return stream(gen, g, includeUsage: sampling.includeUsage, admission: admission, connected: connected)
    }

    /// A whole response, generated by a task of its own that is cancelled when the client goes away or the
    /// deadline passes (504) — or when this handler is cancelled.
    static func complete(_ gen: any CompletionBackend, _ g: Generation,
                         connected: @escaping @Sendable () async -> Bool) async throws -> Response {
        let request = g.request, deadline = g.deadline
        let work = Task { try await gen.complete(request) { _ in !deadline.passed } }
        let watcher = watch(connected: connected, deadline: deadline) { work.cancel() }
        defer { watcher.cancel() }
        let out: CompletionResponse
        do { out = try await withTaskCancellationHandler { try await work.value } onCancel: { work.cancel() } } catch {
            if deadline.passed { throw g.timeout }
            return Self.error(.internalServerError, failure(error))
        }
        if deadline.passed { throw g.timeout }
        if work.isCancelled { throw Failure(status: HTTPResponse.Status(code: 499), message: "client closed the connection") }
        let finish = out.finishReason ?? "stop"
        let choice: [String: Any] = g.chat
            ? ["index": 0, "message": ["role": "assistant", "content": out.text], "finish_reason": finish]
            : ["index": 0, "text": out.text, "finish_reason": finish, "logprobs": NSNull()]
        return json(["id": g.id, "object": g.chat ? "chat.completion" : "text_completion", "created": g.created,
                     "model": g.model, "choices": [choice], "usage": usage(out)])
    }

    /// A Server-Sent Events response, generated by a task that leaves `admission` when it ends and is cancelled
    /// when the client goes away (the response's stream ends, or the connection closes) or the deadline passes.
    static func stream(_ gen: any CompletionBackend, _ g: Generation, includeUsage: Bool, admission: Admission,
                       connected: @escaping @Sendable () async -> Bool) -> Response {
        let (stream, cont) = AsyncStream<ByteBuffer>.makeStream()
        @Sendable func event(_ obj: [String: Any]) -> ByteBuffer {
            let d = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data()
            return ByteBuffer(string: "data: " + String(decoding: d, as: UTF8.self) + "\n\n")
        }
        let object = g.chat ? "chat.completion.chunk" : "text_completion"
        @Sendable func head(_ fields: [String: Any]) -> [String: Any] {
            fields.merging(["id": g.id, "object": object, "created": g.created, "model": g.model]) { a, _ in a }
        }
        @Sendable func chunk(_ text: String?, finish: String?) -> [String: Any] {
            let choice: [String: Any] = g.chat
                ? ["index": 0, "delta": text.map { ["content": $0] } ?? [:], "finish_reason": finish ?? NSNull()]
                : ["index": 0, "text": text ?? "", "finish_reason": finish ?? NSNull(), "logprobs": NSNull()]
            return head(["choices": [choice]])
        }
        let request = g.request, deadline = g.deadline
        let task = Task {
            defer { admission.leave() }
            if g.chat { cont.yield(event(head(["choices": [["index": 0, "delta": ["role": "assistant"], "finish_reason": NSNull()]]]))) }
            do {
                let out = try await gen.complete(request) { piece in
                    if !piece.isEmpty { cont.yield(event(chunk(piece, finish: nil))) }
                    return !deadline.passed
                }
                if deadline.passed {
                    cont.yield(event(["error": ["message": g.timeout.message, "type": "server_error", "code": 504]]))
                } else {
                    cont.yield(event(chunk(nil, finish: out.finishReason ?? "stop")))
                }
                if includeUsage { cont.yield(event(head(["choices": [], "usage": usage(out)]))) }
            } catch {
                cont.yield(event(["error": ["message": deadline.passed ? g.timeout.message : failure(error), "type": "server_error"]]))
            }
            cont.yield(ByteBuffer(string: "data: [DONE]\n\n"))
            cont.finish()
        }
        let watcher = watch(connected: connected, deadline: deadline) { task.cancel() }
        // The client went away (or the response was dropped): stop generating for it.
        cont.onTermination = { _ in task.cancel(); watcher.cancel() }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                        body: .init(asyncSequence: stream))
    }

    /// Runs until cancelled (or SIGINT/SIGTERM). `onRunning` receives the bound port (useful with port 0).
    public func run(onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let app = Application(router: router(), configuration: .init(address: .hostname(host, port: port), serverName: "longctx"),
                              onServerRunning: { ch in await onRunning(ch.localAddress?.port ?? 0) })
        try await app.runService()
    }
}
