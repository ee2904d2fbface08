import Foundation

/// How to extend the context window.
public enum RopePlanMethod: String, Sendable, Hashable, CaseIterable {
    /// YaRN with `factor = L / L0`, `original_max_position_embeddings = L0`.
    case yarn
    /// Position interpolation with `factor = L / L0`.
    case linear
    /// Static NTK-aware base change `θ' = θ·(L/L0)^(d/(d−2))` (written as plain `rope_theta`).
    case ntk
    /// Llama 3.1 bands with `factor = L / L0`.
    case llama3
    /// θ-only schedule keeping YaRN's critical dimension fixed: `θ' = θ^(ln(L/2π) / ln(L0/2π))`
    /// (Gradient's Llama-3 262K/1M/4M models; Liu et al. 2023), rounded to an integer.
    case theta
}

/// Knobs for a plan; `nil` means the method's default.
public struct RopePlanOptions: Sendable, Hashable {
    /// Trained context length `L0` of the unscaled RoPE. Default: the source config's
    /// `original_max_position_embeddings`, else its `max_position_embeddings`.
    public var trainedLength: Int?
    /// YaRN `beta_fast` (default 32; NVIDIA UltraLong uses 4).
    public var betaFast: Double?
    /// YaRN `beta_slow` (default 1; UltraLong uses 1).
    public var betaSlow: Double?
    /// YaRN explicit `attention_factor` (default: `0.1·ln(factor) + 1`).
    public var attentionFactor: Double?
    /// llama3 `low_freq_factor` (default 1).
    public var lowFreqFactor: Double?
    /// llama3 `high_freq_factor` (default 4).
    public var highFreqFactor: Double?
    /// Round the θ of the `theta` method to the nearest integer (default true, as Gradient's released configs).
    public var roundTheta: Bool

    public init(trainedLength: Int? = nil, betaFast: Double? = nil, betaSlow: Double? = nil,
                attentionFactor: Double? = nil, lowFreqFactor: Double? = nil, highFreqFactor: Double? = nil,
                roundTheta: Bool = true) {
        self.trainedLength = trainedLength
        self.betaFast = betaFast
        self.betaSlow = betaSlow
        self.attentionFactor = attentionFactor
        self.lowFreqFactor = lowFreqFactor
        self.highFreqFactor = highFreqFactor
        self.roundTheta = roundTheta
    }
}

/// What one frequency pair does under a scaling.
public enum RopeRegime: String, Sendable, Hashable, CaseIterable {
    /// Wavelength unchanged (extrapolated as trained).
    case kept
    /// Wavelength stretched by the full factor (or more).
    case interpolated
    /// Stretched by less than the full factor.
    case blended
}

/// One row of the per-dimension table.
public struct RopeDimensionRow: Sendable, Hashable {
    /// Pair index `i` (channels `i, i + d/2` half-split; `2i, 2i+1` interleaved).
    public var pair: Int
    public var originalInvFreq: Float
    public var invFreq: Float
    /// `2π / originalInvFreq`, tokens.
    public var originalWavelength: Double
    /// `2π / invFreq`, tokens.
    public var wavelength: Double
    /// Full turns of this pair within the trained length `L0` under the original RoPE.
    public var rotationsInTrainedLength: Double
    /// Full turns within the target length under the new frequencies.
    public var rotationsInTargetLength: Double
    /// `wavelength / originalWavelength` (how much the pair was slowed down).
    public var scale: Double
    public var regime: RopeRegime
}

/// One stage of a plan.
public struct RopePlanStage: Sendable, Hashable {
    /// Context length this stage reaches.
    public var targetLength: Int
    /// The configuration to write for this stage (transformers-loadable: `ntk` is already a plain θ).
    public var configuration: RopeConfiguration
    /// Frequencies of ``configuration`` at `seq_len = targetLength`.
    public var frequencies: RopeFrequencies
    /// `targetLength / trainedLength`.
    public var ratio: Double
    /// θ before rounding (θ-changing methods), else the unchanged θ.
    public var exactTheta: Double
}

/// A plan to take a model from its trained length to a target length, possibly in stages.
public struct RopePlan: Sendable, Hashable {
    public var method: RopePlanMethod
    /// The configuration the plan started from (as read from the model).
    public var source: RopeConfiguration
    /// The unscaled RoPE (`source` without scaling) every stage is derived from.
    public var base: RopeConfiguration
    public var baseFrequencies: RopeFrequencies
    /// `L0`.
    public var trainedLength: Int
    /// One entry per stage, increasing lengths; the last reaches the target.
    public var stages: [RopePlanStage]
    /// Remarks (e.g. that an existing scaling is replaced).
    public var notes: [String]

    public var final: RopePlanStage { stages[stages.count - 1] }

    /// Per-pair table for a stage (default: the final one).
    public func dimensionTable(stage index: Int? = nil) -> [RopeDimensionRow] {
        let stage = stages[index ?? stages.count - 1]
        return RoPE.dimensionTable(original: baseFrequencies, scaled: stage.frequencies,
                                   trainedLength: trainedLength, targetLength: stage.targetLength,
                                   referenceFactor: stage.ratio)
    }
}

extension RoPE {
    /// θ that keeps YaRN's critical dimension `find_correction_dim(1, d, θ, L)` fixed when the context grows from
    /// `L0` to `L`: `θ' = θ ^ (ln(L/2π) / ln(L0/2π))`, evaluated in Double exactly in this form
    /// (`pow(θ, ln(L/(2π)) / ln(L0/(2π)))`). Rounded to the nearest integer it reproduces Gradient's released
    /// Llama-3 thetas from θ = 500000, L0 = 8192: 283461213 (262144), 3580165449 (1048576), 45218125210 (4194304).
    public static func criticalDimensionTheta(theta: Double, trainedLength: Int, targetLength: Int) -> Double {
        let ratio = Foundation.log(Double(targetLength) / (2 * Double.pi))
            / Foundation.log(Double(trainedLength) / (2 * Double.pi))
        return Foundation.pow(theta, ratio)
    }

    /// Per-pair comparison of two frequency sets: wavelengths, rotations within `L0` (original) and `L` (new), the
    /// stretch `λ/λ0`, and the regime: `kept` when `|λ/λ0 − 1| ≤ 1e-6`, `interpolated` when `λ/λ0 ≥ referenceFactor·(1 − 1e-6)`,
    /// otherwise `blended`.
    public static func dimensionTable(original: RopeFrequencies, scaled: RopeFrequencies, trainedLength: Int,
                                      targetLength: Int, referenceFactor: Double) -> [RopeDimensionRow] {
        let count = Swift.min(original.invFreq.count, scaled.invFreq.count)
        return (0..<count).map { i in
            let inv0 = original.invFreq[i], inv = scaled.invFreq[i]
            let wavelength0 = 2 * Double.pi / Double(inv0)
            let wavelength = 2 * Double.pi / Double(inv)
            let scale = Double(inv0) / Double(inv)
            let regime: RopeRegime
            if abs(scale - 1) <= 1e-6 {
                regime = .kept
            } else if scale >= referenceFactor * (1 - 1e-6) {
                regime = .interpolated
            } else {
                regime = .blended
            }
            return RopeDimensionRow(pair: i, originalInvFreq: inv0, invFreq: inv, originalWavelength: wavelength0,
                                    wavelength: wavelength,
                                    rotationsInTrainedLength: Double(trainedLength) / wavelength0,
                                    rotationsInTargetLength: Double(targetLength) / wavelength,
                                    scale: scale, regime: regime)
        }
    }

    /// Plans `method` from `source` to `targetLength`, through the intermediate `stages` (lengths, increasing; the
    /// target is appended when missing). Every stage is expressed relative to the unscaled RoPE of `source` and
    /// its trained length `L0`: scaling methods use `factor = L_k / L0`, the θ methods recompute θ from the
    /// original θ (the critical-dimension rule is transitive, so stage-by-stage gives the same values).
    ///
    /// Throws ``RopeError/invalidArgument(name:message:)`` when a length does not exceed `L0` or stages are not
    /// increasing, and ``RopeError/invalidConfiguration(_:)`` when a resulting configuration is invalid.
    public static func plan(from source: RopeConfiguration, targetLength: Int, method: RopePlanMethod,
                            stages: [Int] = [], options: RopePlanOptions = RopePlanOptions()) throws -> RopePlan {
        try source.unscaled.validate()
        guard let trained = options.trainedLength ?? source.trainedContextLength else {
            throw RopeError.invalidArgument(name: "trained length",
                                            message: "the config has neither original_max_position_embeddings nor max_position_embeddings; pass it explicitly")
        }
        guard trained > 0 else {
            throw RopeError.invalidArgument(name: "trained length", message: "must be positive, got \(trained)")
        }
        var lengths = stages
        if lengths.last != targetLength { lengths.append(targetLength) }
        for (index, length) in lengths.enumerated() {
            guard length > trained else {
                throw RopeError.invalidArgument(
                    name: index == lengths.count - 1 ? "target" : "stages",
                    message: "\(length) must exceed the trained context length \(trained)")
            }
            if index > 0 && length <= lengths[index - 1] {
                throw RopeError.invalidArgument(
                    name: "stages",
                    message: "must be strictly increasing and end at or below the target, got \(lengths.map(String.init).joined(separator: ", "))")
            }
        }

        var base = source.unscaled
        base.maxPositionEmbeddings = trained
        var notes: [String] = []
        if source.ropeType != .default {
            notes.append("replaces the existing \(source.ropeType.rawValue) scaling; the plan starts from the unscaled RoPE (θ \(formatNumber(source.theta))) trained on \(trained) tokens")
        }

        let planStages: [RopePlanStage] = try lengths.map { length in
            let ratio = Double(length) / Double(trained)
            var config = base
            config.maxPositionEmbeddings = length
            var exactTheta = base.theta
            switch method {
            case .yarn:
                config.ropeType = .yarn
                config.factor = ratio
                config.originalMaxPositionEmbeddings = trained
                config.betaFast = options.betaFast
                config.betaSlow = options.betaSlow
                config.attentionFactor = options.attentionFactor
            case .linear:
                config.ropeType = .linear
                config.factor = ratio
            case .llama3:
                config.ropeType = .llama3
                config.factor = ratio
                config.originalMaxPositionEmbeddings = trained
                config.lowFreqFactor = options.lowFreqFactor ?? 1
                config.highFreqFactor = options.highFreqFactor ?? 4
            case .ntk:
                exactTheta = ntkAwareBase(theta: base.theta, factor: ratio, rotaryDim: base.rotaryDim)
                config.theta = exactTheta
            case .theta:
                exactTheta = criticalDimensionTheta(theta: base.theta, trainedLength: trained, targetLength: length)
                config.theta = options.roundTheta ? exactTheta.rounded(.toNearestOrAwayFromZero) : exactTheta
            }
            try config.validate()
            let frequencies = try config.frequencies(sequenceLength: length)
            return RopePlanStage(targetLength: length, configuration: config, frequencies: frequencies,
                                 ratio: ratio, exactTheta: exactTheta)
        }
        return RopePlan(method: method, source: source, base: base,
                        baseFrequencies: try base.frequencies(), trainedLength: trained,
                        stages: planStages, notes: notes)
    }

    /// Short human form of a number: integers without a fraction, others with up to 6 significant digits.
    public static func formatNumber(_ value: Double) -> String {
        if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
        return String(format: "%.6g", value)
    }
}
