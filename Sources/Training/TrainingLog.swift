import Basics
import Foundation
import ModelIO
import RoPE

/// One optimizer step as logged in `OUT/train.jsonl` (one JSON object per line, keys in snake_case).
public struct TrainingLogRecord: Sendable, Equatable, Codable {
    /// Global step, 1-based, counted across stages.
    public var step: Int
    /// Stage name and 0-based index.
    public var stage: String
    public var stageIndex: Int
    /// Step within the stage, 1-based.
    public var stageStep: Int
    public var seqLen: Int
    /// Token-averaged training loss of the step (nats).
    public var loss: Double
    public var lr: Double
    /// Global gradient norm before clipping.
    public var gradNorm: Double
    /// Tokens trained on so far (all stages).
    public var tokens: Int
    public var tokensPerSecond: Double
    /// Wall time of this step, and since the start of the run (resumed runs continue the count).
    public var seconds: Double
    public var elapsed: Double
    /// With a ring of workers (sequence parallelism): seconds of the step rank 0 spent communicating (waiting for
    /// K/V blocks and dK/dV sums, packing them, the gradient all-reduce) and the rest of the step (computing).
    public var communicationSeconds: Double?
    public var computeSeconds: Double?

    public init(step: Int, stage: String, stageIndex: Int, stageStep: Int, seqLen: Int, loss: Double, lr: Double,
                gradNorm: Double, tokens: Int, tokensPerSecond: Double, seconds: Double, elapsed: Double,
                communicationSeconds: Double? = nil, computeSeconds: Double? = nil) {
        self.communicationSeconds = communicationSeconds
        self.computeSeconds = computeSeconds
        self.step = step
        self.stage = stage
        self.stageIndex = stageIndex
        self.stageStep = stageStep
        self.seqLen = seqLen
        self.loss = loss
        self.lr = lr
        self.gradNorm = gradNorm
        self.tokens = tokens
        self.tokensPerSecond = tokensPerSecond
        self.seconds = seconds
        self.elapsed = elapsed
    }

    enum CodingKeys: String, CodingKey {
        case step, stage, loss, lr, tokens, seconds, elapsed
        case stageIndex = "stage_index", stageStep = "stage_step", seqLen = "seq_len", gradNorm = "grad_norm"
        case tokensPerSecond = "tokens_per_second"
        case communicationSeconds = "communication_seconds", computeSeconds = "compute_seconds"
    }
}

/// The per-step JSONL log, `OUT/train.jsonl`: each ``append(_:)`` writes one line and hands it to the kernel
/// (`write(2)`, no user-space buffer), so a killed run loses at most the step in progress.
public final class TrainingLog {
    public static let fileName = "train.jsonl"
    public let path: String
    let handle: FileHandle
    let encoder: JSONEncoder

    /// Opens `directory/train.jsonl` for appending. With `resumeAfterStep`, records of later steps (written after the
    /// checkpoint that is being resumed) are dropped first, so a resumed run's log has every step exactly once.
    public init(directory: String, resumeAfterStep: Int? = nil) throws {
        path = (directory as NSString).appendingPathComponent(Self.fileName)
        if let step = resumeAfterStep, FileOps.exists(path) {
            let kept = try Self.read(path: path).filter { $0.step <= step }
            let encoder = Self.makeEncoder()
            let lines = try kept.map { String(decoding: try encoder.encode($0), as: UTF8.self) + "\n" }
            try FileOps.writeAtomically(lines.joined(), to: path)
        } else if resumeAfterStep == nil {
            FileOps.remove(path)
        }
        if !FileOps.exists(path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw TrainingInputError(path, "cannot create the training log")
            }
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw TrainingInputError(path, "cannot open the training log for writing")
        }
        handle.seekToEndOfFile()
        self.handle = handle
        encoder = Self.makeEncoder()
    }

    deinit { try? handle.close() }

    static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// Appends one record as a line.
    public func append(_ record: TrainingLogRecord) throws {
        var line = try encoder.encode(record)
        line.append(0x0A)
        do { try handle.write(contentsOf: line) } catch { throw TrainingInputError(path, "cannot write: \(error)") }
    }

    /// All records of a log file; a malformed line fails naming the file and line.
    public static func read(path: String) throws -> [TrainingLogRecord] {
        let data: Data
        do { data = try FileOps.read(path) } catch { throw TrainingInputError(path, "cannot read: \(error)") }
        let decoder = JSONDecoder()
        var records: [TrainingLogRecord] = []
        for (index, line) in data.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            do { records.append(try decoder.decode(TrainingLogRecord.self, from: Data(line))) } catch {
                throw TrainingInputError("\(path):\(index + 1)", "not a training log record")
            }
        }
        return records
    }
}

/// What a person watches on stderr: on a terminal, one progress line redrawn in place
/// (`stage 2/3 16K  step 120/400 [=====>     ] loss 2.314  31.2K tok/s  ETA 12m04s`); otherwise (a pipe or a file)
/// a plain line every `interval` seconds and at each stage's last step.
public final class TrainingProgress {
    let isTerminal: Bool
    let interval: Double
    let stageCount: Int
    var lastPrint = -Double.infinity
    let write: (String) -> Void

    /// `isTerminal` defaults to whether stderr is a TTY; `write` defaults to stderr (injectable for tests).
    public init(stageCount: Int, interval: Double = 30, isTerminal: Bool = isatty(2) == 1,
                write: @escaping (String) -> Void = { FileHandle.standardError.write(Data($0.utf8)) }) {
        self.stageCount = stageCount
        self.interval = interval
        self.isTerminal = isTerminal
        self.write = write
    }

    /// Reports a step; `stageSteps` is the stage's total step count and `remainingSteps` those left in the run
    /// (for the ETA, from the recent step time).
    public func update(_ record: TrainingLogRecord, stageSteps: Int, remainingSteps: Int) {
        let line = Self.line(record, stageCount: stageCount, stageSteps: stageSteps, remainingSteps: remainingSteps,
                             bar: isTerminal)
        let last = record.stageStep == stageSteps
        if isTerminal {
            write("\r\u{1B}[2K" + line + (last ? "\n" : ""))
        } else if last || record.elapsed - lastPrint >= interval {
            lastPrint = record.elapsed
            write(line + "\n")
        }
    }

    static func line(_ r: TrainingLogRecord, stageCount: Int, stageSteps: Int, remainingSteps: Int, bar: Bool) -> String {
        var text = "stage \(r.stageIndex + 1)/\(stageCount) \(r.stage) \(formatLength(r.seqLen))  step \(r.stageStep)/\(stageSteps)"
        if bar {
            let width = 20, filled = stageSteps > 0 ? width * r.stageStep / stageSteps : width
            text += " [" + String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled) + "]"
        }
        text += String(format: "  loss %.4f  lr %.3g  ", r.loss, r.lr) + Self.compact(r.tokensPerSecond) + " tok/s"
        text += "  ETA " + Self.duration(Double(remainingSteps) * r.seconds)
        return text
    }

    /// `950`, `31.2K`, `1.4M`.
    static func compact(_ value: Double) -> String {
        if value >= 1e6 { return String(format: "%.1fM", value / 1e6) }
        if value >= 1e3 { return String(format: "%.1fK", value / 1e3) }
        return String(format: "%.0f", value)
    }

    /// `42s`, `12m04s`, `3h05m`.
    public static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "?" }
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s)s" }
        if s < 3600 { return String(format: "%dm%02ds", s / 60, s % 60) }
        return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60)
    }
}
