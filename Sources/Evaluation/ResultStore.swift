import Foundation

/// The outcome of one sample: scored, or failed (transport/server error) — never both.
public struct SampleResult: Codable, Sendable, Equatable {
    public var id: String
    public var task: String
    public var length: Int
    public var index: Int
    public var depthPercent: Double?
    public var actualDepthPercent: Double?
    public var promptTokens: Int
    /// Prompt tokens the server reported (`usage.prompt_tokens`), when it did.
    public var servedPromptTokens: Int?
    public var tokensToGenerate: Int
    public var outputs: [String]
    public var prediction: String?
    /// Score in [0, 1]; nil for a failed sample.
    public var score: Double?
    /// "ok" or "failed".
    public var status: String
    public var error: String?
    public var attempts: Int
    public var seconds: Double
    public var haystack: String

    public init(sample: EvalSample, prediction: String?, servedPromptTokens: Int?, error: String?,
                attempts: Int, seconds: Double) {
        id = sample.id; task = sample.task; length = sample.length; index = sample.index
        depthPercent = sample.depthPercent; actualDepthPercent = sample.actualDepthPercent
        promptTokens = sample.promptTokens; self.servedPromptTokens = servedPromptTokens
        tokensToGenerate = sample.tokensToGenerate; outputs = sample.outputs; haystack = sample.haystack
        self.prediction = prediction; self.attempts = attempts; self.seconds = seconds
        if let e = error {
            status = "failed"; self.error = e; score = nil
        } else {
            status = "ok"; self.error = nil
            score = Scoring.score(sample.metric, prediction: prediction ?? "", references: sample.outputs)
        }
    }
}

/// Append-only JSONL of results, one line per finished sample, written as each finishes.
/// Resume: a rerun reads the file and skips ids already scored ("ok"); failed ones are tried again and
/// the last line for an id wins. A torn last line (killed mid-write) is ignored and terminated.
public final class ResultStore: @unchecked Sendable {
    public let path: String
    private let lock = NSLock()
    private var handle: FileHandle
    public private(set) var latest: [String: SampleResult] = [:]
    public private(set) var order: [String] = []

    public init(path: String) throws {
        self.path = path
        let fm = FileManager.default
        if !fm.fileExists(atPath: path) { fm.createFile(atPath: path, contents: nil) }
        let data = (try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data()
        let dec = JSONDecoder()
        for line in data.split(separator: UInt8(ascii: "\n")) {
            guard let r = try? dec.decode(SampleResult.self, from: Data(line)) else { continue }
            if latest[r.id] == nil { order.append(r.id) }
            latest[r.id] = r
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw EvalError("\(path): cannot open for appending") }
        handle = h
        let end = try h.seekToEnd()
        if end > 0 && data.last != UInt8(ascii: "\n") { try h.write(contentsOf: Data("\n".utf8)) }
    }

    deinit { try? handle.close() }

    public func isDone(_ id: String) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return latest[id]?.status == "ok"
    }

    /// Appends one result as a single write of one line, then flushes it to disk.
    public func append(_ r: SampleResult) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var line = try enc.encode(r)
        line.append(UInt8(ascii: "\n"))
        lock.lock(); defer { lock.unlock() }
        try handle.write(contentsOf: line)
        try handle.synchronize()
        if latest[r.id] == nil { order.append(r.id) }
        latest[r.id] = r
    }

    public var results: [SampleResult] {
        lock.lock(); defer { lock.unlock() }
        return order.compactMap { latest[$0] }
    }
}
