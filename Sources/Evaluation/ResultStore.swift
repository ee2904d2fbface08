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

extension SampleResult {
    /// What is inconsistent in a record read back from disk (nil when nothing): a status other than ok/failed,
    /// an ok record without a score in 0…1, a failed one with a score.
    var problem: String? {
        switch status {
        case "ok":
            guard let score else { return "status ok but no score" }
            return score.isFinite && (0...1).contains(score) ? nil : "score \(score) is outside 0…1"
        case "failed":
            return score == nil ? nil : "status failed but a score is recorded"
        default:
            return "status '\(status)' is neither ok nor failed"
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
        let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        for (n, line) in lines.enumerated() where !line.isEmpty {
            guard let r = try? dec.decode(SampleResult.self, from: Data(line)) else {
                // A torn line (a killed run's last write) is not JSON at all: skipped. Complete JSON that is not a
                // result record is a damaged or foreign file.
                if (try? JSONSerialization.jsonObject(with: Data(line))) == nil { continue }
                throw EvalError("\(path): line \(n + 1) is not a valid result record")
            }
            if let problem = r.problem { throw EvalError("\(path): line \(n + 1): \(problem)") }
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

/// What produced a results directory — backend and model identity (path and weights fingerprint), seed, rope
/// configuration, prompt format, task — stored as `run.json` beside `results.jsonl`, so a rerun resumes only the
/// same run and never reports another model's or seed's results as its own.
public enum RunRecord {
    public static let fileName = "run.json"
    /// Files a run writes into its directory (removed by a restart).
    public static let outputs = ["results.jsonl", fileName, "summary.json", "summary.csv", "heatmap.svg", "report.html"]

    /// Opens `directory/results.jsonl` for the run described by `identity`. A directory holding results of a
    /// different run (or results with no record of their run) is refused, naming what differs, unless `restart`,
    /// which removes the previous run's files first.
    public static func open(directory: String, identity: [String: String], restart: Bool) throws -> ResultStore {
        try prepare(directory)
        let fm = FileManager.default
        let record = directory + "/" + fileName, results = directory + "/results.jsonl"
        if restart {
            for f in outputs where fm.fileExists(atPath: directory + "/" + f) {
                do { try fm.removeItem(atPath: directory + "/" + f) } catch {
                    throw EvalError("\(directory)/\(f): cannot remove for --restart (\(error.localizedDescription))")
                }
            }
        }
        if let data = fm.contents(atPath: record) {
            guard let old = try? JSONDecoder().decode([String: String].self, from: data) else {
                throw EvalError("\(record): not a valid run record; rerun with --restart to start over")
            }
            let changed = Set(old.keys).union(identity.keys).sorted().filter { old[$0] != identity[$0] }
            if !changed.isEmpty {
                let what = changed.map { "\($0): was \(old[$0] ?? "(none)"), now \(identity[$0] ?? "(none)")" }
                throw EvalError("\(directory): holds results of a different run (\(what.joined(separator: "; "))); rerun with --restart to discard them, or choose another --out")
            }
        } else {
            if let size = (try? fm.attributesOfItem(atPath: results))?[.size] as? Int, size > 0 {
                throw EvalError("\(results): has results but no \(fileName) saying what produced them; rerun with --restart to discard them, or choose another --out")
            }
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try EvalOutputs.atomic(record, try enc.encode(identity) + Data("\n".utf8))
        }
        return try ResultStore(path: results)
    }

    /// Creates the output directory, refusing an empty path, a file, or a directory that cannot be written.
    static func prepare(_ directory: String) throws {
        guard !directory.isEmpty else { throw EvalError("--out: empty path; name an output directory") }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDir) {
            guard isDir.boolValue else { throw EvalError("--out \(directory): is a file, not a directory") }
        } else {
            do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
                throw EvalError("--out \(directory): cannot create the directory (\(String(cString: strerror(errno))))")
            }
        }
        guard access(directory, W_OK) == 0 else {
            throw EvalError("--out \(directory): the directory is not writable (\(String(cString: strerror(errno))))")
        }
    }
}
