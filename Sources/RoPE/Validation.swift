/// A rule checked on a RoPE configuration. Rules derive from transformers 5.23
/// (`RotaryEmbeddingConfigMixin._validate_*_rope_parameters`, `_check_received_keys`, `validate_rope`).
/// transformers only logs a warning for most of them; here the ones that would produce wrong or undefined
/// numbers are errors, and the purely advisory ones stay warnings (see ``severity``).
public enum RopeRule: String, Sendable, Hashable, CaseIterable {
    /// `rope_type` is not one this module knows (transformers fails with a `KeyError` at model init).
    case unknownRopeType
    /// A key the rope type needs is absent (transformers: `KeyError` "Missing required keys").
    case missingRequiredKey
    /// A key has the wrong JSON type (e.g. a string where a number is expected).
    case wrongType
    /// `rope_theta` must be a finite number greater than 1.
    case thetaInvalid
    /// `head_dim` (or `hidden_size / num_attention_heads`) must be positive.
    case headDimInvalid
    /// `partial_rotary_factor` must be in (0, 1].
    case partialRotaryFactorOutOfRange
    /// The rotary dimension `int(head_dim × partial_rotary_factor)` must be even and non-zero
    /// (transformers raises `ValueError` for an odd fully-rotated head).
    case rotaryDimInvalid
    /// `factor` must be a finite number ≥ 1 (transformers warns "must be a float or int >= 1").
    case factorBelowOne
    /// `attention_factor` must be a finite number ≥ 0.
    case attentionFactorNegative
    /// `beta_fast` / `beta_slow` must be finite and non-negative (0 means the default, as in Python's `or`).
    case betaInvalid
    /// `(beta_fast or 32)` must not be smaller than `(beta_slow or 1)`.
    case betaFastBelowBetaSlow
    /// `mscale` / `mscale_all_dim` must be finite.
    case mscaleInvalid
    /// Only `mscale_all_dim` is set: transformers uses `0.1·ln s + 1`, llama.cpp and vLLM use
    /// `1 / (0.1·mscale_all_dim·ln s + 1)` — the engines disagree (warning).
    case mscaleWithoutMscaleAllDim
    /// `original_max_position_embeddings` must be positive.
    case originalMaxPositionInvalid
    /// `max_position_embeddings` must be positive.
    case maxPositionInvalid
    /// YaRN `factor` differs from `max_position_embeddings / original_max_position_embeddings`
    /// (and that ratio is not 1); transformers warns and uses the explicit factor (warning).
    case yarnFactorMismatch
    /// llama3 needs `0 < low_freq_factor < high_freq_factor` (transformers would divide by ≤ 0).
    case llama3FrequencyFactorOrder
    /// llama3 `original_max_position_embeddings` should be below `max_position_embeddings` (warning).
    case llama3OriginalNotBelowMax
    /// longrope `short_factor` / `long_factor` must have exactly `rotary_dim / 2` entries.
    case longropeListLength
    /// longrope list entries are divisors and must be finite and positive.
    case longropeListValue
    /// longrope without `factor`: it is derived as `max_position_embeddings / original_max_position_embeddings`
    /// (transformers recommends setting it; warning).
    case longropeFactorMissing
    /// A key in the rope dict that the rope type does not use (transformers: "Unrecognized keys"; warning).
    case unrecognizedKey
    /// `rope_theta` absent: transformers' default 10000 is assumed (per-model defaults differ; warning).
    case thetaMissing
    /// The JSON is not a `config.json` object, or `rope_parameters` is nested by layer type and the
    /// requested layer type is not there.
    case malformedConfig

    /// Whether a violation stops the computation.
    public var severity: RopeIssue.Severity {
        switch self {
        case .mscaleWithoutMscaleAllDim, .yarnFactorMismatch, .llama3OriginalNotBelowMax,
             .longropeFactorMissing, .unrecognizedKey, .thetaMissing:
            return .warning
        default:
            return .error
        }
    }
}

/// One finding about a configuration: which rule, which field (as spelled in `config.json`), and why.
public struct RopeIssue: Sendable, Hashable, CustomStringConvertible {
    public enum Severity: String, Sendable, Hashable {
        case error, warning
    }

    public var rule: RopeRule
    /// The config key, e.g. `factor`, `rope_scaling.beta_fast`, `max_position_embeddings`.
    public var field: String
    public var message: String
    public var severity: RopeIssue.Severity { rule.severity }

    public init(_ rule: RopeRule, field: String, _ message: String) {
        self.rule = rule
        self.field = field
        self.message = message
    }

    public var description: String { "\(severity.rawValue): \(field): \(message)" }
}

/// Errors thrown by this module.
public enum RopeError: Error, Equatable, CustomStringConvertible {
    /// The configuration violates at least one error-severity ``RopeRule``.
    case invalidConfiguration([RopeIssue])
    /// A function argument is out of range (e.g. a planning target shorter than the trained length).
    case invalidArgument(name: String, message: String)

    public var description: String {
        switch self {
        case .invalidConfiguration(let issues):
            let errors = issues.filter { $0.severity == .error }
            let listed = errors.isEmpty ? issues : errors
            return "invalid RoPE configuration: " + listed.map { "\($0.field): \($0.message)" }.joined(separator: "; ")
        case .invalidArgument(let name, let message):
            return "invalid argument \(name): \(message)"
        }
    }

    /// The issues carried by ``invalidConfiguration(_:)`` (empty otherwise).
    public var issues: [RopeIssue] {
        if case .invalidConfiguration(let issues) = self { return issues }
        return []
    }
}

extension RopeConfiguration {
    /// All findings (errors and warnings) for this configuration, in a stable order.
    /// `fieldPrefix` is prepended to rope-dict keys in the report (e.g. `"rope_parameters."`).
    public func diagnostics(fieldPrefix: String = "") -> [RopeIssue] {
        var issues: [RopeIssue] = []
        func add(_ rule: RopeRule, _ key: String, _ message: String, topLevel: Bool = false) {
            issues.append(RopeIssue(rule, field: topLevel ? key : fieldPrefix + key, message))
        }
        func require<T>(_ value: T?, _ key: String) {
            if value == nil {
                add(.missingRequiredKey, key, "required for rope_type '\(ropeType.rawValue)' but missing")
            }
        }

        // Geometry.
        if !(theta.isFinite && theta > 1) {
            add(.thetaInvalid, "rope_theta", "must be a finite number greater than 1, got \(theta)")
        }
        if headDim <= 0 {
            add(.headDimInvalid, "head_dim", "must be positive, got \(headDim)", topLevel: true)
        }
        if !(partialRotaryFactor.isFinite && partialRotaryFactor > 0 && partialRotaryFactor <= 1) {
            add(.partialRotaryFactorOutOfRange, "partial_rotary_factor",
                "must be in (0, 1], got \(partialRotaryFactor)")
        } else if headDim > 0 {
            let d = rotaryDim
            if d == 0 || d % 2 != 0 {
                add(.rotaryDimInvalid, "partial_rotary_factor",
                    "rotary dimension int(head_dim \(headDim) × partial_rotary_factor \(partialRotaryFactor)) = \(d) must be even and non-zero")
            }
        }
        if let maxPos = maxPositionEmbeddings, maxPos <= 0 {
            add(.maxPositionInvalid, "max_position_embeddings", "must be positive, got \(maxPos)", topLevel: true)
        }

        // Shared scaling fields.
        let usesFactor: Set<RopeType> = [.linear, .ntk, .dynamic, .yarn, .llama3, .longrope]
        if usesFactor.contains(ropeType), let factor {
            if !(factor.isFinite && factor >= 1) {
                add(.factorBelowOne, "factor", "must be a finite number >= 1, got \(factor)")
            }
        }
        if [.yarn, .llama3, .longrope].contains(ropeType), let original = originalMaxPositionEmbeddings,
           original <= 0 {
            add(.originalMaxPositionInvalid, "original_max_position_embeddings", "must be positive, got \(original)")
        }
        if [.yarn, .longrope].contains(ropeType), let attentionFactor,
           !(attentionFactor.isFinite && attentionFactor >= 0) {
            add(.attentionFactorNegative, "attention_factor", "must be a finite number >= 0, got \(attentionFactor)")
        }

        switch ropeType {
        case .default:
            break
        case .linear, .ntk:
            require(factor, "factor")
        case .dynamic:
            require(factor, "factor")
            if maxPositionEmbeddings == nil {
                add(.missingRequiredKey, "max_position_embeddings",
                    "dynamic NTK uses it as the original context length but it is missing", topLevel: true)
            }
        case .yarn:
            require(factor, "factor")
            require(originalMaxPositionEmbeddings, "original_max_position_embeddings")
            for (key, value) in [("beta_fast", betaFast), ("beta_slow", betaSlow)] {
                if let value, !(value.isFinite && value >= 0) {
                    add(.betaInvalid, key, "must be a finite number >= 0, got \(value)")
                }
            }
            let fast = RoPE.pythonOr(betaFast, 32), slow = RoPE.pythonOr(betaSlow, 1)
            if fast < slow {
                add(.betaFastBelowBetaSlow, "beta_fast",
                    "must not be smaller than beta_slow, got beta_fast=\(fast) and beta_slow=\(slow)")
            }
            for (key, value) in [("mscale", mscale), ("mscale_all_dim", mscaleAllDim)] {
                if let value, !value.isFinite {
                    add(.mscaleInvalid, key, "must be finite, got \(value)")
                }
            }
            if RoPE.pythonOr(mscaleAllDim, 0) != 0, RoPE.pythonOr(mscale, 0) == 0, attentionFactor == nil {
                add(.mscaleWithoutMscaleAllDim, "mscale",
                    "only mscale_all_dim is set: transformers uses 0.1*ln(factor)+1, llama.cpp/vLLM use 1/(0.1*mscale_all_dim*ln(factor)+1)")
            }
            if let factor, let original = originalMaxPositionEmbeddings, original > 0,
               let maxPos = maxPositionEmbeddings {
                let implicit = Double(maxPos) / Double(original)
                if implicit != factor && implicit != 1 {
                    add(.yarnFactorMismatch, "factor",
                        "factor \(factor) differs from max_position_embeddings / original_max_position_embeddings = \(implicit); the explicit factor is used")
                }
            }
        case .llama3:
            require(factor, "factor")
            require(originalMaxPositionEmbeddings, "original_max_position_embeddings")
            require(lowFreqFactor, "low_freq_factor")
            require(highFreqFactor, "high_freq_factor")
            if let low = lowFreqFactor, let high = highFreqFactor {
                if !(low.isFinite && high.isFinite && low > 0 && high > low) {
                    add(.llama3FrequencyFactorOrder, "high_freq_factor",
                        "need 0 < low_freq_factor < high_freq_factor, got low_freq_factor=\(low) and high_freq_factor=\(high)")
                }
            }
            if let original = originalMaxPositionEmbeddings, let maxPos = maxPositionEmbeddings, original >= maxPos {
                add(.llama3OriginalNotBelowMax, "original_max_position_embeddings",
                    "\(original) is not below max_position_embeddings \(maxPos)")
            }
        case .longrope:
            require(shortFactor, "short_factor")
            require(longFactor, "long_factor")
            require(originalMaxPositionEmbeddings, "original_max_position_embeddings")
            let half = rotaryDim / 2
            for (key, list) in [("short_factor", shortFactor), ("long_factor", longFactor)] {
                guard let list else { continue }
                if list.count != half {
                    add(.longropeListLength, key, "must have rotary_dim/2 = \(half) entries, got \(list.count)")
                }
                if let bad = list.firstIndex(where: { !($0.isFinite && $0 > 0) }) {
                    add(.longropeListValue, key, "entry \(bad) must be a finite positive divisor, got \(list[bad])")
                }
            }
            if factor == nil {
                if maxPositionEmbeddings == nil {
                    add(.missingRequiredKey, "max_position_embeddings",
                        "longrope without factor derives it from max_position_embeddings, which is missing",
                        topLevel: true)
                } else {
                    add(.longropeFactorMissing, "factor",
                        "not set; using max_position_embeddings / original_max_position_embeddings")
                }
            }
        }
        return issues
    }

    /// Throws ``RopeError/invalidConfiguration(_:)`` with every error-severity finding, if any.
    public func validate(fieldPrefix: String = "") throws {
        let issues = diagnostics(fieldPrefix: fieldPrefix)
        if issues.contains(where: { $0.severity == .error }) {
            throw RopeError.invalidConfiguration(issues)
        }
    }
}

extension RoPE {
    /// Python's `value or fallback` for an optional number: `nil` and `0` both select the fallback.
    @inlinable
    public static func pythonOr(_ value: Double?, _ fallback: Double) -> Double {
        if let value, value != 0 { return value }
        return fallback
    }
}
