import Foundation

/// RULER's task configuration, decoded from `eval/ruler.json` (the data file mirrors RULER's
/// `scripts/synthetic.yaml` and `scripts/data/synthetic/constants.py` @ c3f5e3b; see eval/README.md).
public struct RulerConfig: Codable, Sendable {
    public struct Family: Codable, Sendable {
        public var template: String
        public var answerPrefix: String
        public var tokensToGenerate: Int
        public var metric: Metric
        enum CodingKeys: String, CodingKey {
            case template, metric
            case answerPrefix = "answer_prefix"
            case tokensToGenerate = "tokens_to_generate"
        }
    }

    /// Task arguments (RULER's `args` block; unused keys are nil).
    public struct Args: Codable, Sendable {
        public var typeHaystack: String?
        public var typeNeedleK: String?
        public var typeNeedleV: String?
        public var numNeedleK: Int?
        public var numNeedleV: Int?
        public var numNeedleQ: Int?
        public var numChains: Int?
        public var numHops: Int?
        public var freqCw: Int?
        public var freqUcw: Int?
        public var numCw: Int?
        public var alpha: Double?
        public var dataset: String?
        enum CodingKeys: String, CodingKey {
            case alpha, dataset
            case typeHaystack = "type_haystack", typeNeedleK = "type_needle_k", typeNeedleV = "type_needle_v"
            case numNeedleK = "num_needle_k", numNeedleV = "num_needle_v", numNeedleQ = "num_needle_q"
            case numChains = "num_chains", numHops = "num_hops"
            case freqCw = "freq_cw", freqUcw = "freq_ucw", numCw = "num_cw"
        }

        /// Every count in 1…`maxTaskCount` (a zero or negative count would trap, a huge one never finishes), alpha
        /// finite and positive, at most as many queried keys as keys.
        func validate(path: String, task: String) throws {
            let counts: [(String, Int?)] = [("num_needle_k", numNeedleK), ("num_needle_v", numNeedleV), ("num_needle_q", numNeedleQ),
                                             ("num_chains", numChains), ("num_hops", numHops), ("freq_cw", freqCw),
                                             ("freq_ucw", freqUcw), ("num_cw", numCw)]
            for case let (key, v?) in counts where !(1...RulerConfig.maxTaskCount).contains(v) {
                throw EvalError("\(path): task '\(task)': \(key) must be in 1…\(RulerConfig.maxTaskCount), got \(v)")
            }
            if let alpha, !(alpha.isFinite && alpha > 0) {
                throw EvalError("\(path): task '\(task)': alpha must be a finite number > 0, got \(alpha)")
            }
        }
    }

    public struct Task: Codable, Sendable {
        public var family: String
        public var args: Args
    }

    public var source: String
    public var threshold: Double
    public var lengths: [Int]
    public var families: [String: Family]
    /// Task names in suite order.
    public var order: [String]
    public var tasks: [String: Task]

    public static func load(path: String) throws -> RulerConfig {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw EvalError("\(path): cannot read RULER configuration (\(error.localizedDescription))")
        }
        let cfg: RulerConfig
        do { cfg = try JSONDecoder().decode(RulerConfig.self, from: data) } catch {
            throw EvalError("\(path): invalid RULER configuration: \(error)")
        }
        try cfg.validate(path: path)
        return cfg
    }

    /// Largest count a task argument may take (RULER's own suites use at most 8): bounds the work per sample.
    public static let maxTaskCount = 100

    func validate(path: String) throws {
        guard threshold.isFinite, (0...100).contains(threshold) else {
            throw EvalError("\(path): threshold must be a percentage in 0…100, got \(threshold)")
        }
        for l in lengths where l <= 0 || l > EvalOutputs.maxLength {
            throw EvalError("\(path): length \(l) is outside 1…\(EvalOutputs.maxLength)")
        }
        for (name, f) in families.sorted(by: { $0.key < $1.key }) {
            guard f.template.contains("{context}") else {
                throw EvalError("\(path): family '\(name)': template has no {context} placeholder, so no length can be reached")
            }
            guard (1...4096).contains(f.tokensToGenerate) else {
                throw EvalError("\(path): family '\(name)': tokens_to_generate must be in 1…4096, got \(f.tokensToGenerate)")
            }
        }
        for (name, t) in tasks.sorted(by: { $0.key < $1.key }) {
            guard families[t.family] != nil else {
                throw EvalError("\(path): task '\(name)' has unknown family '\(t.family)'")
            }
            try t.args.validate(path: path, task: name)
        }
        for name in order where tasks[name] == nil { throw EvalError("\(path): order lists unknown task '\(name)'") }
    }

    public func family(of task: String) throws -> (Task, Family) {
        guard let t = tasks[task] else {
            throw EvalError("unknown RULER task '\(task)' (known: \(order.joined(separator: ", ")))")
        }
        return (t, families[t.family]!)
    }
}

/// Scoring rule of a task.
public enum Metric: String, Codable, Sendable {
    /// RULER: mean over references of "reference occurs in prediction" (case-insensitive).
    case stringMatchAll = "string_match_all"
    /// RULER: max over references of "reference occurs in prediction" (case-insensitive).
    case stringMatchPart = "string_match_part"
    /// Passkey (landmark attention / YaRN): the first integer in the completion equals the key.
    case passkey = "passkey"
}

public struct EvalError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
