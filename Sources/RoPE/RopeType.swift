/// The rotary-embedding variants this module computes.
///
/// The raw values are the `rope_type` strings used in Hugging Face `config.json` files, except `ntk`,
/// which no transformers release implements (vLLM and the YaRN reference repository do): it is the static
/// NTK-aware base change `θ' = θ·s^(d/(d−2))`. When written to a config for transformers, an `ntk`
/// configuration is expressed as `default` with the adjusted `rope_theta` (see ``RopeConfiguration/exportable``).
public enum RopeType: String, Sendable, Hashable, CaseIterable, Codable {
    /// Plain RoPE: `inv_freq[i] = 1 / θ^(2i/d)`.
    case `default`
    /// Position interpolation (kaiokendev): every frequency divided by `factor`.
    case linear
    /// Static NTK-aware scaling (bloc97): `θ' = θ·factor^(d/(d−2))`, then plain RoPE.
    case ntk
    /// Dynamic NTK (transformers `dynamic`): θ grows with the current sequence length.
    case dynamic
    /// YaRN (NTK-by-parts ramp + attention temperature).
    case yarn
    /// LongRoPE / Phi-3 (`su`): per-pair divisors, short or long list chosen by the current length.
    case longrope
    /// Llama 3.1 frequency bands.
    case llama3

    /// Parses a `rope_type` / `type` value. Accepts the legacy Phi-3 alias `su` for `longrope`
    /// (transformers' Phi-3 config maps it the same way).
    public init?(configName: String) {
        if configName == "su" {
            self = .longrope
        } else if let value = RopeType(rawValue: configName) {
            self = value
        } else {
            return nil
        }
    }

    /// Whether the inverse frequencies depend on the current sequence length at run time.
    public var dependsOnSequenceLength: Bool { self == .dynamic || self == .longrope }
}

/// How the two members of each rotated pair are laid out inside a head vector.
public enum RopePairLayout: String, Sendable, Hashable, CaseIterable, Codable {
    /// Hugging Face / GPT-NeoX `rotate_half`: pair `j` is channels `(j, j + d/2)`;
    /// cos/sin rows are `[f_0 … f_{d/2−1}, f_0 … f_{d/2−1}]`. ggml `GGML_ROPE_TYPE_NEOX`.
    case halfSplit = "half_split"
    /// GPT-J / Meta / GGUF-llama / DeepSeek `rope_interleave`: pair `j` is channels `(2j, 2j + 1)`;
    /// cos/sin rows are `[f_0, f_0, f_1, f_1, …]`. ggml `GGML_ROPE_TYPE_NORMAL`.
    case interleaved
}
