import CCurl
import Evaluation
import Foundation

/// An OpenAI-compatible server (vLLM, llama.cpp server, SGLang, TGI, `longctx serve`) as an evaluation backend.
///
/// Sends every sampling field explicitly (servers otherwise apply their own defaults), at most `concurrency`
/// requests at a time, each with a timeout; server errors (5xx, 408, 429), timeouts, connection errors and
/// malformed or empty-with-`length` responses are retried with exponential backoff, then reported as a
/// `BackendFailure` (a failed sample, never a wrong answer). Other 4xx responses fail at once.
public struct OpenAIBackend: CompletionBackend {
    public enum Endpoint: String, Sendable { case completions, chat }

    public struct Options: Sendable {
        public var endpoint: Endpoint = .completions
        public var timeoutSeconds: Double = 600
        public var maxAttempts: Int = 4
        public var backoffSeconds: Double = 1
        public var maxBackoffSeconds: Double = 30
        public var concurrency: Int = 1
        public init() {}
    }

    public let baseURL: String
    public let model: String
    public let apiKey: String?
    public let options: Options
    let limiter: ConcurrencyLimiter

    public var name: String { "openai:\(baseURL)#\(model)" }

    /// `url` may be the server root or end in `/v1`.
    public init(url: String, model: String, apiKey: String?, options: Options = Options()) {
        baseURL = Self.serverRoot(url)
        self.model = model
        self.apiKey = apiKey
        self.options = options
        limiter = ConcurrencyLimiter(max(options.concurrency, 1))
    }

    /// The server root of `url`: trailing slashes and a final `/v1` removed.
    static func serverRoot(_ url: String) -> String {
        var u = url
        while u.hasSuffix("/") { u.removeLast() }
        if u.hasSuffix("/v1") { u.removeLast(3) }
        return u
    }

    /// The first model id listed by `GET /v1/models`.
    public static func firstModel(url: String, apiKey: String?, timeoutSeconds: Double = 30) async throws -> String {
        let u = serverRoot(url)
        let exchange: HTTPExchange
        do {
            exchange = try await HTTPExchange.send(u + "/v1/models", apiKey: apiKey, timeoutSeconds: timeoutSeconds)
        } catch {
            throw EvalError("\(u)/v1/models: request failed: \(error)")
        }
        guard exchange.status == 200,
              let obj = try? JSONSerialization.jsonObject(with: exchange.body) as? [String: Any],
              let data = obj["data"] as? [[String: Any]], let id = data.first?["id"] as? String else {
            throw EvalError("\(u)/v1/models: no model listed (HTTP \(exchange.status))")
        }
        return id
    }

    /// Token ids from the server's `/tokenize`; a `BackendFailure` when it has none.
    public func tokenize(_ text: String) async throws -> [Int] {
        guard let ids = try await serverTokenize(text) else { throw BackendFailure("\(name): no /tokenize endpoint", attempts: 1) }
        return ids
    }

    /// Token ids the server's `/tokenize` (vLLM / `longctx serve` form) gives for `text`, or nil when the
    /// server has no such endpoint.
    public func serverTokenize(_ text: String) async throws -> [Int]? {
        let body = try JSONSerialization.data(withJSONObject: ["model": model, "prompt": text])
        let exchange: HTTPExchange
        do {
            exchange = try await HTTPExchange.send(baseURL + "/tokenize", body: body, apiKey: apiKey,
                                                   timeoutSeconds: max(60, options.timeoutSeconds))
        } catch {
            throw EvalError("\(baseURL)/tokenize: request failed: \(error)")
        }
        guard exchange.status == 200 else { return nil }
        guard let obj = try? JSONSerialization.jsonObject(with: exchange.body) as? [String: Any],
              let tokens = obj["tokens"] as? [Int] else { return nil }
        return tokens
    }

    func body(_ r: CompletionRequest) throws -> Data {
        var b: [String: Any] = ["model": model, "max_tokens": r.maxTokens, "temperature": r.temperature,
                                "top_p": r.topP, "stream": false]
        if r.topK > 0 { b["top_k"] = r.topK }
        if let s = r.seed { b["seed"] = Int(truncatingIfNeeded: s) }
        if !r.stop.isEmpty { b["stop"] = r.stop }
        switch options.endpoint {
        case .completions: b["prompt"] = r.prompt
        case .chat: b["messages"] = [["role": "user", "content": r.prompt]]
        }
        return try JSONSerialization.data(withJSONObject: b)
    }

    enum Attempt: Error, CustomStringConvertible {
        case retryable(String), fatal(String)
        var description: String { switch self { case .retryable(let m), .fatal(let m): m } }
    }

    /// Parses an OpenAI completions/chat response body.
    static func parse(_ data: Data, endpoint: Endpoint) throws -> CompletionResponse {
        guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw Attempt.retryable("malformed response: not a JSON object: \(String(decoding: data.prefix(200), as: UTF8.self))")
        }
        guard let choices = obj["choices"] as? [[String: Any]], let c = choices.first else {
            throw Attempt.retryable("malformed response: no choices")
        }
        let text: String?
        switch endpoint {
        case .completions: text = c["text"] as? String
        case .chat: text = (c["message"] as? [String: Any])?["content"] as? String
        }
        guard let t = text else { throw Attempt.retryable("malformed response: choice has no text") }
        let usage = obj["usage"] as? [String: Any]
        let finish = c["finish_reason"] as? String
        if t.isEmpty && finish == "length" && (usage?["completion_tokens"] as? Int ?? 0) == 0 {
            throw Attempt.retryable("empty completion with finish_reason length (prompt too long for the server?)")
        }
        return CompletionResponse(text: t, promptTokens: usage?["prompt_tokens"] as? Int,
                                  completionTokens: usage?["completion_tokens"] as? Int, finishReason: finish)
    }

    func once(_ payload: Data) async throws -> CompletionResponse {
        let path = options.endpoint == .completions ? "/v1/completions" : "/v1/chat/completions"
        let url = baseURL + path
        let exchange: HTTPExchange
        do {
            // One deadline for the whole exchange, body included: a server that stalls mid-body or drips bytes
            // is given up on too.
            exchange = try await HTTPExchange.send(url, body: payload, apiKey: apiKey, timeoutSeconds: options.timeoutSeconds)
        } catch let a as Attempt {
            throw a
        } catch {
            throw Attempt.retryable("request to \(url) failed: \(error)")
        }
        let code = exchange.status, bytes = exchange.body
        if code == 408 || code == 429 || code >= 500 {
            throw Attempt.retryable("HTTP \(code): \(String(decoding: bytes.prefix(300), as: UTF8.self))")
        }
        if code >= 400 { throw Attempt.fatal("HTTP \(code): \(String(decoding: bytes.prefix(300), as: UTF8.self))") }
        return try Self.parse(bytes, endpoint: options.endpoint)
    }

    /// Not streamed: `onText` receives the whole text once the response is in.
    public func complete(_ r: CompletionRequest, onText: @Sendable (String) -> Bool) async throws -> CompletionResponse {
        let resp = try await completeWithRetries(r)
        _ = onText(resp.text)
        return resp
    }

    func completeWithRetries(_ r: CompletionRequest) async throws -> CompletionResponse {
        let payload = try body(r)
        await limiter.acquire()
        defer { Task { await limiter.release() } }
        var last = ""
        for attempt in 1...max(options.maxAttempts, 1) {
            do {
                var resp = try await once(payload)
                resp.attempts = attempt
                return resp
            } catch Attempt.fatal(let m) {
                throw BackendFailure(m, attempts: attempt)
            } catch Attempt.retryable(let m) {
                last = m
            }
            if attempt < options.maxAttempts {
                let wait = min(options.backoffSeconds * pow(2, Double(attempt - 1)), options.maxBackoffSeconds)
                try await Task.sleep(nanoseconds: UInt64(wait * 1e9))
            }
        }
        throw BackendFailure("\(last) (after \(options.maxAttempts) attempts)", attempts: options.maxAttempts)
    }
}

/// One HTTP request and its whole response, through libcurl's easy interface on a thread of its own (http and https):
/// `POST` with a JSON body when `body` is given, `GET` otherwise; a bearer key when given; the whole exchange, body
/// included, bounded by `timeoutSeconds` (a retryable ``OpenAIBackend/Attempt`` when it runs out); responses over
/// 256 MiB are refused; cancelling the calling task aborts the transfer.
///
/// Not Foundation's URLSession: on Linux it applied its session-wide 60 s limit instead of the request's timeout
/// (every prompt a server took longer than a minute on failed) and spun a core in its event loop while it waited for
/// a reply (13.8 s of system time in a 20 s wait, measured), a core taken from a server on the same machine.
struct HTTPExchange: Sendable {
    var status: Int
    var body: Data

    static let maxBody = 256 << 20
    /// `curl_global_init`, once per process, before the first handle.
    static let curlReady: Bool = curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK

    static func send(_ url: String, body: Data? = nil, apiKey: String?, timeoutSeconds: Double) async throws -> HTTPExchange {
        guard let target = URL(string: url), let scheme = target.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            throw OpenAIBackend.Attempt.fatal("not an http(s) URL: \(url)")
        }
        let transfer = CurlTransfer(url: url, body: body, apiKey: apiKey, timeoutSeconds: timeoutSeconds)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (done: CheckedContinuation<HTTPExchange, Error>) in
                let thread = Thread { done.resume(with: transfer.perform()) }
                thread.name = "longctx-http"
                thread.start()
            }
        } onCancel: {
            transfer.cancel()
        }
    }
}

/// One libcurl transfer: the options, the response body as it arrives, and a cancellation flag the progress callback
/// reads (libcurl calls it about once a second while it waits, and on every chunk).
final class CurlTransfer: @unchecked Sendable {
    let url: String
    let requestBody: Data?
    let apiKey: String?
    let timeoutSeconds: Double
    private let lock = NSLock()
    private var cancelled = false
    private var received = Data()
    private var tooLarge = false

    init(url: String, body: Data?, apiKey: String?, timeoutSeconds: Double) {
        self.url = url
        self.requestBody = body
        self.apiKey = apiKey
        self.timeoutSeconds = timeoutSeconds
    }

    func cancel() { lock.withLock { cancelled = true } }
    var isCancelled: Bool { lock.withLock { cancelled } }

    /// Appends a chunk; false (abort) past ``HTTPExchange/maxBody``.
    func append(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard received.count + bytes.count <= HTTPExchange.maxBody else { tooLarge = true; return false }
        received.append(contentsOf: bytes)
        return true
    }

    /// Runs the transfer on the calling thread (blocking).
    func perform() -> Result<HTTPExchange, Error> {
        guard HTTPExchange.curlReady, let handle = curl_easy_init() else {
            return .failure(OpenAIBackend.Attempt.retryable("libcurl could not start a transfer (\(url))"))
        }
        var headers: UnsafeMutablePointer<curl_slist>? = nil
        defer {
            curl_slist_free_all(headers)
            curl_easy_cleanup(handle)
        }
        let milliseconds = max(1, Int(min(timeoutSeconds, 30 * 86_400) * 1000))
        _ = url.withCString { lc_set_pointer(handle, CURLOPT_URL, $0) }
        _ = lc_set_long(handle, CURLOPT_NOSIGNAL, 1)
        _ = lc_set_long(handle, CURLOPT_TIMEOUT_MS, milliseconds)   // the whole exchange: connect, send, reply
        if let requestBody {
            _ = lc_set_long(handle, CURLOPT_POST, 1)
            _ = lc_set_long(handle, CURLOPT_POSTFIELDSIZE, requestBody.count)
            _ = requestBody.withUnsafeBytes { lc_set_pointer(handle, CURLOPT_COPYPOSTFIELDS, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)) }
            headers = curl_slist_append(headers, "Content-Type: application/json")
            headers = curl_slist_append(headers, "Expect:")   // no 100-continue round trip for large prompts
        }
        if let apiKey { headers = curl_slist_append(headers, "Authorization: Bearer \(apiKey)") }
        if let headers { _ = lc_set_pointer(handle, CURLOPT_HTTPHEADER, headers) }
        let me = Unmanaged.passUnretained(self).toOpaque()
        _ = lc_set_pointer(handle, CURLOPT_WRITEDATA, me)
        _ = lc_set_write(handle) { data, size, count, user in
            let transfer = Unmanaged<CurlTransfer>.fromOpaque(user!).takeUnretainedValue()
            let n = size * count
            return transfer.append(UnsafeRawBufferPointer(start: data, count: n)) ? n : 0
        }
        _ = lc_set_long(handle, CURLOPT_NOPROGRESS, 0)
        _ = lc_set_pointer(handle, CURLOPT_XFERINFODATA, me)
        _ = lc_set_progress(handle) { user, _, _, _, _ in
            Unmanaged<CurlTransfer>.fromOpaque(user!).takeUnretainedValue().isCancelled ? 1 : 0
        }
        let code = curl_easy_perform(handle)
        switch code {
        case CURLE_OK:
            return .success(HTTPExchange(status: lc_response_code(handle), body: received))
        case CURLE_OPERATION_TIMEDOUT:
            return .failure(OpenAIBackend.Attempt.retryable("timeout after \(timeoutSeconds) s (\(url), whole request, body included)"))
        case CURLE_WRITE_ERROR where tooLarge:
            return .failure(OpenAIBackend.Attempt.fatal("response over 256 MiB from \(url)"))
        case CURLE_ABORTED_BY_CALLBACK:
            return .failure(CancellationError())
        default:
            return .failure(OpenAIBackend.Attempt.retryable("\(url): \(String(cString: curl_easy_strerror(code)))"))
        }
    }
}

/// A counting semaphore for async code.
actor ConcurrencyLimiter {
    private var available: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []
    init(_ n: Int) { available = n }
    func acquire() async {
        if available > 0 { available -= 1; return }
        await withCheckedContinuation { waiters.append($0) }
    }
    func release() {
        if waiters.isEmpty { available += 1 } else { waiters.removeFirst().resume() }
    }
}
