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

    func validate(path: String) throws {
        for name in order {
            guard let t = tasks[name] else { throw EvalError("\(path): order lists unknown task '\(name)'") }
            guard families[t.family] != nil else {
                throw EvalError("\(path): task '\(name)' has unknown family '\(t.family)'")
            }
        }
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
