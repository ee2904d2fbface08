import AsyncHTTPClient
import Foundation
import Hummingbird
import NIOCore
import Testing
import TestSupport
@testable import EvalBackends
@testable import Evaluation
@testable import Serving

/// A deterministic stand-in model for transport tests: one "token" per character, answering with the number
/// that follows "pass key is " (the retrieval a perfect model would do). `failures` first calls throw;
/// `delay` seconds are slept per call.
actor ScriptedBackend: CompletionBackend {
    nonisolated let model = "scripted"
    nonisolated var name: String { "local:scripted" }
    var failures: Int
    let delay: Double
    var calls = 0
    init(failures: Int = 0, delay: Double = 0) { self.failures = failures; self.delay = delay }

    struct Broken: Error, CustomStringConvertible { var description: String { "scripted failure" } }

    func tokenize(_ text: String) -> [Int] { [0] + text.unicodeScalars.map { Int($0.value) } }
    func chatPrompt(_ messages: [ChatTurn]) throws -> String {
        messages.map { "<\($0.role)>\($0.content)</\($0.role)>" }.joined() + "<assistant>"
    }
    func complete(_ request: CompletionRequest, onText: @Sendable (String) -> Bool) throws -> CompletionResponse {
        calls += 1
        if delay > 0 { Thread.sleep(forTimeInterval: delay) }
        if failures > 0 { failures -= 1; throw Broken() }
        let prompt = request.prompt
        var answer = " I do not know."
        if let r = prompt.range(of: "pass key is ", options: .backwards, range: prompt.startIndex..<prompt.index(prompt.endIndex, offsetBy: -40, limitedBy: prompt.startIndex)!) {
            answer = " " + prompt[r.upperBound...].prefix { $0.isNumber } + "."
        }
        var count = 0
        var text = ""
        for ch in answer.prefix(request.maxTokens) {
            count += 1
            text.append(ch)
            if !onText(String(ch)) { break }
        }
        return CompletionResponse(text: text, promptTokens: tokenize(prompt).count, completionTokens: count,
                                  finishReason: count >= request.maxTokens ? "length" : "stop")
    }
}

/// A task executor on its own threads. The in-process servers of these tests and the clients talking to them run on
/// it rather than on Swift's cooperative pool, which has one thread per core: on a 2-core machine two other suites'
/// blocking work (subprocess waits, BLAS) holds the whole pool for minutes, and a server on it answers nothing
/// meanwhile (seen: `GET /v1/models` timing out while the full suite ran).
final class DedicatedThreadsExecutor: TaskExecutor, @unchecked Sendable {
    static let shared = DedicatedThreadsExecutor(threads: 4)

    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    init(threads: Int) {
        for i in 0..<threads {
            let thread = Thread { [self] in self.work() }
            thread.name = "test-server-\(i)"
            thread.start()
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func work() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// Starts a server on 127.0.0.1 with a free port, runs `body`, and always stops the server; both on
/// ``DedicatedThreadsExecutor``.
func withServer<T: Sendable, C: RequestContext>(_ router: Router<C>, _ body: @Sendable (String) async throws -> T) async throws -> T
where C.Source == ApplicationRequestContextSource {
    let (ports, cont) = AsyncStream<Int>.makeStream()
    let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                          onServerRunning: { ch in cont.yield(ch.localAddress?.port ?? 0) })
    let executor = DedicatedThreadsExecutor.shared
    let task = Task(executorPreference: executor) { try await app.run() }
    defer { task.cancel() }
    var it = ports.makeAsyncIterator()
    guard let port = await it.next() else { throw EvalError("server did not start") }
    return try await withTaskExecutorPreference(executor) { try await body("http://127.0.0.1:\(port)") }
}

@Suite(.serialized, .timeLimit(.minutes(10))) struct ServerBackendTests {
    static func samples() throws -> [EvalSample] {
        let maker = SampleMaker(counter: WordTokenCounter(), format: .base)
        var out: [EvalSample] = []
        for d in [0.0, 50.0, 100.0] { out += try maker.samples(Passkey.spec(depthPercent: d), length: 300, count: 2, depth: d) }
        return out
    }

    /// Short backoff; a long default timeout, because the in-process server's handlers run on Swift's cooperative
    /// pool, which other suites' blocking work (subprocess waits, BLAS) can hold for minutes on a 2-core machine.
    static func fastOptions(_ endpoint: OpenAIBackend.Endpoint = .completions, attempts: Int = 3, timeout: Double = 600) -> OpenAIBackend.Options {
        var o = OpenAIBackend.Options()
        o.endpoint = endpoint; o.maxAttempts = attempts; o.backoffSeconds = 0.05; o.timeoutSeconds = timeout; o.concurrency = 2
        return o
    }

    @Test func httpAndLocalBackendsGiveTheSameAnswers() async throws {
        let samples = try Self.samples()
        let gen = ScriptedBackend()
        let server = OpenAIServer(backend: gen)
        let dir = TestSupport.scratchDirectory("srv")
        let viaHTTP = try await withServer(server.router()) { url in
            let model = try await OpenAIBackend.firstModel(url: url + "/v1", apiKey: "k", timeoutSeconds: 600)
            #expect(model == "scripted")
            let backend = OpenAIBackend(url: url, model: model, apiKey: "k", options: Self.fastOptions())
            #expect(try await backend.serverTokenize("ab") == [0, 97, 98])
            let store = try ResultStore(path: dir + "/http.jsonl")
            try await EvalRunner.run(samples: samples, backend: backend, store: store, concurrency: 2)
            return store.results
        }
        let local = try ResultStore(path: dir + "/local.jsonl")
        try await EvalRunner.run(samples: samples, backend: gen, store: local)
        let byId = Dictionary(uniqueKeysWithValues: local.results.map { ($0.id, $0) })
        #expect(viaHTTP.count == samples.count)
        for r in viaHTTP {
            #expect(r.status == "ok")
            #expect(r.prediction == byId[r.id]?.prediction)
            #expect(r.score == 1)
            #expect(r.servedPromptTokens == byId[r.id]?.servedPromptTokens)
        }
    }

    /// A reply slower than a minute is waited for, up to the request's own timeout: Foundation's URLSession on Linux
    /// gave up after its session-wide 60 s whatever the request asked for.
    @Test func repliesSlowerThanAMinuteAreWaitedFor() async throws {
        let server = OpenAIServer(backend: ScriptedBackend(delay: 62))
        try await withServer(server.router()) { url in
            let backend = OpenAIBackend(url: url, model: "scripted", apiKey: nil, options: Self.fastOptions(attempts: 1, timeout: 300))
            let started = Date()
            let r = try await backend.complete(CompletionRequest(prompt: "The pass key is 4242. " + String(repeating: "x", count: 60), maxTokens: 8))
            #expect(r.text == " 4242.")
            #expect(Date().timeIntervalSince(started) >= 62)
        }
    }

    @Test func chatEndpointAndStreaming() async throws {
        let server = OpenAIServer(backend: ScriptedBackend())
        try await withServer(server.router()) { url in
            let prompt = "The pass key is 777. Remember it. " + String(repeating: "filler ", count: 10) + "What is the pass key?"
            let chat = OpenAIBackend(url: url, model: "scripted", apiKey: nil, options: Self.fastOptions(.chat))
            let r = try await chat.complete(CompletionRequest(prompt: prompt, maxTokens: 20))
            #expect(r.text == " 777.")
            #expect(r.promptTokens == ("<user>" + prompt + "</user><assistant>").unicodeScalars.count + 1)
            for (path, isChat) in [("/v1/completions", false), ("/v1/chat/completions", true)] {
                var req = HTTPClientRequest(url: url + path)
                req.method = .POST
                req.headers.add(name: "Content-Type", value: "application/json")
                let body: [String: Any] = isChat
                    ? ["model": "scripted", "messages": [["role": "user", "content": prompt]], "max_tokens": 20, "stream": true, "stream_options": ["include_usage": true]]
                    : ["model": "scripted", "prompt": prompt, "max_tokens": 20, "stream": true, "stream_options": ["include_usage": true]]
                req.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
                let resp = try await HTTPClient.shared.execute(req, timeout: .seconds(600))
                #expect(resp.headers.first(name: "content-type") == "text/event-stream")
                let text = String(buffer: try await resp.body.collect(upTo: 1 << 20))
                #expect(text.hasSuffix("data: [DONE]\n\n"))
                var pieces = "", usage: [String: Any]? = nil
                for ev in text.components(separatedBy: "\n\n") where ev.hasPrefix("data: {") {
                    let o = try JSONSerialization.jsonObject(with: Data(ev.dropFirst(6).utf8)) as! [String: Any]
                    if let u = o["usage"] as? [String: Any] { usage = u }
                    for c in o["choices"] as! [[String: Any]] {
                        pieces += isChat ? ((c["delta"] as? [String: Any])?["content"] as? String ?? "") : (c["text"] as? String ?? "")
                    }
                }
                #expect(pieces == " 777.")
                #expect(usage?["completion_tokens"] as? Int == 5)
            }
        }
    }

    @Test func serverErrorsAreRetriedThenSucceed() async throws {
        let server = OpenAIServer(backend: ScriptedBackend(failures: 2))
        try await withServer(server.router()) { url in
            let b = OpenAIBackend(url: url, model: "scripted", apiKey: nil, options: Self.fastOptions(attempts: 3))
            let r = try await b.complete(CompletionRequest(prompt: "The pass key is 12. Remember it." + String(repeating: " x", count: 30), maxTokens: 8))
            #expect(r.attempts == 3)
            #expect(r.text == " 12.")
        }
    }

    @Test func persistentFailuresAreRecordedNotScored() async throws {
        let samples = Array(try Self.samples().prefix(2))
        let server = OpenAIServer(backend: ScriptedBackend(failures: 1000))
        let dir = TestSupport.scratchDirectory("fail")
        try await withServer(server.router()) { url in
            let b = OpenAIBackend(url: url, model: "scripted", apiKey: nil, options: Self.fastOptions(attempts: 3))
            let store = try ResultStore(path: dir + "/r.jsonl")
            try await EvalRunner.run(samples: samples, backend: b, store: store)
            for r in store.results {
                #expect(r.status == "failed")
                #expect(r.score == nil && r.prediction == nil)
                #expect(r.attempts == 3)
                #expect(r.error?.contains("HTTP 500") == true)
                #expect(r.error?.contains("scripted failure") == true)
            }
            let sum = EvalSummary(results: store.results)
            #expect(sum.failed == 2)
            #expect(sum.cells.allSatisfy { $0.score == nil })
        }
    }

    @Test func timeoutsMalformedAndClientErrors() async throws {
        let router = Router()
        router.post("/v1/completions") { req, _ -> Response in
            let body = String(buffer: try await req.body.collect(upTo: 1 << 20))
            if body.contains("slow") { try await Task.sleep(nanoseconds: 2_000_000_000) }
            if body.contains("bad-request") {
                return Response(status: .badRequest, body: .init(byteBuffer: ByteBuffer(string: "{\"error\":\"nope\"}")))
            }
            if body.contains("empty-length") {
                return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "{\"choices\":[{\"text\":\"\",\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":0}}")))
            }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "<html>not json")))
        }
        try await withServer(router) { url in
            let b = OpenAIBackend(url: url, model: "m", apiKey: nil, options: Self.fastOptions(attempts: 2, timeout: 0.3))
            await #expect { _ = try await b.complete(CompletionRequest(prompt: "slow", maxTokens: 4)) } throws: { e in
                let f = e as! BackendFailure
                return f.attempts == 2 && f.message.contains("timeout")
            }
            await #expect { _ = try await b.complete(CompletionRequest(prompt: "x", maxTokens: 4)) } throws: { e in
                let f = e as! BackendFailure
                return f.attempts == 2 && f.message.contains("malformed")
            }
            await #expect { _ = try await b.complete(CompletionRequest(prompt: "empty-length", maxTokens: 4)) } throws: { e in
                (e as! BackendFailure).message.contains("empty completion")
            }
            await #expect { _ = try await b.complete(CompletionRequest(prompt: "bad-request", maxTokens: 4)) } throws: { e in
                let f = e as! BackendFailure
                return f.attempts == 1 && f.message.contains("HTTP 400")
            }
        }
    }
}
