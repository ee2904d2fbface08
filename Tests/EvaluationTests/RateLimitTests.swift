import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import TestSupport
@testable import Serving

/// A clock the test moves by hand (seconds).
final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var t = 100.0
    var now: Double { lock.withLock { t } }
    func advance(_ dt: Double) { lock.withLock { t += dt } }
}

/// One HTTP/1.1 exchange on a raw socket bound to a chosen loopback source address, so a test can be several
/// clients at once (loopback accepts every 127.0.0.0/8 address).
struct RawClient {
    let fd: Int32

    /// Connects to 127.0.0.1:`port` from `source`.
    init(port: Int, from source: String) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = inet_addr(source)
        var remote = sockaddr_in()
        remote.sin_family = sa_family_t(AF_INET)
        remote.sin_port = in_port_t(UInt16(port).bigEndian)
        remote.sin_addr.s_addr = inet_addr("127.0.0.1")
        let size = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) } }
        let connected = withUnsafePointer(to: &remote) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, size) } }
        try #require(bound == 0 && connected == 0, "cannot connect from \(source): errno \(errno)")
        // Generous: in a full parallel test run the server's handlers wait for a cooperative thread while other
        // tests' synchronous work holds both (observed: answers after more than 30 s).
        var timeout = timeval(tv_sec: 240, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends a POST to `path` whose head declares `declaredLength` (default: the body's length) and then `body`.
    func post(_ path: String, _ body: String, declaredLength: Int? = nil) {
        let text = "POST \(path) HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(declaredLength ?? body.utf8.count)\r\n\r\n" + body
        _ = text.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    }

    /// Reads one response: status, lower-cased header names → values, body.
    func response() throws -> (status: Int, headers: [String: String], body: String) {
        var data = [UInt8]()
        func more() throws {
            var chunk = [UInt8](repeating: 0, count: 65_536)
            let n = recv(fd, &chunk, chunk.count, 0)
            try #require(n > 0, "connection ended (or timed out) before a whole response: \(String(decoding: data, as: UTF8.self))")
            data += chunk[..<n]
        }
        let end = Array("\r\n\r\n".utf8)
        var headEnd: Int? = nil
        while headEnd == nil {
            try more()
            headEnd = (0...max(0, data.count - 4)).first { data.count >= 4 && Array(data[$0..<$0 + 4]) == end }
        }
        let lines = String(decoding: data[..<headEnd!], as: UTF8.self).components(separatedBy: "\r\n")
        let status = Int(lines[0].split(separator: " ")[1]) ?? 0
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        while data.count < headEnd! + 4 + length { try more() }
        return (status, headers, String(decoding: data[(headEnd! + 4)..<(headEnd! + 4 + length)], as: UTF8.self))
    }

    /// Whether the server closed the connection (end of stream within 30 s; still open: false).
    func closedByServer() -> Bool {
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, 0) == 0
    }

    func close() { _ = Glibc.close(fd) }
}

/// Runs blocking socket work off Swift's cooperative pool (the server under test answers on that pool).
func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { cont in
        Thread.detachNewThread { cont.resume(with: Result { try work() }) }
    }
}

/// Per-client rate limits and the cheap refusal path of `longctx serve` (issue 16: small requests keep their
/// latency beside a flood of bad ones).
@Suite("serving: rate limits and refusals", .serialized, .timeLimit(.minutes(20)))
struct RateLimitTests {
    /// The token bucket against its definition, worked by hand: rate 2/s, burst 3 — three requests at once pass,
    /// the fourth waits (1 − 0) / 2 = 0.5 s; after 0.5 s one more passes; another address has its own bucket.
    @Test func tokenBucketAdmitsBurstThenRate() {
        let clock = ManualClock()
        let limiter = ClientRateLimiter(RateLimit(rate: 2, burst: 3), clock: { clock.now })
        #expect(limiter.admit("a") == nil && limiter.admit("a") == nil && limiter.admit("a") == nil)
        #expect(limiter.admit("a") == 0.5)
        #expect(limiter.admit("b") == nil)
        clock.advance(0.25)
        #expect(limiter.admit("a") == 0.25)  // half a token: (1 − 0.5) / 2
        clock.advance(0.25)
        #expect(limiter.admit("a") == nil)
        #expect(limiter.admit("a") == 0.5)
        // Refilled buckets are forgotten (swept after burst / rate = 1.5 s): the table holds recent clients only.
        clock.advance(10)
        #expect(limiter.admit("c") == nil)
        #expect(limiter.clients == 1)
    }

    /// A refused request costs `refusalCost` more: rate 10/s, burst 10, cost 10 — after one good request (9 left)
    /// and one refusal (9 − 10 = −1 tokens) the next request waits (1 − (−1)) / 10 = 0.2 s.
    @Test func refusalsCostTheirClientMore() {
        let clock = ManualClock()
        let limiter = ClientRateLimiter(RateLimit(rate: 10, burst: 10, refusalCost: 10), clock: { clock.now })
        #expect(limiter.admit("bad") == nil)
        limiter.refused("bad")
        let wait = limiter.admit("bad")
        #expect(wait != nil && abs(wait! - 0.2) < 1e-12, "\(String(describing: wait))")
        clock.advance(0.25)
        #expect(limiter.admit("bad") == nil)
        // Good requests from another client are never charged more.
        for _ in 0..<10 { #expect(limiter.admit("good") == nil) }
    }

    /// Past `maxClients` addresses a new one is let through without being recorded (memory stays bounded).
    @Test func clientTableIsBounded() {
        let clock = ManualClock()
        let limiter = ClientRateLimiter(RateLimit(rate: 1, burst: 1), maxClients: 2, clock: { clock.now })
        #expect(limiter.admit("a") == nil && limiter.admit("b") == nil)
        #expect(limiter.admit("c") == nil && limiter.admit("c") == nil)  // not recorded: not limited
        #expect(limiter.clients == 2)
        #expect(limiter.admit("a") != nil)
    }

    /// Over its limit a client gets 429 with `Retry-After` from the request head alone (a head announcing 1 MB
    /// that never sends it is answered at once) and its connection is closed; another address is served meanwhile.
    @Test func overTheLimitAnswers429WhileAnotherAddressIsServed() async throws {
        // The limiter's clock stands still: under a loaded test run the four requests may be minutes apart, and a
        // refilled token would let the fourth through.
        let clock = ManualClock(), limit = RateLimit(rate: 0.1, burst: 3)
        let server = OpenAIServer(backend: LimitedBackend(context: 200), limits: .init(rateLimit: limit),
                                  limiter: ClientRateLimiter(limit, clock: { clock.now }))
        try await withServer(server.router()) { url in
            let port = Int(url.split(separator: ":").last!)!
            let statuses = try await blocking { () throws -> [Int] in
                try (0..<3).map { _ in
                    let c = try RawClient(port: port, from: "127.0.0.1")
                    defer { c.close() }
                    c.post("/v1/completions", #"{"prompt":"hi","max_tokens":2}"#)
                    return try c.response().status
                }
            }
            #expect(statuses == [200, 200, 200])
            let (refused, closed) = try await blocking {
                let c = try RawClient(port: port, from: "127.0.0.1")
                defer { c.close() }
                c.post("/v1/completions", "", declaredLength: 1_000_000)
                return (try c.response(), c.closedByServer())
            }
            #expect(refused.status == 429, "\(refused)")
            // (1 − tokens) / 0.1 s with no time passed on the limiter's clock: 10 s.
            #expect((1...10).contains(Int(refused.headers["retry-after"] ?? "") ?? 0), "\(refused.headers)")
            #expect(refused.headers["connection"] == "close" && closed, "\(refused.headers)")
            #expect(refused.body.contains("rate limit") && refused.body.contains("\"code\":429"), "\(refused.body)")
            let other = try await blocking {
                let c = try RawClient(port: port, from: "127.0.0.2")
                defer { c.close() }
                c.post("/v1/completions", #"{"prompt":"hi","max_tokens":2}"#)
                return try c.response()
            }
            #expect(other.status == 200 && other.body.contains(" o"), "\(other)")
        }
    }

    /// A malformed request gets its 400 and then its connection closed (the client pays a reconnect); a good one
    /// keeps its connection (keep-alive: a second request on the same socket is answered). A body declared over
    /// the generation limit is refused with 413 before any of it is sent, and that connection is closed too.
    @Test func refusedRequestsCloseTheirConnection() async throws {
        let server = OpenAIServer(backend: LimitedBackend(context: 200))
        try await withServer(server.router()) { url in
            let port = Int(url.split(separator: ":").last!)!
            let (bad, badClosed) = try await blocking {
                let c = try RawClient(port: port, from: "127.0.0.1")
                defer { c.close() }
                c.post("/v1/completions", #"{"prompt":5}"#)
                return (try c.response(), c.closedByServer())
            }
            #expect(bad.status == 400 && bad.body.contains("'prompt' must be a string") && bad.headers["connection"] == "close", "\(bad)")
            #expect(badClosed, "the connection of a malformed request stayed open")
            let (first, second, goodClosed) = try await blocking {
                let c = try RawClient(port: port, from: "127.0.0.1")
                defer { c.close() }
                c.post("/v1/completions", #"{"prompt":"hi","max_tokens":2}"#)
                let first = try c.response()
                c.post("/v1/completions", #"{"prompt":"hi","max_tokens":2}"#)
                return (first, try c.response(), c.closedByServer())
            }
            #expect(first.status == 200 && second.status == 200 && !goodClosed, "\(first) \(second)")
            let (big, bigClosed) = try await blocking {
                let c = try RawClient(port: port, from: "127.0.0.1")
                defer { c.close() }
                c.post("/v1/completions", "", declaredLength: 100_000_000)
                return (try c.response(), c.closedByServer())
            }
            #expect(big.status == 413 && big.body.contains("request body is 100000000 bytes; this server accepts at most"), "\(big)")
            #expect(bigClosed)
        }
    }

    /// `serve`'s rate-limit options are checked before the model is loaded, each error naming its option.
    @Test func rateLimitOptionsAreValidated() throws {
        for (args, needle) in [(["--rate-limit", "0"], "--rate-limit must be a positive number"),
                               (["--rate-limit", "nan"], "--rate-limit must be a positive number"),
                               (["--rate-limit", "5", "--rate-burst", "0.5"], "--rate-burst must be at least 1"),
                               (["--rate-limit", "5", "--refusal-cost=-1"], "--refusal-cost must be 0 or more"),
                               (["--refusal-cost", "5"], "--rate-burst and --refusal-cost need --rate-limit")] {
            let r = try TestSupport.longctx(["serve", "/nonexistent"] + args)
            #expect(r.status != 0 && r.stderr.contains(needle), "\(args): \(r.stderr)")
        }
    }
}
