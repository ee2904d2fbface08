/// RoPE scaling math, faithful to Hugging Face transformers 5.x in Float32.
///
/// - ``RopeConfiguration`` describes one layer's rotary embedding; ``RopeConfiguration/frequencies(sequenceLength:)``
///   returns transformers' `(inv_freq, attention_factor)` for every rope type, bit for bit in most cases.
/// - ``RopeFrequencies/table(positions:layout:)`` builds cos/sin tables; ``RopeRuntime`` reproduces the
///   dynamic / longrope update rules across forward calls.
/// - ``HFRopeConfig`` reads `config.json` (`rope_scaling` 4.x, `rope_parameters` 5.x);
///   ``RopeConfiguration/hfConfigUpdates(format:topLevelOriginal:extraRopeKeys:)`` writes either form and
///   ``RopeConfiguration/ggufExport(architecture:)`` the GGUF keys.
/// - ``RoPE/plan(from:targetLength:method:stages:options:)`` plans a context extension.
///
/// Pure: no file or network I/O.
public enum RoPE {}
