import Foundation

// Float32 recipe (rope.md §1.4): every tensor op is evaluated in Float32 in the order of the transformers
// source, with Python scalars rounded to Float32 first; `x ** e` is evaluated once in Double from the Float32
// operands and rounded to Float32; `number / tensor` is torch's `reciprocal(tensor) * number`. Python-scalar
// arithmetic (correction dims, attention factors, dynamic base) stays in Double, in Python's order.

/// YaRN's correction range (transformers `find_correction_range`), in pair indices.
public struct YarnRamp: Sendable, Hashable {
    /// `beta_fast` after Python's `or 32`.
    public var betaFast: Double
    /// `beta_slow` after Python's `or 1`.
    public var betaSlow: Double
    /// Unrounded `find_correction_dim(beta_fast, …)`: the fractional pair that turns `beta_fast` times within
    /// the original length.
    public var correctionDimFast: Double
    /// Unrounded `find_correction_dim(beta_slow, …)`.
    public var correctionDimSlow: Double
    /// Ramp start: `max(floor(correctionDimFast), 0)` (no floor when `truncate` is false). Pairs `i ≤ low`
    /// keep their frequency.
    public var low: Double
    /// Ramp end: `min(ceil(correctionDimSlow), d − 1)` (no ceil when `truncate` is false). Pairs `i ≥ high`
    /// are fully interpolated (divided by `factor`).
    public var high: Double
    /// Whether the bounds were snapped to integers.
    public var truncate: Bool
}

/// The llama3 band edges in tokens (`original_max_position_embeddings / {low,high}_freq_factor`).
public struct Llama3Bands: Sendable, Hashable {
    /// Wavelengths above this are divided by `factor`.
    public var lowFreqWavelength: Double
    /// Wavelengths below this are kept.
    public var highFreqWavelength: Double
}

/// Which longrope list produced the frequencies.
public enum LongropeList: String, Sendable, Hashable {
    case short, long
}

/// Result of a rope initialisation: what transformers' `ROPE_INIT_FUNCTIONS[rope_type](config, device, seq_len)`
/// returns, plus the intermediate values that explain it.
public struct RopeFrequencies: Sendable, Hashable {
    public var ropeType: RopeType
    /// Rotary dimension `d`.
    public var rotaryDim: Int
    /// Inverse frequency of each pair, `d/2` Float32 values, pair `i` rotating by `pos × invFreq[i]` radians.
    public var invFreq: [Float]
    /// Magnitude applied to both cos and sin (`attention_scaling`): logits scale by its square.
    public var attentionFactor: Double
    /// θ actually used in the exponent (the adjusted base for `ntk` and `dynamic`, else `rope_theta`).
    public var effectiveTheta: Double
    /// The sequence length the frequencies were computed for (`dynamic`: after `max(seq_len, max_pos)`).
    public var sequenceLength: Int?
    /// YaRN only.
    public var yarnRamp: YarnRamp?
    /// llama3 only.
    public var llama3Bands: Llama3Bands?
    /// longrope only.
    public var longropeList: LongropeList?

    public init(ropeType: RopeType, rotaryDim: Int, invFreq: [Float], attentionFactor: Double,
                effectiveTheta: Double, sequenceLength: Int? = nil, yarnRamp: YarnRamp? = nil,
                llama3Bands: Llama3Bands? = nil, longropeList: LongropeList? = nil) {
        self.ropeType = ropeType
        self.rotaryDim = rotaryDim
        self.invFreq = invFreq
        self.attentionFactor = attentionFactor
        self.effectiveTheta = effectiveTheta
        self.sequenceLength = sequenceLength
        self.yarnRamp = yarnRamp
        self.llama3Bands = llama3Bands
        self.longropeList = longropeList
    }

    /// Wavelength of each pair in tokens, `2π / invFreq[i]` evaluated in Double.
    public var wavelengths: [Double] { invFreq.map { 2 * Double.pi / Double($0) } }
}

extension RoPE {
    // MARK: Float32 building blocks

    /// Exponents `2i/d` for `i = 0 ..< d/2`, each `Float(2i) / Float(d)` in Float32
    /// (torch: `torch.arange(0, dim, 2).float() / dim`).
    public static func exponents(rotaryDim d: Int) -> [Float] {
        let denominator = Float(d)
        return stride(from: 0, to: d, by: 2).map { Float($0) / denominator }
    }

    /// `base ** exponents` in Float32 (transformers' `pos_freqs`): the base is rounded to Float32 first,
    /// the power evaluated once in Double and rounded to Float32. Shape `[d/2]`.
    public static func positionFrequencies(base: Double, rotaryDim d: Int) -> [Float] {
        let b = Double(Float(base))
        return exponents(rotaryDim: d).map { Float(Foundation.pow(b, Double($0))) }
    }

    /// Plain RoPE inverse frequencies, shape `[d/2]`, Float32:
    /// `1.0 / (base ** (arange(0, d, 2).float() / d))` — transformers `compute_default_rope_parameters`
    /// (`LlamaRotaryEmbedding` and friends in 5.x; `_compute_default_rope_parameters` in 4.x).
    public static func defaultInverseFrequencies(base: Double, rotaryDim d: Int) -> [Float] {
        positionFrequencies(base: base, rotaryDim: d).map { 1 / $0 }
    }

    // MARK: Double helpers (Python scalar math)

    /// Static NTK-aware base `θ · factor^(d/(d−2))` (YaRN paper Eq. 16; vLLM `NTKScalingRotaryEmbedding`).
    public static func ntkAwareBase(theta: Double, factor: Double, rotaryDim d: Int) -> Double {
        theta * Foundation.pow(factor, Double(d) / Double(d - 2))
    }

    /// Dynamic NTK base for sequence length `seqLen` (already clamped to ≥ `maxPositionEmbeddings`):
    /// `θ · ((factor·s / L) − (factor − 1)) ^ (d/(d−2))`, in Python's evaluation order
    /// (transformers `_compute_dynamic_ntk_parameters`).
    public static func dynamicNTKBase(theta: Double, factor: Double, sequenceLength seqLen: Int,
                                      maxPositionEmbeddings maxPos: Int, rotaryDim d: Int) -> Double {
        let multiplier = factor * Double(seqLen) / Double(maxPos) - (factor - 1)
        return theta * Foundation.pow(multiplier, Double(d) / Double(d - 2))
    }

    /// YaRN's `get_mscale(scale, mscale)`: `1` for `scale ≤ 1`, else `0.1·mscale·ln(scale) + 1`.
    public static func yarnMscale(scale: Double, mscale: Double = 1) -> Double {
        if scale <= 1 { return 1.0 }
        return 0.1 * mscale * Foundation.log(scale) + 1.0
    }

    /// YaRN attention factor (transformers `_compute_yarn_parameters`): an explicit `attention_factor` wins;
    /// else if `mscale` and `mscale_all_dim` are both truthy `get_mscale(s, mscale) / get_mscale(s, mscale_all_dim)`;
    /// else `get_mscale(s)` = `0.1·ln s + 1`.
    public static func yarnAttentionFactor(factor: Double, attentionFactor: Double? = nil,
                                           mscale: Double? = nil, mscaleAllDim: Double? = nil) -> Double {
        if let attentionFactor { return attentionFactor }
        if let mscale, mscale != 0, let mscaleAllDim, mscaleAllDim != 0 {
            return yarnMscale(scale: factor, mscale: mscale) / yarnMscale(scale: factor, mscale: mscaleAllDim)
        }
        return yarnMscale(scale: factor)
    }

    /// YaRN `find_correction_dim`: the fractional pair index whose wavelength `2π θ^(2i/d)` equals
    /// `originalLength / rotations`, `d·ln(L0 / (rotations·2π)) / (2 ln θ)`.
    public static func yarnCorrectionDim(rotations: Double, rotaryDim d: Int, base: Double,
                                         originalLength: Int) -> Double {
        (Double(d) * Foundation.log(Double(originalLength) / (rotations * 2 * Double.pi)))
            / (2 * Foundation.log(base))
    }

    /// YaRN `find_correction_range`: floors/ceils when `truncate`, clamps to `[0, d − 1]` (the `d − 1`
    /// upper clamp, not `d/2 − 1`, is transformers').
    public static func yarnRamp(betaFast: Double?, betaSlow: Double?, rotaryDim d: Int, base: Double,
                                originalLength: Int, truncate: Bool) -> YarnRamp {
        let fast = pythonOr(betaFast, 32), slow = pythonOr(betaSlow, 1)
        let rawLow = yarnCorrectionDim(rotations: fast, rotaryDim: d, base: base, originalLength: originalLength)
        let rawHigh = yarnCorrectionDim(rotations: slow, rotaryDim: d, base: base, originalLength: originalLength)
        var low = rawLow, high = rawHigh
        if truncate {
            low = low.rounded(.down)
            high = high.rounded(.up)
        }
        return YarnRamp(betaFast: fast, betaSlow: slow, correctionDimFast: rawLow, correctionDimSlow: rawHigh,
                        low: Swift.max(low, 0), high: Swift.min(high, Double(d - 1)), truncate: truncate)
    }

    /// YaRN `linear_ramp_factor(low, high, count)` in Float32: `clamp((arange(count) − low) / (high − low), 0, 1)`,
    /// with `high += 0.001` when the bounds coincide. Shape `[count]`; 0 = keep, 1 = interpolate.
    public static func yarnRampFactor(low: Double, high: Double, count: Int) -> [Float] {
        var high = high
        if low == high { high += 0.001 }
        let lowF = Float(low), span = Float(high - low)
        return (0..<count).map { i in
            let value = (Float(i) - lowF) / span
            return Swift.min(Swift.max(value, 0), 1)
        }
    }

    /// longrope attention factor: `1` if `factor ≤ 1`, else `sqrt(1 + ln(factor) / ln(original))`.
    public static func longropeAttentionFactor(factor: Double, originalLength: Int) -> Double {
        if factor <= 1.0 { return 1.0 }
        return (1 + Foundation.log(factor) / Foundation.log(Double(originalLength))).squareRoot()
    }
}

extension RopeConfiguration {
    /// Inverse frequencies and attention factor, as transformers 5.23 computes them at
    /// `ROPE_INIT_FUNCTIONS[rope_type](config, device, seq_len)` (CPU, Float32), for every rope type:
    ///
    /// - `default`: `compute_default_rope_parameters` (with `partial_rotary_factor` applied, as in GLM/Phi-3/NeoX;
    ///   Llama's own default ignores it).
    /// - `linear`: `_compute_linear_scaling_rope_parameters` (`inv_freq /= factor`).
    /// - `ntk`: plain RoPE with the base `θ·factor^(d/(d−2))` (not in transformers; vLLM `ntk`).
    /// - `dynamic`: `_compute_dynamic_ntk_parameters`; `sequenceLength` is clamped to ≥ `max_position_embeddings`,
    ///   `nil` means `max_position_embeddings` (= the default frequencies).
    /// - `yarn`: `_compute_yarn_parameters`.
    /// - `longrope`: `_compute_longrope_parameters`; the long list is used iff `sequenceLength > original`.
    /// - `llama3`: `_compute_llama3_parameters`.
    ///
    /// Returns `d/2` Float32 values (pair `i` rotates by `position × invFreq[i]`) and the Double attention
    /// factor applied to cos and sin. Throws ``RopeError/invalidConfiguration(_:)`` when ``validate(fieldPrefix:)`` fails.
    public func frequencies(sequenceLength: Int? = nil) throws -> RopeFrequencies {
        try validate()
        let d = rotaryDim
        let half = d / 2
        var result = RopeFrequencies(ropeType: ropeType, rotaryDim: d, invFreq: [], attentionFactor: 1.0,
                                     effectiveTheta: theta, sequenceLength: sequenceLength)
        switch ropeType {
        case .default:
            result.invFreq = RoPE.defaultInverseFrequencies(base: theta, rotaryDim: d)

        case .linear:
            let divisor = Float(factor!)
            result.invFreq = RoPE.defaultInverseFrequencies(base: theta, rotaryDim: d).map { $0 / divisor }

        case .ntk:
            let base = RoPE.ntkAwareBase(theta: theta, factor: factor!, rotaryDim: d)
            result.effectiveTheta = base
            result.invFreq = RoPE.defaultInverseFrequencies(base: base, rotaryDim: d)

        case .dynamic:
            let maxPos = maxPositionEmbeddings!
            let seqLen = Swift.max(sequenceLength ?? maxPos, maxPos)
            let base = RoPE.dynamicNTKBase(theta: theta, factor: factor!, sequenceLength: seqLen,
                                           maxPositionEmbeddings: maxPos, rotaryDim: d)
            result.sequenceLength = seqLen
            result.effectiveTheta = base
            result.invFreq = RoPE.defaultInverseFrequencies(base: base, rotaryDim: d)

        case .yarn:
            let original = originalMaxPositionEmbeddings!
            let factor = self.factor ?? Double(maxPositionEmbeddings!) / Double(original)
            result.attentionFactor = RoPE.yarnAttentionFactor(
                factor: factor, attentionFactor: attentionFactor, mscale: mscale, mscaleAllDim: mscaleAllDim)
            let ramp = RoPE.yarnRamp(betaFast: betaFast, betaSlow: betaSlow, rotaryDim: d, base: theta,
                                     originalLength: original, truncate: truncate ?? true)
            result.yarnRamp = ramp
            let posFreqs = RoPE.positionFrequencies(base: theta, rotaryDim: d)
            let factorF = Float(factor)
            let rampFactor = RoPE.yarnRampFactor(low: ramp.low, high: ramp.high, count: half)
            result.invFreq = (0..<half).map { i in
                let extrapolation = 1 / posFreqs[i]
                let interpolation = 1 / (factorF * posFreqs[i])
                let keep = 1 - rampFactor[i]  // inv_freq_extrapolation_factor
                let interpolated = interpolation * (1 - keep)
                let kept = extrapolation * keep
                return interpolated + kept
            }

        case .longrope:
            let original = originalMaxPositionEmbeddings!
            let factor = self.factor ?? Double(maxPositionEmbeddings!) / Double(original)
            result.attentionFactor = attentionFactor
                ?? RoPE.longropeAttentionFactor(factor: factor, originalLength: original)
            let useLong = (sequenceLength ?? 0) > original
            result.longropeList = useLong ? .long : .short
            let divisors = (useLong ? longFactor! : shortFactor!).map { Float($0) }
            let posFreqs = RoPE.positionFrequencies(base: theta, rotaryDim: d)
            result.invFreq = (0..<half).map { i in 1 / (divisors[i] * posFreqs[i]) }

        case .llama3:
            let factorF = Float(factor!)
            let low = lowFreqFactor!, high = highFreqFactor!
            let original = Double(originalMaxPositionEmbeddings!)
            let lowWavelength = original / low
            let highWavelength = original / high
            result.llama3Bands = Llama3Bands(lowFreqWavelength: lowWavelength, highFreqWavelength: highWavelength)
            let lowWavelengthF = Float(lowWavelength), highWavelengthF = Float(highWavelength)
            let twoPi = Float(2 * Double.pi), originalF = Float(original)
            let lowF = Float(low), spanF = Float(high - low)
            result.invFreq = RoPE.defaultInverseFrequencies(base: theta, rotaryDim: d).map { inv in
                let wavelength = (1 / inv) * twoPi                     // 2π / inv_freq
                let scaled = wavelength > lowWavelengthF ? inv / factorF : inv
                let smooth = ((1 / wavelength) * originalF - lowF) / spanF  // (L / wavelen − low) / (high − low)
                let smoothed = (1 - smooth) * scaled / factorF + smooth * scaled
                let isMedium = !(wavelength < highWavelengthF) && !(wavelength > lowWavelengthF)
                return isMedium ? smoothed : scaled
            }
        }
        return result
    }

    /// The softmax-scale multiplier DeepSeek-V2/V3 apply on top of YaRN (transformers `yarn_apply_mscale`,
    /// `models/deepseek_v3`): `get_mscale(factor, mscale_all_dim)²` when `rope_type ≠ default` and
    /// `mscale_all_dim` is truthy, else 1. This multiplies `qk_head_dim^-0.5`; it is *not* part of the
    /// cos/sin attention factor.
    public var deepseekSoftmaxScaleMultiplier: Double {
        guard ropeType != .default, let mscaleAllDim, mscaleAllDim != 0, let factor else { return 1.0 }
        let m = RoPE.yarnMscale(scale: factor, mscale: mscaleAllDim)
        return m * m
    }

    /// DeepSeek's full softmax scale `qk_head_dim^-0.5 · m · m` in transformers' evaluation order.
    public func deepseekSoftmaxScale(qkHeadDim: Int) -> Double {
        let scaling = Foundation.pow(Double(qkHeadDim), -0.5)
        guard ropeType != .default, let mscaleAllDim, mscaleAllDim != 0, let factor else { return scaling }
        let m = RoPE.yarnMscale(scale: factor, mscale: mscaleAllDim)
        return scaling * m * m
    }
}
