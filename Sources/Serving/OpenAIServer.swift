import Evaluation
import Foundation
import Hummingbird
import NIOCore

/// An OpenAI-compatible HTTP server over a completion backend (`longctx serve` serves the built-in engine):
/// `GET /v1/models`, `POST /v1/completions`, `POST /v1/chat/completions` (both with `stream: true` as
/// Server-Sent Events ending in `data: [DONE]`), `POST /tokenize` (vLLM's shape) and `GET /health`.
/// Each HTTP request becomes one `CompletionRequest` to the backend (which serialises what must be serial).
public struct OpenAIServer: Sendable {
    public let backend: any CompletionBackend
    public let host: String
    public let port: Int

    public init(backend: any CompletionBackend, host: String = "127.0.0.1", port: Int = 8000) {
        self.backend = backend
        self.host = host
        self.port = port
    }

    struct Failure: Error { let status: HTTPResponse.Status; let message: String }

    static func json(_ obj: Any, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        json(["error": ["message": message, "type": status.code >= 500 ? "server_error" : "invalid_request_error", "code": Int(status.code)]], status: status)
    }

    /// Decoded sampling fields of a completions/chat request (OpenAI names; absent fields take OpenAI defaults,
    /// seed 0); `request.prompt` is filled in by the endpoint.
    struct Sampling {
        var request: CompletionRequest
        var stream: Bool
        var includeUsage: Bool

        init(_ o: [String: Any]) throws {
            func num(_ k: String) -> Double? { (o[k] as? NSNumber)?.doubleValue }
            let maxTokens = (o["max_tokens"] as? Int) ?? (o["max_completion_tokens"] as? Int) ?? 16
            guard maxTokens >= 0 else { throw Failure(status: .badRequest, message: "max_tokens must be >= 0") }
            var stops: [String] = []
            if let s = o["stop"] as? String { stops = [s] } else if let s = o["stop"] as? [String] { stops = s }
            request = CompletionRequest(prompt: "", maxTokens: maxTokens, temperature: num("temperature") ?? 1,
                                        topK: (o["top_k"] as? Int) ?? 0, topP: num("top_p") ?? 1,
                                        seed: UInt64(truncatingIfNeeded: (o["seed"] as? Int) ?? 0), stop: stops)
            stream = (o["stream"] as? Bool) ?? false
            includeUsage = ((o["stream_options"] as? [String: Any])?["include_usage"] as? Bool) ?? false
        }
    }

    static func body(_ request: Request) async throws -> [String: Any] {
        let buf = try await request.body.collect(upTo: 512 << 20)
        guard let o = try? JSONSerialization.jsonObject(with: Data(buf.readableBytesView)) as? [String: Any] else {
            throw Failure(status: .badRequest, message: "request body is not a JSON object")
        }
        return o
    }

    /// The router with every endpoint.
    public func router() -> Router<BasicRequestContext> {
        let gen = backend
        let router = Router()
        router.get("/health") { _, _ in Self.json(["status": "ok"]) }
        router.get("/v1/models") { _, _ in
            Self.json(["object": "list", "data": [["id": gen.model, "object": "model", "created": 0, "owned_by": "longctx"]]])
        }
        router.post("/tokenize") { req, _ in
            do {
                let o = try await Self.body(req)
                guard let p = o["prompt"] as? String else { throw Failure(status: .badRequest, message: "'prompt' (string) is required") }
                let ids: [Int]
                do { ids = try await gen.tokenize(p) } catch {
                    throw Failure(status: .notImplemented, message: "tokenize: \(error)")
                }
                return Self.json(["tokens": ids, "count": ids.count])
            } catch let f as Failure { return Self.error(f.status, f.message) }
        }
        router.post("/v1/completions") { req, _ in
            do {
                let o = try await Self.body(req)
                guard let prompt = o["prompt"] as? String else {
                    throw Failure(status: .badRequest, message: "'prompt' must be a string")
                }
                return try await Self.generate(gen, prompt: prompt, sampling: Sampling(o), chat: false)
            } catch let f as Failure { return Self.error(f.status, f.message) }
        }
        router.post("/v1/chat/completions") { req, _ in
            do {
                let o = try await Self.body(req)
                guard let ms = o["messages"] as? [[String: Any]], !ms.isEmpty else {
                    throw Failure(status: .badRequest, message: "'messages' must be a non-empty array")
                }
                var turns: [ChatTurn] = []
                for m in ms {
                    guard let role = m["role"] as? String, let content = m["content"] as? String else {
                        throw Failure(status: .badRequest, message: "each message needs string 'role' and 'content'")
                    }
                    turns.append(ChatTurn(role: role, content: content))
                }
                let prompt: String
                do { prompt = try await gen.chatPrompt(turns) } catch {
                    throw Failure(status: .badRequest, message: "chat template: \(error)")
                }
                return try await Self.generate(gen, prompt: prompt, sampling: Sampling(o), chat: true)
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

    static func generate(_ gen: any CompletionBackend, prompt: String, sampling: Sampling, chat: Bool) async throws -> Response {
        let id = (chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.lowercased().prefix(12)
        let created = Int(Date().timeIntervalSince1970)
        let model = gen.model
        var filled = sampling.request
        filled.prompt = prompt
        let request = filled
        if !sampling.stream {
            let out: CompletionResponse
            do { out = try await gen.complete(request) } catch {
                return Self.error(.internalServerError, failure(error))
            }
            let finish = out.finishReason ?? "stop"
            let choice: [String: Any] = chat
                ? ["index": 0, "message": ["role": "assistant", "content": out.text], "finish_reason": finish]
                : ["index": 0, "text": out.text, "finish_reason": finish, "logprobs": NSNull()]
            return json(["id": id, "object": chat ? "chat.completion" : "text_completion", "created": created,
                         "model": model, "choices": [choice], "usage": usage(out)])
        }
        let (stream, cont) = AsyncStream<ByteBuffer>.makeStream()
        @Sendable func event(_ obj: [String: Any]) -> ByteBuffer {
            let d = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data()
            return ByteBuffer(string: "data: " + String(decoding: d, as: UTF8.self) + "\n\n")
        }
        let object = chat ? "chat.completion.chunk" : "text_completion"
        @Sendable func chunk(_ text: String?, finish: String?) -> [String: Any] {
            let choice: [String: Any] = chat
                ? ["index": 0, "delta": text.map { ["content": $0] } ?? [:], "finish_reason": finish ?? NSNull()]
                : ["index": 0, "text": text ?? "", "finish_reason": finish ?? NSNull(), "logprobs": NSNull()]
            return ["id": id, "object": object, "created": created, "model": model, "choices": [choice]]
        }
        let includeUsage = sampling.includeUsage
        Task {
            if chat { cont.yield(event(["id": id, "object": object, "created": created, "model": model,
                                        "choices": [["index": 0, "delta": ["role": "assistant"], "finish_reason": NSNull()]]])) }
            do {
                let out = try await gen.complete(request) { piece in
                    if !piece.isEmpty { cont.yield(event(chunk(piece, finish: nil))) }
                    return true
                }
                cont.yield(event(chunk(nil, finish: out.finishReason ?? "stop")))
                if includeUsage {
                    cont.yield(event(["id": id, "object": object, "created": created, "model": model, "choices": [], "usage": usage(out)]))
                }
            } catch {
                cont.yield(event(["error": ["message": failure(error), "type": "server_error"]]))
            }
            cont.yield(ByteBuffer(string: "data: [DONE]\n\n"))
            cont.finish()
        }
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
