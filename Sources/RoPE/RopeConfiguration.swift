/// Everything that determines the rotary embedding of one attention layer, already resolved from a
/// `config.json` (see ``HFRopeConfig``) or built by hand.
///
/// Field names follow transformers 5.x `RopeParameters` (the `rope_parameters` dict) plus the model
/// geometry the rope functions read from the config object. Optional fields are `nil` when the key is
/// absent; the computations then apply transformers' defaults (e.g. `beta_fast or 32`).
public struct RopeConfiguration: Sendable, Hashable {
    /// `rope_type`.
    public var ropeType: RopeType
    /// `rope_theta` (the base θ).
    public var theta: Double
    /// Attention head dimension (`head_dim`, or `hidden_size / num_attention_heads`).
    public var headDim: Int
    /// `partial_rotary_factor` (fraction of `headDim` that is rotated).
    public var partialRotaryFactor: Double
    /// `max_position_embeddings` of the config. transformers uses it as the *original* length for
    /// `dynamic`, as the default `original_max_position_embeddings`, and for implicit factors.
    public var maxPositionEmbeddings: Int?

    /// `factor` (linear, ntk, dynamic, yarn, llama3; optional for longrope).
    public var factor: Double?
    /// `original_max_position_embeddings` (yarn, llama3, longrope): the pre-extension context length.
    public var originalMaxPositionEmbeddings: Int?
    /// `attention_factor` (yarn, longrope): explicit cos/sin magnitude, wins over the formulas.
    public var attentionFactor: Double?
    /// `beta_fast` (yarn; `nil` or 0 means 32): rotations that mark the end of the kept band.
    public var betaFast: Double?
    /// `beta_slow` (yarn; `nil` or 0 means 1): rotations that mark the start of the interpolated band.
    public var betaSlow: Double?
    /// `mscale` (yarn, DeepSeek).
    public var mscale: Double?
    /// `mscale_all_dim` (yarn, DeepSeek).
    public var mscaleAllDim: Double?
    /// `truncate` (yarn; `nil` means `true`): snap the ramp bounds to whole pairs.
    public var truncate: Bool?
    /// `low_freq_factor` (llama3).
    public var lowFreqFactor: Double?
    /// `high_freq_factor` (llama3).
    public var highFreqFactor: Double?
    /// `short_factor` (longrope): per-pair divisors used while the sequence fits the original length.
    public var shortFactor: [Double]?
    /// `long_factor` (longrope): per-pair divisors used beyond the original length.
    public var longFactor: [Double]?

    public init(
        ropeType: RopeType = .default,
        theta: Double,
        headDim: Int,
        partialRotaryFactor: Double = 1.0,
        maxPositionEmbeddings: Int? = nil,
        factor: Double? = nil,
        originalMaxPositionEmbeddings: Int? = nil,
        attentionFactor: Double? = nil,
        betaFast: Double? = nil,
        betaSlow: Double? = nil,
        mscale: Double? = nil,
        mscaleAllDim: Double? = nil,
        truncate: Bool? = nil,
        lowFreqFactor: Double? = nil,
        highFreqFactor: Double? = nil,
        shortFactor: [Double]? = nil,
        longFactor: [Double]? = nil
    ) {
        self.ropeType = ropeType
        self.theta = theta
        self.headDim = headDim
        self.partialRotaryFactor = partialRotaryFactor
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.factor = factor
        self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
        self.attentionFactor = attentionFactor
        self.betaFast = betaFast
        self.betaSlow = betaSlow
        self.mscale = mscale
        self.mscaleAllDim = mscaleAllDim
        self.truncate = truncate
        self.lowFreqFactor = lowFreqFactor
        self.highFreqFactor = highFreqFactor
        self.shortFactor = shortFactor
        self.longFactor = longFactor
    }

    /// Rotary dimension `d = int(head_dim × partial_rotary_factor)` (truncating, as Python's `int()`).
    /// The exponent denominator of every rope type is `d`, and `inv_freq` has `d/2` entries.
    public var rotaryDim: Int {
        let product = Double(headDim) * partialRotaryFactor
        guard product.isFinite, product >= 0, product < Double(Int.max) else { return 0 }
        return Int(product)
    }

    /// The same geometry with plain RoPE (no scaling parameters).
    public var unscaled: RopeConfiguration {
        RopeConfiguration(ropeType: .default, theta: theta, headDim: headDim,
                          partialRotaryFactor: partialRotaryFactor,
                          maxPositionEmbeddings: maxPositionEmbeddings)
    }

    /// The context length the unscaled RoPE was trained on: `original_max_position_embeddings` when set,
    /// otherwise `max_position_embeddings` (transformers' own fallback for yarn, llama3 and longrope).
    /// For `dynamic`, transformers always uses `max_position_embeddings`, so this does too.
    public var trainedContextLength: Int? {
        if ropeType == .dynamic { return maxPositionEmbeddings }
        return originalMaxPositionEmbeddings ?? maxPositionEmbeddings
    }
}
