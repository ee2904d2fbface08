import Foundation
import Testing
import TestSupport
import Transformer
@testable import EvalBackends
@testable import Evaluation
@testable import Serving

/// Counts the pieces one generation streamed (thread-safe: the engine's thread writes, the test reads).
final class PieceCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    var count: Int { lock.withLock { n } }
    func add() { lock.withLock { n += 1 } }
    func set(_ value: Int) { lock.withLock { n = value } }
}

/// A one-way flag.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

/// Forwards to a backend, counting the pieces streamed; the `holdAt`-th piece of the first request waits (holding
/// the engine's thread) until ``release()``. Records whether a request was cancelled.
final class GatedBackend: CompletionBackend, @unchecked Sendable {
    let inner: any CompletionBackend
    let holdAt: Int
    let pieces = PieceCounter(), cancelled = Flag()
    private let gate = DispatchSemaphore(value: 0)
    init(_ inner: any CompletionBackend, holdAt: Int) { self.inner = inner; self.holdAt = holdAt }
    var name: String { inner.name }
    var model: String { inner.model }
    var contextLength: Int? { inner.contextLength }
    func tokenize(_ text: String) async throws -> [Int] { try await inner.tokenize(text) }
    func release() { gate.signal() }
    func complete(_ request: CompletionRequest, onText: @Sendable (String) -> Bool) async throws -> CompletionResponse {
        try await withTaskCancellationHandler {
            try await inner.complete(request) { piece in
                pieces.add()
                if pieces.count == holdAt { gate.wait() }
                return onText(piece)
            }
        } onCancel: { cancelled.set() }
    }
}

/// Expects `slow` to stop producing within 1.5 s of its client leaving, having produced fewer than 200 tokens.
func expectGenerationStops(_ slow: SlowBackend) async throws {
    try await Task.sleep(nanoseconds: 1_500_000_000)
    let settled = slow.count
    try await Task.sleep(nanoseconds: 1_000_000_000)
    #expect(slow.count == settled, "generation went on after the client left: \(settled) → \(slow.count)")
    #expect(settled < 200, "\(settled) tokens generated for a client that left at once")
}

/// Opens a raw HTTP/1.1 connection to `url` and sends `body` to `path`; returns the socket (close it to disconnect).
func sendRaw(_ url: String, path: String, body: String) throws -> Int32 {
    let port = Int(url.split(separator: ":").last!)!
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    try #require(rc == 0)
    let head = "POST \(path) HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n"
    _ = (head + body).withCString { send(fd, $0, strlen($0), 0) }
    return fd
}

/// Issue 16 leftovers: the engine interleaves requests (a long one does not hold up a short one), a request whose
/// client disconnects stops generating whether it streams or not.
@Suite("serving: scheduling and disconnects", .serialized, .timeLimit(.minutes(10)))
struct SchedulingTests {
    /// A random 2-layer model (context 512) and a prompt whose greedy continuation is long (no end-of-sequence token
    /// in its first `long` tokens), checked by running it once through `LanguageModel.generate`.
    static let fixture: Result<(lm: LanguageModel, long: GenerationResult), any Error> = Result {
        let dir = TestSupport.scratchDirectory("sched")
        let made = try TestSupport.longctx(["init-model", "--out", dir + "/m", "--layers", "2", "--max-position", "512"])
        guard made.status == 0 else { throw EvalError("init-model failed: \(made.stderr)") }
        let lm = try LanguageModel.load(directory: dir + "/m")
        let long = try lm.generate(promptIds: lm.tokenizer.encodePrompt(longPrompt), parameters: GenerationParameters(maxTokens: 300))
        return (lm, long)
    }
    static let longPrompt = String(repeating: "the quick brown fox jumps over the lazy dog ", count: 3)

    /// Steps of several requests interleaved — prompts in chunks of 7 tokens, greedy and seeded sampling — give
    /// exactly the ids and text each gives alone through `LanguageModel.generate` (the path checked against
    /// transformers in the engine's interop tests).
    @Test(arguments: SchedulingPolicy.allCases)
    func interleavedGenerationsMatchOneAtATime(policy: SchedulingPolicy) async throws {
        let (lm, _) = try Self.fixture.get()
        let prompts = ["hello there", Self.longPrompt, "a b c d e f g h i j k l m n o p", "zebra"]
        let params = prompts.indices.map { GenerationParameters(maxTokens: 24 + 5 * $0, temperature: $0 % 2 == 0 ? 0 : 0.9, seed: UInt64($0)) }
        let alone = try prompts.indices.map { try lm.generate(promptIds: lm.tokenizer.encodePrompt(prompts[$0]), parameters: params[$0]) }
        let scheduler = EngineScheduler(lm, maxActive: 4, prefillChunk: 7, policy: policy)
        let together = try await withThrowingTaskGroup(of: (Int, GenerationResult).self) { group in
            for i in prompts.indices {
                group.addTask { (i, try await scheduler.generate(promptIds: lm.tokenizer.encodePrompt(prompts[i]), parameters: params[i]) { _ in true }) }
            }
            var out: [Int: GenerationResult] = [:]
            for try await (i, r) in group { out[i] = r }
            return out
        }
        for i in prompts.indices {
            #expect(together[i]?.generatedIds == alone[i].generatedIds, "prompt \(i)")
            #expect(together[i]?.text == alone[i].text, "prompt \(i)")
            #expect(together[i]?.finishReason == alone[i].finishReason, "prompt \(i)")
        }
    }

    /// Holds the engine's thread (a request whose first piece waits for a semaphore) until a 300-token request and
    /// then a 4-token one are queued; returns how many pieces the long one had streamed when the short one was
    /// answered, and in all.
    static func longPiecesWhenShortIsDone(_ backend: EngineBackend) async throws -> (when: Int, total: Int) {
        let gate = DispatchSemaphore(value: 0), held = PieceCounter(), pieces = PieceCounter()
        let blocker = Task {
            try await backend.complete(CompletionRequest(prompt: longPrompt, maxTokens: 5)) { _ in
                held.add()
                if held.count == 1 { gate.wait() }
                return true
            }
        }
        while held.count == 0 { try await Task.sleep(nanoseconds: 5_000_000) }
        let long = Task { try await backend.complete(CompletionRequest(prompt: longPrompt, maxTokens: 300)) { _ in pieces.add(); return true } }
        while backend.scheduler.pending < 2 { try await Task.sleep(nanoseconds: 5_000_000) }
        // The long one's count is read in the short one's piece callback, on the engine's thread, so a busy
        // cooperative pool (other suites running) cannot delay the reading past the long one's end.
        let whenShortStreamed = PieceCounter()
        let short = Task {
            let r = try await backend.complete(CompletionRequest(prompt: "hello", maxTokens: 4)) { _ in
                whenShortStreamed.set(pieces.count)
                return true
            }
            return (r, whenShortStreamed.count)
        }
        while backend.scheduler.pending < 3 { try await Task.sleep(nanoseconds: 5_000_000) }
        gate.signal()
        let (answer, when) = try await short.value
        #expect(answer.completionTokens ?? 0 > 0)
        _ = try await (blocker.value, long.value)
        return (when, pieces.count)
    }

    /// With requests interleaved, a 4-token request is answered while a 300-token one is still generating; one at a
    /// time in arrival order (`maxActive` 1, round-robin: the former behaviour) it waits for the long one to finish;
    /// one at a time shortest first, it is admitted before the long one.
    @Test func shortRequestIsNotHeldBehindALongOne() async throws {
        let (lm, long) = try Self.fixture.get()
        try #require(long.generatedIds.count == 300, "the fixture's long prompt must generate 300 tokens")
        let interleaved = try await Self.longPiecesWhenShortIsDone(EngineBackend(lm, model: "m", maxActive: 8, prefillChunk: 16))
        #expect(interleaved.when < interleaved.total / 3, "the short request waited for \(interleaved) of the long one's pieces")
        let serial = try await Self.longPiecesWhenShortIsDone(EngineBackend(lm, model: "m", maxActive: 1, policy: .roundRobin))
        #expect(serial.when == serial.total, "one at a time, the short request waits for the long one: \(serial)")
        let shortFirst = try await Self.longPiecesWhenShortIsDone(EngineBackend(lm, model: "m", maxActive: 1))
        #expect(shortFirst.when == 0, "one at a time shortest first, the short request goes first: \(shortFirst)")
    }

    /// Queues seven 300-token generations — the first holding the engine at its first piece — and then a 4-token
    /// request; returns the steps the engine ran from the release until the short request ended, and the short
    /// request's own steps (prompt chunks of 16 + tokens generated).
    static func stepsForShortBesideSevenLong(_ lm: LanguageModel, _ policy: SchedulingPolicy) async throws -> (taken: Int, own: Int) {
        let scheduler = EngineScheduler(lm, maxActive: 8, prefillChunk: 16, policy: policy)
        let ids = lm.tokenizer.encodePrompt(longPrompt), long = GenerationParameters(maxTokens: 300)
        let gate = DispatchSemaphore(value: 0), held = PieceCounter()
        let first = Task {
            try await scheduler.generate(promptIds: ids, parameters: long) { _ in
                held.add()
                if held.count == 1 { gate.wait() }
                return true
            }
        }
        while held.count == 0 { try await Task.sleep(nanoseconds: 5_000_000) }
        let others = (0..<6).map { _ in Task { try await scheduler.generate(promptIds: ids, parameters: long) { _ in true } } }
        while scheduler.pending < 7 { try await Task.sleep(nanoseconds: 5_000_000) }
        let promptIds = lm.tokenizer.encodePrompt("hello")
        let short = EngineScheduler.Job(promptIds: promptIds, parameters: GenerationParameters(maxTokens: 4)) { _ in true }
        let answer = Task { try await scheduler.submit(short) }
        while scheduler.pending < 8 { try await Task.sleep(nanoseconds: 5_000_000) }
        let start = scheduler.steps
        gate.signal()
        let result = try await answer.value
        for t in [first] + others { t.cancel() }
        for t in [first] + others { _ = try? await t.value }  // cancelled before their first step: CancellationError
        #expect(!result.generatedIds.isEmpty)
        return (short.endStep - start, (promptIds.count + 15) / 16 + result.generatedIds.count)
    }

    /// Shortest remaining work first: a 4-token request queued beside seven admitted 300-token generations runs its
    /// own steps with at most one step in ``ShortestWorkFirst/share`` going to another. Round-robin gives it one step
    /// in eight, so it takes about eight times as many.
    @Test func shortRequestRunsFirstBesideSevenLongOnes() async throws {
        let (lm, _) = try Self.fixture.get()
        let shortest = try await Self.stepsForShortBesideSevenLong(lm, .shortestFirst)
        let share = ShortestWorkFirst.share
        #expect(shortest.taken <= shortest.own + (shortest.own + share - 2) / (share - 1), "shortest-first: \(shortest)")
        let roundRobin = try await Self.stepsForShortBesideSevenLong(lm, .roundRobin)
        #expect(roundRobin.taken > 4 * roundRobin.own, "round-robin: \(roundRobin)")
        print("steps until a 4-token request beside 7 long ones ended: shortest-first \(shortest), round-robin \(roundRobin)")
    }

    /// No starvation: a 50-token request beside 5-token requests that keep arriving (one always waiting) still runs
    /// every ``ShortestWorkFirst/share``-th step, so it ends by step 4 × 50; each short request meanwhile ends within
    /// 7 steps (its 5 + at most 2 given to the long one). Admission is shortest first too, with the arrival clock
    /// added: a request is admitted before every request arriving after its key (arrival + work).
    @Test func longRequestsProgressAmongShortOnes() {
        var jobs: [(work: Int, lastRun: Int, long: Bool, arrival: Int)] = [(50, 0, true, 0)]
        var step = 0, longEnded: Int?, slowestShort = 0
        while longEnded == nil && step < 1000 {
            if !jobs.contains(where: { !$0.long }) { jobs.append((5, step, false, step)) }
            step += 1
            guard let i = ShortestWorkFirst.next(jobs.map { ($0.work, $0.lastRun) }, step: step) else { break }
            jobs[i].work -= 1
            jobs[i].lastRun = step
            if jobs[i].work == 0 {
                if jobs[i].long { longEnded = step } else { slowestShort = max(slowestShort, step - jobs[i].arrival) }
                jobs.remove(at: i)
            }
        }
        #expect(longEnded.map { $0 <= ShortestWorkFirst.share * 50 } == true, "the 50-token request ended at step \(longEnded.map(String.init) ?? "never")")
        #expect(slowestShort <= 7, "a short request took \(slowestShort) steps")
        #expect(ShortestWorkFirst.admit([(0, 40), (30, 5)]) == 1, "a shorter request arriving before the key is admitted first")
        #expect(ShortestWorkFirst.admit([(0, 40), (41, 5)]) == 0, "one arriving after it is not")
    }

    /// A non-streamed request whose client disconnects stops generating (the server watches the connection's TCP
    /// state while the response is pending) — and the next request is answered at once, not after the first
    /// request's full generation (one generation at a time here, so it would wait).
    @Test func nonStreamedRequestStopsWhenTheClientDisconnects() async throws {
        let slow = SlowBackend()
        try await withServer(OpenAIServer(backend: slow).router()) { url in
            let fd = try sendRaw(url, path: "/v1/completions", body: #"{"prompt":"go","max_tokens":2000}"#)
            while slow.count == 0 { try await Task.sleep(nanoseconds: 10_000_000) }
            close(fd)
            try await expectGenerationStops(slow)
        }
        let (lm, _) = try Self.fixture.get()
        let gated = GatedBackend(EngineBackend(lm, model: "m", maxActive: 1), holdAt: 5)
        try await withServer(OpenAIServer(backend: gated).router()) { url in
            let body = #"{"prompt":"\#(Self.longPrompt)","max_tokens":300,"temperature":0}"#
            let fd = try sendRaw(url, path: "/v1/completions", body: body)
            while gated.pieces.count < 5 { try await Task.sleep(nanoseconds: 5_000_000) }
            close(fd)
            let closed = Date()
            while !gated.cancelled.isSet && Date().timeIntervalSince(closed) < 10 { try await Task.sleep(nanoseconds: 5_000_000) }
            gated.release()
            #expect(gated.cancelled.isSet, "the request was not cancelled within 10 s of its client's disconnect")
            let start = Date()
            let (code, _) = try await post(url + "/v1/completions", #"{"prompt":"hello","max_tokens":4}"#)
            #expect(code == 200)
            #expect(gated.pieces.count < 20, "\(gated.pieces.count) pieces generated for a client that left after 5")
            print("next request after a disconnect answered in \(Date().timeIntervalSince(start)) s")
        }
    }

    /// A prompt longer than the byte limit (32 per context token by default, or `maxPromptBytes`) is refused with 400
    /// naming the field and the limit, before it is tokenized; a body too long to hold such a prompt (6 bytes per
    /// prompt byte + 1 MiB) is read to its end unparsed and refused with 413 — a 10 MB prompt is answered at once.
    @Test func oversizedPromptsAreRefusedBeforeTokenizing() async throws {
        let big = String(repeating: "word ", count: 2 << 20)
        try await withServer(OpenAIServer(backend: LimitedBackend(context: 200)).router()) { url in
            let start = Date()
            let (code, text) = try await post(url + "/v1/completions", #"{"prompt":"\#(big)","max_tokens":4}"#)
            #expect(code == 413 && text.contains("request body is 10485788 bytes; this server accepts at most 1086976"), "\(text.prefix(300))")
            #expect(Date().timeIntervalSince(start) < 10)
            let chat = #"{"messages":[{"role":"user","content":"\#(big)"}]}"#
            let (chatCode, chatText) = try await post(url + "/v1/chat/completions", chat)
            #expect(chatCode == 413, "\(chatText.prefix(300))")
            // A body within its limit whose prompt is over the prompt limit: refused by the prompt's byte count.
            let (code1, text1) = try await post(url + "/v1/completions", #"{"prompt":"\#(String(repeating: "y", count: 7000))"}"#)
            #expect(code1 == 400 && text1.contains("'prompt' is 7000 bytes") && text1.contains("at most 6400 bytes"), "\(text1.prefix(300))")
            let (code3, text3) = try await post(url + "/v1/chat/completions", #"{"messages":[{"role":"user","content":"\#(String(repeating: "y", count: 7000))"}]}"#)
            #expect(code3 == 400 && text3.contains("'messages' is"), "\(text3.prefix(300))")
            // Within the byte limit but over the context: the token check still answers.
            let (code2, text2) = try await post(url + "/v1/completions", #"{"prompt":"\#(String(repeating: "x", count: 300))","max_tokens":4}"#)
            #expect(code2 == 400 && text2.contains("maximum context length is 200"), "\(text2.prefix(300))")
        }
        try await withServer(OpenAIServer(backend: LimitedBackend(context: 200), limits: .init(maxPromptBytes: 10)).router()) { url in
            let (code, text) = try await post(url + "/v1/completions", #"{"prompt":"eleven char","max_tokens":4}"#)
            #expect(code == 400 && text.contains("at most 10 bytes (--max-prompt-bytes)"), "\(text)")
        }
    }

    /// Cancelling a request waiting for its turn, or one generating, ends it at its next step.
    @Test func cancelledRequestsEndAtTheirNextStep() async throws {
        let (lm, _) = try Self.fixture.get()
        let engine = EngineBackend(lm, model: "m", maxActive: 1)
        let gate = DispatchSemaphore(value: 0), pieces = PieceCounter()
        let running = Task {
            try await engine.complete(CompletionRequest(prompt: Self.longPrompt, maxTokens: 300)) { _ in
                pieces.add()
                if pieces.count == 3 { gate.wait() }
                return true
            }
        }
        while pieces.count < 3 { try await Task.sleep(nanoseconds: 5_000_000) }
        let queued = Task { try await engine.complete(CompletionRequest(prompt: "hello", maxTokens: 300)) }
        while engine.scheduler.pending < 2 { try await Task.sleep(nanoseconds: 5_000_000) }
        queued.cancel()
        running.cancel()
        gate.signal()
        let partial = try await running.value
        #expect((partial.completionTokens ?? 300) < 10, "\(partial.completionTokens ?? -1) tokens after a cancel at the third piece")
        await #expect(throws: BackendFailure.self) { _ = try await queued.value }
        #expect(engine.scheduler.pending == 0)
        #expect(try await engine.complete(CompletionRequest(prompt: "hello", maxTokens: 4)).completionTokens ?? 0 > 0)
    }
}
