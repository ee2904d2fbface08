import Basics
import Foundation
import RoPE
import Yams

typealias StagesYAMLNode = Yams.Node

/// Strict reading of a stages file's YAML nodes: every error is one line `FILE:LINE: KEY: problem`.
struct StagesYAML {
    let path: String

    static func compose(_ yaml: String, path: String) throws -> Node {
        let node: Node?
        do { node = try Yams.compose(yaml: yaml) } catch let error as YamlError {
            throw TrainingInputError(path, Self.describe(error))
        }
        guard let node else { throw TrainingInputError(path, "empty stages file") }
        return node
    }

    /// One line for a Yams error: `line L column C: problem`.
    static func describe(_ error: YamlError) -> String {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
             .composer(_, let problem, let mark, _):
            return "line \(mark.line) column \(mark.column): invalid YAML: \(problem)"
        case .duplicatedKeysInMapping(let duplicates, _):
            return "invalid YAML: duplicated keys \(duplicates.joined(separator: ", "))"
        default:
            return "invalid YAML: \(String(describing: error).split(separator: "\n").first ?? "")"
        }
    }

    static func stageLabel(_ index: Int, _ name: String?) -> String {
        name.map { "stages[\(index)] (\($0))" } ?? "stages[\(index)]"
    }

    func error(_ node: Node, _ key: String, _ message: String) -> TrainingInputError {
        let line = node.mark.map { ":\($0.line)" } ?? ""
        return TrainingInputError("\(path)\(line)", "\(key): \(message)")
    }

    /// A mapping with only `allowed` keys (each at most once), as key → value.
    func mapping(_ node: Node, _ key: String, allowed: [String]) throws -> [String: Node] {
        guard case .mapping(let mapping) = node else { throw error(node, key, "expected a mapping of keys") }
        var result: [String: Node] = [:]
        for (k, v) in mapping {
            guard let name = k.scalar?.string else { throw error(k, key, "keys must be plain names") }
            let label = key == "top level" ? name : "\(key).\(name)"
            guard allowed.contains(name) else {
                throw error(k, label, "unknown key (allowed: \(allowed.joined(separator: ", ")))")
            }
            guard result[name] == nil else { throw error(k, label, "given twice") }
            result[name] = v
        }
        return result
    }

    func sequence(_ node: Node, _ key: String) throws -> [Node] {
        guard case .sequence(let items) = node else { throw error(node, key, "expected a list") }
        return Array(items)
    }

    func scalar(_ node: Node, _ key: String, _ expected: String) throws -> String {
        guard let scalar = node.scalar, !(scalar.style == .plain && ["", "~", "null", "Null", "NULL"].contains(scalar.string)) else {
            throw error(node, key, "expected \(expected)")
        }
        return scalar.string
    }

    func number(_ node: Node, _ key: String, min: Double? = nil, exclusive: Bool = false, max: Double? = nil) throws -> Double {
        let text = try scalar(node, key, "a number")
        guard let value = Double(text), value.isFinite else { throw error(node, key, "expected a number, got \"\(text)\"") }
        if let min, exclusive ? value <= min : value < min {
            throw error(node, key, "must be \(exclusive ? ">" : ">=") \(RoPE.formatNumber(min)), got \(text)")
        }
        if let max, value > max { throw error(node, key, "must be <= \(RoPE.formatNumber(max)), got \(text)") }
        return value
    }

    func integer(_ node: Node, _ key: String, min: Int) throws -> Int {
        let text = try scalar(node, key, "a whole number")
        guard let value = Int(text) else { throw error(node, key, "expected a whole number, got \"\(text)\"") }
        guard value >= min else { throw error(node, key, "must be >= \(min), got \(value)") }
        return value
    }

    func unsigned(_ node: Node, _ key: String) throws -> UInt64 {
        let text = try scalar(node, key, "a whole number")
        guard let value = UInt64(text) else { throw error(node, key, "expected a whole number >= 0, got \"\(text)\"") }
        return value
    }

    /// A token count such as `16384`, `16K`, `1M` (``RoPE/parseLength(_:)``).
    func length(_ node: Node, _ key: String) throws -> Int {
        let text = try scalar(node, key, "a length like 16384 or 16K")
        guard let value = parseLength(text) else {
            throw error(node, key, "expected a length like 16384, 16K or 1M, got \"\(text)\"")
        }
        return value
    }

    func bool(_ node: Node, _ key: String) throws -> Bool {
        let text = try scalar(node, key, "true or false")
        switch text {
        case "true", "True", "TRUE": return true
        case "false", "False", "FALSE": return false
        default: throw error(node, key, "expected true or false, got \"\(text)\"")
        }
    }

    func choice<T: RawRepresentable & CaseIterable>(_ node: Node, _ key: String, _: T.Type) throws -> T where T.RawValue == String {
        let names = T.allCases.map(\.rawValue)
        let text = try scalar(node, key, "one of \(names.joined(separator: ", "))")
        guard let value = T(rawValue: text) else {
            throw error(node, key, "expected one of \(names.joined(separator: ", ")), got \"\(text)\"")
        }
        return value
    }

    func betas(_ node: Node) throws -> (Double, Double) {
        let items = try sequence(node, "betas")
        guard items.count == 2 else { throw error(node, "betas", "expected two numbers [beta1, beta2]") }
        let b1 = try number(items[0], "betas[0]", min: 0), b2 = try number(items[1], "betas[1]", min: 0)
        guard b1 < 1, b2 < 1 else { throw error(node, "betas", "each beta must be in [0, 1)") }
        return (b1, b2)
    }

    func sampling(_ node: Node) throws -> LengthSampling {
        let map = try mapping(node, "sampling", allowed: ["length_exponent", "short_threshold", "short_weight"])
        var sampling = LengthSampling()
        if let v = map["length_exponent"] { sampling.lengthExponent = try number(v, "sampling.length_exponent", min: 0) }
        if let v = map["short_threshold"] { sampling.shortThreshold = try length(v, "sampling.short_threshold") }
        if let v = map["short_weight"] {
            sampling.shortWeight = try number(v, "sampling.short_weight", min: 0, exclusive: true)
        }
        return sampling
    }

    static let stageKeys = ["name", "seq_len", "rope", "plan", "steps", "tokens", "lr", "schedule", "warmup_steps",
                            "min_lr_ratio", "tokens_per_step", "check", "ring", "layout"]

    func stage(_ node: Node, index: Int) throws -> StageSpec {
        let given = node.mapping?["name"]?.scalar?.string
        let label = Self.stageLabel(index, given)
        let map = try mapping(node, label, allowed: Self.stageKeys)
        let name = try map["name"].map { try scalar($0, label + ".name", "a name") } ?? "stage-\(index + 1)"
        func required(_ key: String) throws -> Node {
            guard let value = map[key] else { throw error(node, "\(label).\(key)", "required key is missing") }
            return value
        }
        let seqLen = try length(required("seq_len"), label + ".seq_len")
        guard seqLen >= 2 else { throw error(node, label + ".seq_len", "must be at least 2") }
        let tokensPerStep = try map["tokens_per_step"].map { try length($0, label + ".tokens_per_step") } ?? seqLen
        guard tokensPerStep % seqLen == 0 else {
            throw error(map["tokens_per_step"]!, label + ".tokens_per_step",
                        "\(tokensPerStep) is not a multiple of seq_len \(seqLen) (whole sequences are accumulated per step)")
        }
        let (steps, budget) = try stepsAndBudget(map, node: node, label: label, tokensPerStep: tokensPerStep)
        let warmup = try map["warmup_steps"].map { try integer($0, label + ".warmup_steps", min: 0) } ?? 0
        guard warmup <= steps else {
            throw error(map["warmup_steps"]!, label + ".warmup_steps", "\(warmup) exceeds the stage's \(steps) steps")
        }
        var spec = StageSpec(
            name: name, index: index, seqLen: seqLen, rope: try rope(map, node: node, label: label),
            steps: steps, tokenBudget: budget,
            lr: try number(required("lr"), label + ".lr", min: 0, exclusive: true),
            schedule: try map["schedule"].map { try choice($0, label + ".schedule", ScheduleKind.self) } ?? .constant,
            warmupSteps: warmup,
            minLRRatio: try map["min_lr_ratio"].map { try number($0, label + ".min_lr_ratio", min: 0, max: 1) } ?? 0,
            tokensPerStep: tokensPerStep,
            check: try map["check"].map { try check($0, label: label + ".check", seqLen: seqLen) })
        spec.ring = try map["ring"].map { try integer($0, label + ".ring", min: 1) }
        if let v = map["layout"] { spec.layout = try choice(v, label + ".layout", SequenceLayoutKind.self) }
        return spec
    }

    func stepsAndBudget(_ map: [String: Node], node: Node, label: String, tokensPerStep: Int) throws -> (Int, Int?) {
        switch (map["steps"], map["tokens"]) {
        case (let steps?, nil):
            return (try integer(steps, label + ".steps", min: 1), nil)
        case (nil, let tokens?):
            let budget = try length(tokens, label + ".tokens")
            return ((budget + tokensPerStep - 1) / tokensPerStep, budget)
        case (_?, let tokens?):
            throw error(tokens, label, "give either steps or tokens, not both")
        case (nil, nil):
            throw error(node, label + ".steps", "required key is missing (give steps or tokens)")
        }
    }

    static let ropeKeys = ["type", "theta", "factor", "original_max_position_embeddings", "attention_factor",
                           "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "truncate", "low_freq_factor",
                           "high_freq_factor"]
    static let planKeys = ["method", "trained_length", "beta_fast", "beta_slow", "attention_factor", "low_freq_factor",
                           "high_freq_factor", "round_theta"]

    func rope(_ map: [String: Node], node: Node, label: String) throws -> StageRopeSpec {
        switch (map["rope"], map["plan"]) {
        case (let rope?, nil): return try explicitRope(rope, label: label + ".rope")
        case (nil, let plan?): return try planRope(plan, label: label + ".plan")
        case (_?, let plan?): throw error(plan, label, "give either rope or plan, not both")
        case (nil, nil): return .keep
        }
    }

    func explicitRope(_ node: Node, label: String) throws -> StageRopeSpec {
        let map = try mapping(node, label, allowed: Self.ropeKeys)
        let type = try map["type"].map { value -> RopeType in
            let text = try scalar(value, label + ".type", "a rope type")
            guard let type = RopeType(configName: text) else {
                throw error(value, label + ".type", "unknown rope type \"\(text)\" (known: \(RopeType.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return type
        }
        let theta = try map["theta"].map { try number($0, label + ".theta", min: 0, exclusive: true) }
        var parameters = JSONObject()
        for key in Self.ropeKeys.dropFirst(2) {
            guard let value = map[key] else { continue }
            switch key {
            case "truncate": parameters[key] = .bool(try bool(value, "\(label).\(key)"))
            case "original_max_position_embeddings":
                parameters[key] = .int(try length(value, "\(label).\(key)"))
            default: parameters[key] = .double(try number(value, "\(label).\(key)"))
            }
        }
        guard type != nil || theta != nil else { throw error(node, label, "give type (with its parameters) and/or theta") }
        if type == nil || type == .default, let first = parameters.keys.first {
            throw error(node, "\(label).\(first)", "scaling parameters need a type other than default")
        }
        return .explicit(type: type, theta: theta, parameters: parameters)
    }

    func planRope(_ node: Node, label: String) throws -> StageRopeSpec {
        let map = try mapping(node, label, allowed: Self.planKeys)
        guard let methodNode = map["method"] else { throw error(node, label + ".method", "required key is missing") }
        let method = try choice(methodNode, label + ".method", RopePlanMethod.self)
        var options = RopePlanOptions()
        options.trainedLength = try map["trained_length"].map { try length($0, label + ".trained_length") }
        options.betaFast = try map["beta_fast"].map { try number($0, label + ".beta_fast", min: 0, exclusive: true) }
        options.betaSlow = try map["beta_slow"].map { try number($0, label + ".beta_slow", min: 0, exclusive: true) }
        options.attentionFactor = try map["attention_factor"].map { try number($0, label + ".attention_factor", min: 0) }
        options.lowFreqFactor = try map["low_freq_factor"].map { try number($0, label + ".low_freq_factor", min: 0, exclusive: true) }
        options.highFreqFactor = try map["high_freq_factor"].map { try number($0, label + ".high_freq_factor", min: 0, exclusive: true) }
        options.roundTheta = try map["round_theta"].map { try bool($0, label + ".round_theta") } ?? true
        return .plan(method: method, options: options)
    }

    static let checkKeys = ["task", "lengths", "samples", "min_accuracy", "max_loss_increase"]

    func check(_ node: Node, label: String, seqLen: Int) throws -> StageCheck {
        let map = try mapping(node, label, allowed: Self.checkKeys)
        let lengths = try map["lengths"].map { value in
            try sequence(value, label + ".lengths").enumerated().map { try length($0.element, "\(label).lengths[\($0.offset)]") }
        } ?? [seqLen]
        guard !lengths.isEmpty else { throw error(node, label + ".lengths", "needs at least one length") }
        return StageCheck(
            task: try map["task"].map { try choice($0, label + ".task", StageCheck.Task.self) } ?? .passkey,
            lengths: lengths,
            samples: try map["samples"].map { try integer($0, label + ".samples", min: 1) } ?? 5,
            minAccuracy: try map["min_accuracy"].map { try number($0, label + ".min_accuracy", min: 0, max: 1) } ?? 1,
            maxLossIncrease: try map["max_loss_increase"].map { try number($0, label + ".max_loss_increase", min: 0) })
    }
}
