import Foundation
import Hummingbird
import NIOCore

/// How many requests one client address may make: a token bucket refilled at `rate` tokens a second that holds at
/// most `burst`. A request takes one token; a request the server refuses as invalid (answered 4xx) takes
/// `refusalCost` more, so a client that keeps sending bad requests is held to a few a second while a client whose
/// requests are good keeps the whole rate (the counting rule of Cloudflare's rate-limiting rules on response codes).
public struct RateLimit: Sendable, Equatable {
    /// Tokens added per second (the sustained request rate).
    public var rate: Double
    /// Tokens the bucket holds at most (the burst a client may send at once after being idle).
    public var burst: Double
    /// Tokens a refused (4xx) request takes on top of its own.
    public var refusalCost: Double
    public init(rate: Double, burst: Double? = nil, refusalCost: Double = 0) {
        self.rate = rate
        self.burst = max(1, burst ?? rate)
        self.refusalCost = refusalCost
    }
}

/// One client's bucket: `tokens` as of time `at` (seconds on a monotonic clock).
struct TokenBucket: Sendable, Equatable {
    var tokens: Double
    var at: Double

    /// The tokens at `now`: refilled at `limit.rate` per second since `at`, capped at `limit.burst`.
    func level(_ limit: RateLimit, now: Double) -> Double {
        min(limit.burst, tokens + max(0, now - at) * limit.rate)
    }

    /// Takes `cost` tokens at `now` if the bucket holds at least one (the level may go negative: a debt the client
    /// pays back by waiting). Returns nil when taken, else the seconds until the bucket holds one token again.
    mutating func take(_ cost: Double, _ limit: RateLimit, now: Double) -> Double? {
        let have = level(limit, now: now)
        guard have >= 1 else { return (1 - have) / limit.rate }
        tokens = have - cost
        at = now
        return nil
    }
}

/// Per-client-address token buckets (thread-safe). A bucket that has refilled is dropped (an idle client is the same
/// as a new one; swept every `burst / rate` seconds, or every 0.1 s while the table is full), so the table holds the
/// clients of the last few seconds. Past `maxClients` addresses a new address is let through unlimited rather than
/// held in memory (failing open: the per-request limits still apply).
public final class ClientRateLimiter: @unchecked Sendable {
    public let limit: RateLimit
    let maxClients: Int
    private let lock = NSLock()
    private var buckets: [String: TokenBucket] = [:]
    private var lastSweep = 0.0
    private let clock: @Sendable () -> Double

    /// `clock`: seconds on a monotonic clock (the tests drive their own).
    public init(_ limit: RateLimit, maxClients: Int = 65_536,
                clock: @escaping @Sendable () -> Double = { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }) {
        self.limit = limit
        self.maxClients = maxClients
        self.clock = clock
    }

    /// Takes one token for `client`. Returns nil when the request may go on, else the seconds until it may retry.
    public func admit(_ client: String) -> Double? {
        charge(client, cost: 1)
    }

    /// Takes `limit.refusalCost` more tokens from `client` for a request that was refused (never refuses).
    public func refused(_ client: String) {
        guard limit.refusalCost > 0 else { return }
        let now = clock()
        lock.withLock {
            guard var b = buckets[client] else { return }
            b.tokens = b.level(limit, now: now) - limit.refusalCost
            b.at = now
            buckets[client] = b
        }
    }

    /// Addresses with a bucket (for tests and /health).
    public var clients: Int { lock.withLock { buckets.count } }

    private func charge(_ client: String, cost: Double) -> Double? {
        let now = clock()
        return lock.withLock {
            sweep(now: now)
            var b = buckets[client] ?? TokenBucket(tokens: limit.burst, at: now)
            if buckets[client] == nil, buckets.count >= maxClients { return nil }
            let wait = b.take(cost, limit, now: now)
            buckets[client] = b
            return wait
        }
    }

    /// Drops refilled buckets, every `burst / rate` seconds or when the table is full (caller holds the lock).
    private func sweep(now: Double) {
        let period = limit.burst / limit.rate
        guard now - lastSweep >= period || (buckets.count >= maxClients && now - lastSweep >= min(period, 0.1)) else { return }
        lastSweep = now
        buckets = buckets.filter { $0.value.level(limit, now: now) < limit.burst }
    }
}

/// What every endpoint but `/health` goes through: the client's rate limit (429 with `Retry-After`, answered from
/// the request head alone) and, for a 4xx answer, the connection closed (`Connection: close`) — a client sending
/// bad requests pays a new connection for each. A refused request also takes `refusalCost` tokens from its client.
struct ClientPolicy: RouterMiddleware {
    typealias Context = ServeContext
    let limiter: ClientRateLimiter?
    /// Unread body bytes an early refusal still reads (and drops) so that its client, if it sends everything
    /// before reading, gets the answer instead of a reset (Go's net/http drains 256 KiB the same way).
    static let drainBytes = 256 << 10

    func handle(_ request: Request, context: ServeContext,
                next: (Request, ServeContext) async throws -> Response) async throws -> Response {
        let client = context.channel.remoteAddress?.ipAddress ?? "unknown"
        if let limiter, let wait = limiter.admit(client) {
            return Self.closing(Self.tooManyRequests(wait: wait, limiter.limit), request, context.channel)
        }
        let response = try await next(request, context)
        guard (400..<500).contains(response.status.code) else { return response }
        limiter?.refused(client)
        return Self.closing(response, request, context.channel)
    }

    /// 429 with `Retry-After` in whole seconds (at least 1, as HTTP's delay-seconds are integers).
    static func tooManyRequests(wait: Double, _ limit: RateLimit) -> Response {
        let seconds = max(1, Int(min(wait, 86_400).rounded(.up)))
        return OpenAIServer.error(.tooManyRequests, "rate limit: \(limit.rate) requests a second per client address (burst \(Int(limit.burst))); retry after \(seconds) s",
                                  headers: [.retryAfter: String(seconds)])
    }

    /// `response` with `Connection: close`, the connection closed by the server once the answer is written
    /// (Hummingbird's connection handler, told to quiesce, closes after the answer in progress) — unless the request
    /// body was left unread and is small enough to drain: a 429 (answered before the body) declaring at most
    /// ``drainBytes``, or a 413 (refused from its `Content-Length`) declaring at most
    /// ``OpenAIRequest/maxBodyBytes``, so that every client is told why its prompt was refused. Those keep their
    /// connection, without `Connection: close`: AsyncHTTPClient fails a request whose answer says `close` while it is
    /// still sending the body, instead of reporting the answer. A body not drained is dropped with the connection
    /// (its client may see a reset instead of the answer).
    static func closing(_ response: Response, _ request: Request, _ channel: any Channel) -> Response {
        var r = response
        let declared = request.headers[.contentLength].flatMap { Int($0) }
        let drain: Bool
        switch response.status.code {
        case 429: drain = declared.map { $0 <= drainBytes } ?? false
        case 413: drain = declared.map { $0 <= OpenAIRequest.maxBodyBytes } ?? false
        default: drain = false  // the handler read the whole body
        }
        if !drain {
            r.headers[.connection] = "close"
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        return r
    }
}
