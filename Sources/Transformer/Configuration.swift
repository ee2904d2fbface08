import Foundation
import ModelIO
import RoPE

/// Everything the engine needs to know about a Llama-family decoder, read once from a Hugging Face
/// `config.json` (through ``ModelConfig`` and the RoPE codec) with transformers' defaults.
///
/// Covers `LlamaForCausalLM` (`attention_bias`, `mlp_bias`), `MistralForCausalLM` (`sliding_window`),
/// `Qwen2ForCausalLM` (q/k/v biases always, `use_sliding_window`), tied or untied embeddings and GQA.
public struct TransformerConfiguration: Sendable, Equatable {
    public var modelType: String
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var vocabSize: Int
    public var rmsNormEps: Float
    /// Biases on q/k/v projections (Qwen2 always; Llama with `attention_bias`).
    public var qkvBias: Bool
    /// Bias on the output projection (Llama with `attention_bias`).
    public var outputBias: Bool
    /// Biases on gate/up/down (Llama `mlp_bias`).
    public var mlpBias: Bool
    public var tieWordEmbeddings: Bool
    /// Keys older than this many positions are not attended (Mistral `sliding_window`; Qwen2 only with
    /// `use_sliding_window`). `nil`: full causal attention.
    public var slidingWindow: Int?
    public var rope: RopeConfiguration

    /// Reads a model directory's configuration; errors name `config.json` and the field.
    public init(directory: ModelDirectory) throws {
        let c = directory.config
        let path = directory.configPath
        try c.validate(path: path)
        guard c.family.isLlamaFamily else {
            throw ModelIOError(path, "model_type '\(c.modelType ?? "?")' is not a Llama-family decoder the engine runs (llama, mistral, qwen2)")
        }
        modelType = c.modelType ?? "llama"
        hiddenSize = c.hiddenSize!
        intermediateSize = c.intermediateSize!
        layers = c.numHiddenLayers!
        heads = c.numAttentionHeads!
        kvHeads = c.numKeyValueHeads!
        headDim = c.headDim!
        vocabSize = c.vocabSize!
        rmsNormEps = Float(c.rmsNormEps ?? 1e-6)
        let attentionBias = c.attentionBias ?? false
        let isQwen2 = c.family == .qwen2
        qkvBias = isQwen2 || attentionBias
        outputBias = !isQwen2 && attentionBias
        mlpBias = c.mlpBias ?? false
        tieWordEmbeddings = c.tieWordEmbeddings
        if isQwen2 {
            let use = directory.configJSON["use_sliding_window"]?.boolValue ?? false
            slidingWindow = use ? c.slidingWindow : nil
        } else if c.family == .mistral {
            slidingWindow = c.slidingWindow
        } else {
            slidingWindow = nil
        }
        do {
            let resolved = try HFRopeConfig.decode(try directory.configData()).resolve()
            var rope = resolved.configuration
            if rope.headDim != headDim { rope.headDim = headDim }
            self.rope = rope
        } catch let error as RopeError {
            throw ModelIOError(path, "RoPE settings: \(error)")
        }
    }

    /// The context the model supports (`max_position_embeddings`), when the configuration states it.
    public var contextLength: Int? { rope.maxPositionEmbeddings }

    /// Bytes of key/value cache per cached position (f32 keys and values of every layer).
    public var cacheBytesPerPosition: Int { 2 * layers * kvHeads * headDim * MemoryLayout<Float>.size }

    /// `positions` if a key/value cache that large fits in this machine's physical memory; otherwise an error
    /// naming the size needed and the memory available (instead of a failed allocation).
    public func checkedCacheCapacity(_ positions: Int) throws -> Int {
        let (bytes, overflow) = positions.multipliedReportingOverflow(by: cacheBytesPerPosition)
        let memory = Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
        if !overflow && bytes <= memory { return positions }
        let gib = { (b: Int) in String(format: "%.1f GiB", Double(b) / Double(1 << 30)) }
        throw EngineError("\(positions) positions need \(overflow ? "more than \(gib(Int.max))" : gib(bytes)) of key/value cache; this machine has \(gib(memory)) of memory")
    }

    /// Query heads sharing one key/value head.
    public var groupSize: Int { heads / kvHeads }
    public var queryWidth: Int { heads * headDim }
    public var kvWidth: Int { kvHeads * headDim }
}
