import AsyncHTTPClient
import Foundation
import Hummingbird
import NIOCore
import Testing
import TestSupport
@testable import EvalBackends
@testable import Evaluation
@testable import Serving

/// A stand-in model with a context limit (the engine's `max_position_embeddings`): one token per character,
/// answering " ok." after sleeping `delay` seconds.
actor LimitedBackend: CompletionBackend {
    nonisolated let model = "limited"
    nonisolated var name: String { "local:limited" }
    nonisolated let contextLength: Int?
    let delay: Double
    init(context: Int, delay: Double = 0) { contextLength = context; self.delay = delay }
    func tokenize(_ text: String) -> [Int] { [0] + text.unicodeScalars.map { Int($0.value) } }
    func chatPrompt(_ turns: [ChatTurn]) throws -> String { turns.map(\.content).joined(separator: "\n") }
    /// Requests that have entered `complete`; while `held`, each waits there (without blocking a thread).
    var started = 0
    var held = false
    func hold(_ on: Bool) { held = on }

    func complete(_ request: CompletionRequest, onText: @Sendable (String) -> Bool) async throws -> CompletionResponse {
        started += 1
        while held { try await Task.sleep(nanoseconds: 10_000_000) }
        if delay > 0 { try await Task.sleep(nanoseconds: UInt64(delay * 1e9)) }
        var text = ""
        for ch in " ok.".prefix(request.maxTokens) {
            text.append(ch)
            if !onText(String(ch)) { break }
        }
        return CompletionResponse(text: text, promptTokens: request.prompt.unicodeScalars.count + 1, completionTokens: text.count,
                                  finishReason: text.count >= request.maxTokens ? "length" : "stop")
    }
}

/// Emits "x" every 20 ms up to max_tokens, stopping when its task is cancelled (as the engine does), and counts
/// what it produced (to see generation stop).
final class SlowBackend: CompletionBackend, @unchecked Sendable {
    let model = "slow"
    var name: String { "local:slow" }
    let contextLength: Int? = 10_000
    let lock = NSLock()
    var produced = 0
    var count: Int { lock.withLock { produced } }
    func tokenize(_ text: String) -> [Int] { [0] + text.unicodeScalars.map { Int($0.value) } }
    func chatPrompt(_ turns: [ChatTurn]) throws -> String { turns.map(\.content).joined() }
    func complete(_ request: CompletionRequest, onText: @Sendable (String) -> Bool) async throws -> CompletionResponse {
        var n = 0
        while n < request.maxTokens {
            try await Task.sleep(nanoseconds: 20_000_000)
            n += 1
            lock.withLock { produced += 1 }
            if Task.isCancelled || !onText("x") { break }
        }
        return CompletionResponse(text: String(repeating: "x", count: n), promptTokens: 1, completionTokens: n, finishReason: "length")
    }
}

/// POSTs a raw body; returns the status and the body text.
func post(_ url: String, _ body: String) async throws -> (Int, String) {
    var req = HTTPClientRequest(url: url)
    req.method = .POST
    req.headers.add(name: "Content-Type", value: "application/json")
    req.body = .bytes(ByteBuffer(string: body))
    let resp = try await HTTPClient.shared.execute(req, timeout: .seconds(600))
    return (Int(resp.status.code), String(buffer: try await resp.body.collect(upTo: 1 << 20)))
}

/// Issue 16 regressions for evaluation and serving: every reproduction gives a clear error (or the right result).
@Suite("hardening: evaluation and serving", .serialized, .timeLimit(.minutes(10)))
struct HardeningTests {
    // Class 1: unchecked sizes.
    @Test func lengthsAreBoundedAndDistinct() throws {
        #expect(try EvalOutputs.lengths("128,4K,1M") == [128, 4096, 1 << 20])
        for bad in ["9223372036854775807", "10M", "9007199254740993K", "0", "-1", "1K,1K", "1024,1K", ""] {
            #expect(throws: EvalError.self, "\(bad)") { try EvalOutputs.lengths(bad) }
        }
        #expect(throws: EvalError.self) { try EvalOutputs.parseDepths("50,50") }
        #expect((try? EvalOutputs.lengths("1K,1K")) == nil)
    }

    @Test func evalNumericOptionsAreCheckedBeforeAnyWork() throws {
        let out = TestSupport.scratchDirectory("eval-opts") + "/o"
        for (args, needle) in [(["--samples", "-1"], "--samples"), (["--samples", "1000000000"], "--samples"),
                               (["--limit", "0"], "--limit"), (["--timeout", "nan"], "--timeout"),
                               (["--concurrency", "0"], "--concurrency"), (["--lengths", "9223372036854775807"], "--lengths"),
                               (["--lengths", "10M"], "--lengths")] {
            let r = try TestSupport.longctx(["eval", "passkey", "--model", "/nonexistent", "--out", out] + args)
            #expect(r.status != 0, "\(args)")
            #expect(r.stderr.contains(needle), "\(args): \(r.stderr)")
            #expect(!r.stderr.contains("Fatal error"), "\(args): \(r.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test func rulerArgumentsAndTemplatesAreValidated() throws {
        let base = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: TestSupport.repoRoot + "/eval/ruler.json"))) as! [String: Any]
        let dir = TestSupport.scratchDirectory("ruler-cfg")
        func check(_ edit: (inout [String: Any]) -> Void, _ needle: String) throws {
            var cfg = base
            edit(&cfg)
            let path = dir + "/c.json"
            try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: path))
            #expect { _ = try RulerConfig.load(path: path) } throws: { e in
                (e as? EvalError)?.message.contains(needle) == true && (e as? EvalError)?.message.contains(path) == true
            }
        }
        func setArg(_ task: String, _ key: String, _ value: Any) -> (inout [String: Any]) -> Void {
            { cfg in
                var tasks = cfg["tasks"] as! [String: Any]
                var t = tasks[task] as! [String: Any]
                var a = t["args"] as! [String: Any]
                a[key] = value; t["args"] = a; tasks[task] = t; cfg["tasks"] = tasks
            }
        }
        try check(setArg("vt", "num_hops", 0), "num_hops")
        try check(setArg("vt", "num_hops", -1), "num_hops")
        try check(setArg("vt", "num_chains", 0), "num_chains")
        try check(setArg("niah_multivalue", "num_needle_v", 1_000_000), "num_needle_v")
        try check({ cfg in
            var fams = cfg["families"] as! [String: Any]
            var f = fams["niah"] as! [String: Any]
            f["template"] = "no placeholder here"; fams["niah"] = f; cfg["families"] = fams
        }, "{context}")
        #expect(throws: Never.self) { _ = try RulerConfig.load(path: TestSupport.repoRoot + "/eval/ruler.json") }
    }

    // Class 2: bounded work.
    @Test func samplesAreBuiltLazily() throws {
        let maker = SampleMaker(counter: WordTokenCounter(), format: .base)
        let spec = Passkey.spec(depthPercent: 50)
        let start = Date()
        let two = try maker.samples(spec, length: 300, count: 1_000_000_000, depth: 50, limit: 2)
        #expect(two.map(\.index) == [0, 1])
        #expect(Date().timeIntervalSince(start) < 5)
        let odd = try maker.samples(spec, length: 300, count: 6, depth: 50, wanted: { !$0.hasSuffix("0/d50") && !$0.hasSuffix("2/d50") && !$0.hasSuffix("4/d50") })
        #expect(odd.map(\.index) == [1, 3, 5])
        let all = try maker.samples(spec, length: 300, count: 6, depth: 50)
        #expect(odd.map(\.prompt) == [1, 3, 5].map { all[$0].prompt })
        #expect(try maker.samples(spec, length: 300, count: 6, depth: 50, wanted: { _ in false }).isEmpty)
    }

    // Class 3: silent wrong results.
    static func sample(_ i: Int) -> EvalSample {
        EvalSample(id: "t/100/\(i)", task: "t", length: 100, index: i, depthPercent: nil, actualDepthPercent: nil,
                   input: "x", answerPrefix: "", prompt: "x", outputs: ["abc"], metric: .stringMatchAll,
                   tokensToGenerate: 4, promptTokens: 1, units: 0, haystack: "h")
    }

    @Test func resultsOfAnotherRunAreNeverResumed() throws {
        let dir = TestSupport.scratchDirectory("runrec") + "/out"
        let a = ["backend": "engine:/m1", "model fingerprint": "aaa", "seed": "42", "prompt format": "base", "suite": "passkey"]
        do {
            let s = try RunRecord.open(directory: dir, identity: a, restart: false)
            try s.append(SampleResult(sample: Self.sample(0), prediction: "abc", servedPromptTokens: 1, error: nil, attempts: 1, seconds: 0))
        }
        #expect(try RunRecord.open(directory: dir, identity: a, restart: false).isDone("t/100/0"))
        for (key, value) in [("model fingerprint", "bbb"), ("seed", "7"), ("prompt format", "chat-template")] {
            var b = a
            b[key] = value
            #expect { _ = try RunRecord.open(directory: dir, identity: b, restart: false) } throws: { e in
                let m = (e as? EvalError)?.message ?? ""
                return m.contains(key) && m.contains("--restart")
            }
        }
        var c = a
        c["seed"] = "7"
        let fresh = try RunRecord.open(directory: dir, identity: c, restart: true)
        #expect(fresh.results.isEmpty && !fresh.isDone("t/100/0"))
        // A store with results but no record of what made them is refused too.
        let legacy = TestSupport.scratchDirectory("runrec-legacy")
        try Data("{\"x\":1}\n".utf8).write(to: URL(fileURLWithPath: legacy + "/results.jsonl"))
        #expect(throws: EvalError.self) { _ = try RunRecord.open(directory: legacy, identity: a, restart: false) }
    }

    @Test func outOfRangeScoresAndBadOutDirectoriesAreRefused() throws {
        let dir = TestSupport.scratchDirectory("score")
        var r = SampleResult(sample: Self.sample(0), prediction: "abc", servedPromptTokens: 1, error: nil, attempts: 1, seconds: 0)
        r.score = 5
        try (JSONEncoder().encode(r) + Data("\n".utf8)).write(to: URL(fileURLWithPath: dir + "/results.jsonl"))
        #expect { _ = try ResultStore(path: dir + "/results.jsonl") } throws: { e in
            (e as? EvalError)?.message.contains("line 1: score 5.0 is outside 0…1") == true
        }
        let file = dir + "/plain-file"
        FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        #expect { _ = try RunRecord.open(directory: file, identity: [:], restart: false) } throws: { e in
            (e as? EvalError)?.message == "--out \(file): is a file, not a directory"
        }
        #expect { _ = try RunRecord.open(directory: "", identity: [:], restart: false) } throws: { e in
            (e as? EvalError)?.message.contains("empty path") == true
        }
    }

    @Test func serverRefusesWrongTypesAndValuesNamingTheField() async throws {
        let server = OpenAIServer(backend: LimitedBackend(context: 200))
        try await withServer(server.router()) { url in
            let c = url + "/v1/completions"
            let cases: [(String, Int, String)] = [
                (#"{"prompt":"hi","max_tokens":"10"}"#, 400, "'max_tokens' must be an integer"),
                (#"{"prompt":"hi","max_tokens":3.7}"#, 400, "'max_tokens' must be an integer"),
                (#"{"prompt":"hi","max_tokens":-1}"#, 400, "max_tokens"),
                (#"{"prompt":"hi","temperature":"hot"}"#, 400, "'temperature' must be a number"),
                (#"{"prompt":"hi","temperature":-1}"#, 400, "temperature"),
                (#"{"prompt":"hi","n":5}"#, 400, "'n'"),
                (#"{"prompt":"hi","model":"gpt-4"}"#, 404, "gpt-4"),
                (#"{"prompt":"hi","max_tokens":1000000000}"#, 400, "maximum context length is 200"),
                (#"{"prompt":"hi","max_completion_tokens":9223372036854775807,"stream":true}"#, 400, "maximum context length"),
                (#"{"prompt":"\#(String(repeating: "x", count: 300))"}"#, 400, "maximum context length"),
                (#"{"prompt":5}"#, 400, "'prompt' must be a string"),
                (#"[1,2]"#, 400, "JSON object"),
                ("{\"prompt\":\"\u{FFFD}", 400, "JSON"),
            ]
            for (body, status, needle) in cases {
                let (code, text) = try await post(c, body)
                #expect(code == status, "\(body.prefix(80)): \(code) \(text)")
                #expect(text.contains(needle), "\(body.prefix(80)): \(text)")
            }
            let (code, text) = try await post(url + "/v1/chat/completions", #"{"messages":[{"role":"user","content":7}]}"#)
            #expect(code == 400 && text.contains("messages[0].content"), "\(text)")
            // Invalid UTF-8 bytes.
            var req = HTTPClientRequest(url: c)
            req.method = .POST
            req.body = .bytes(ByteBuffer(bytes: Array(#"{"prompt":""#.utf8) + [0xff, 0xfe] + Array(#""}"#.utf8)))
            let resp = try await HTTPClient.shared.execute(req, timeout: .seconds(600))
            #expect(resp.status.code == 400)
            // Still serving after all that.
            let (ok, answer) = try await post(c, #"{"prompt":"hello","max_tokens":8}"#)
            #expect(ok == 200 && answer.contains(" ok."), "\(answer)")
        }
    }

    @Test func fullQueueAnswers503AndDeadlineAnswers504() async throws {
        let gate = LimitedBackend(context: 1000)
        await gate.hold(true)
        let busy = OpenAIServer(backend: gate, limits: .init(maxQueued: 1))
        try await withServer(busy.router()) { url in
            async let first = post(url + "/v1/completions", #"{"prompt":"a","max_tokens":2}"#)
            while await gate.started == 0 { try await Task.sleep(nanoseconds: 10_000_000) }
            let (code, text) = try await post(url + "/v1/completions", #"{"prompt":"b","max_tokens":2}"#)
            #expect(code == 503 && text.contains("busy"), "\(text)")
            await gate.hold(false)
            #expect(try await first.0 == 200)
            // Admission is given back: the next request is served.
            #expect(try await post(url + "/v1/completions", #"{"prompt":"c","max_tokens":2}"#).0 == 200)
        }
        let slow = OpenAIServer(backend: LimitedBackend(context: 1000, delay: 1), limits: .init(requestSeconds: 0.2))
        try await withServer(slow.router()) { url in
            let (code, text) = try await post(url + "/v1/completions", #"{"prompt":"The pass key is 1234567. ?","max_tokens":8}"#)
            #expect(code == 504 && text.contains("deadline"), "\(text)")
        }
    }

    @Test func streamStopsGeneratingWhenTheClientDisconnects() async throws {
        let slow = SlowBackend()
        let server = OpenAIServer(backend: slow)
        try await withServer(server.router()) { url in
            let fd = try sendRaw(url, path: "/v1/completions", body: #"{"prompt":"go","max_tokens":2000,"stream":true}"#)
            var buf = [UInt8](repeating: 0, count: 256)
            _ = recv(fd, &buf, 256, 0)
            close(fd)
            try await expectGenerationStops(slow)
        }
    }

    @Test func clientGivesUpOnAServerThatStallsMidBody() async throws {
        let router = Router()
        router.post("/v1/completions") { _, _ -> Response in
            let (stream, cont) = AsyncStream<ByteBuffer>.makeStream()
            Task {
                cont.yield(ByteBuffer(string: "{\"choices\":"))
                try? await Task.sleep(nanoseconds: 30_000_000_000)
                cont.finish()
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(asyncSequence: stream))
        }
        try await withServer(router) { url in
            var o = OpenAIBackend.Options()
            o.maxAttempts = 1; o.timeoutSeconds = 1
            let b = OpenAIBackend(url: url, model: "m", apiKey: nil, options: o)
            let start = Date()
            await #expect { _ = try await b.complete(CompletionRequest(prompt: "x", maxTokens: 4)) } throws: { e in
                (e as? BackendFailure)?.message.contains("timeout") == true
            }
            #expect(Date().timeIntervalSince(start) < 10)
        }
    }

    @Test func runWhereEverySampleFailedExitsNonZero() async throws {
        let dir = TestSupport.scratchDirectory("allfail")
        let made = try TestSupport.longctx(["init-model", "--out", dir + "/tok", "--layers", "1"])
        try #require(made.status == 0, "\(made.stderr)")
        let router = Router()
        router.post("/v1/completions") { _, _ -> Response in
            Response(status: .badRequest, body: .init(byteBuffer: ByteBuffer(string: "{\"error\":\"refused\"}")))
        }
        try await withServer(router) { url in
            let r = try await TestSupport.longctxOffPool(["eval", "passkey", "--endpoint", url, "--tokenizer", dir + "/tok", "--served-model", "m",
                                             "--lengths", "256", "--depths", "50", "--samples", "2", "--retries", "0", "--out", dir + "/out"])
            #expect(r.status != 0, "\(r.stdout)")
            #expect(r.stderr.contains("every sample failed (2)"), "\(r.stderr)")
            #expect(FileManager.default.fileExists(atPath: dir + "/out/summary.json"))
        }
    }

    // Class 4: messages name what failed.
    @Test func unreachableServerErrorNamesTheURL() async throws {
        await #expect { _ = try await OpenAIBackend.firstModel(url: "http://127.0.0.1:1", apiKey: nil, timeoutSeconds: 5) } throws: { e in
            "\(e)".contains("http://127.0.0.1:1/v1/models")
        }
        var o = OpenAIBackend.Options()
        o.maxAttempts = 1; o.timeoutSeconds = 5
        let b = OpenAIBackend(url: "http://127.0.0.1:1", model: "m", apiKey: nil, options: o)
        await #expect { _ = try await b.complete(CompletionRequest(prompt: "x", maxTokens: 1)) } throws: { e in
            (e as? BackendFailure)?.message.contains("http://127.0.0.1:1/v1/completions") == true
        }
    }

    @Test func outputUnderAFileGivesTheSystemsReason() throws {
        let d = TestSupport.scratchDirectory("outfile")
        FileManager.default.createFile(atPath: d + "/file", contents: Data())
        let r = try TestSupport.longctx(["init-model", "--out", d + "/file/model"])
        #expect(r.status != 0)
        #expect(!r.stderr.contains("NSCocoaErrorDomain") && !r.stderr.contains("could not be completed"), "\(r.stderr)")
        #expect(r.stderr.contains(d + "/file"), "\(r.stderr)")
        let e = try TestSupport.longctx(["eval", "passkey", "--model", "/nonexistent", "--out", ""])
        #expect(e.status != 0 && e.stderr.contains("--out: empty path"), "\(e.stderr)")
    }

    @Test func portOutOfRangeIsRefused() throws {
        let r = try TestSupport.longctx(["serve", "/nonexistent", "--port", "70000"])
        #expect(r.status != 0 && r.stderr.contains("--port must be in 0…65535"), "\(r.stderr)")
    }

    // Class 7: honest skips.
    @Test func interopConditionFollowsTheEnvironment() {
        #expect(TestSupport.interopCanRun(["no_such_module_for_longctx"]) == TestSupport.interopRequired)
    }
}
