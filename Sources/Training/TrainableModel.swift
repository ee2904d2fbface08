import CKernels
import Foundation
import ModelIO
import RoPE
import TensorCore
import Transformer

/// One training sequence: token ids, their RoPE positions, the document mask and the prediction targets.
public struct TrainingSequence: Sendable, Equatable {
    /// Input token ids (`n`).
    public var tokens: [Int]
    /// RoPE position of each token (`0..<n`, or restarting at each document when positions are reset).
    public var positions: [Int]
    /// Index of the first token of each token's document (`n` values, non-decreasing, `documentStart[i] ≤ i`);
    /// `nil`: one document (plain causal attention).
    public var documentStart: [Int32]?
    /// The token to predict at each position (already shifted: `targets[i]` is the token after `tokens[i]`), or −1 for
    /// no loss (HF's −100 after its internal shift).
    public var targets: [Int]

    public init(tokens: [Int], positions: [Int]? = nil, documentStart: [Int32]? = nil, targets: [Int]) {
        self.tokens = tokens
        self.positions = positions ?? Array(0..<tokens.count)
        self.documentStart = documentStart
        self.targets = targets
    }

    /// Next-token targets for a plain causal LM: `targets[i] = tokens[i+1]`, none at the last position.
    public init(causal tokens: [Int]) {
        self.init(tokens: tokens, targets: Array(tokens.dropFirst()) + [-1])
    }

    public var count: Int { tokens.count }
    public var lossTokens: Int { targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) } }
}

/// An f32 buffer of `count` floats, 64-byte aligned, zeroed on creation.
final class Floats: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int
    init(_ count: Int) {
        self.count = max(1, count)
        var raw: UnsafeMutableRawPointer?
        posix_memalign(&raw, 64, self.count * MemoryLayout<Float>.size)
        pointer = raw!.bindMemory(to: Float.self, capacity: self.count)
        pointer.initialize(repeating: 0, count: self.count)
    }
    deinit { free(pointer) }
    func zero() { pointer.update(repeating: 0, count: count) }
    subscript(i: Int) -> Float {
        get { pointer[i] }
        set { pointer[i] = newValue }
    }
}

/// A Llama-family causal LM with trainable f32 weights: the forward pass of transformers' `LlamaForCausalLM` /
/// `Qwen2ForCausalLM` / `MistralForCausalLM` (same layer operations as the inference engine, ``LayerOps`` and
/// ``BlockwiseAttention``), keeping what the backward needs, and the backward of every layer, accumulating
/// `∂(lossScale · Σ cross-entropy)/∂θ` into ``ParameterStore/gradients``.
///
/// Memory is linear in the sequence length: attention is blockwise both ways (``AttentionBackward``), the
/// cross-entropy runs in chunks of rows so that `rows × vocabulary` logits never exist for the whole sequence, and
/// with ``recompute`` only each layer's input is kept between the forward and the backward (each layer's
/// activations are recomputed from it, giving identical results).
public final class TrainableModel: @unchecked Sendable {
    public let configuration: TransformerConfiguration
    public let parameters: ParameterStore
    public var rope: RopeRuntime
    /// Parallel workers for matrix products and attention (BLAS itself runs single-threaded).
    public var workers: Int
    /// Keep only layer inputs during the forward and recompute each layer's activations in the backward.
    public var recompute: Bool
    /// Most f32 logits held at once by the chunked cross-entropy.
    public var logitBudget = 1 << 23

    public init(configuration: TransformerConfiguration, parameters: ParameterStore, workers: Int = 2,
                recompute: Bool = false) throws {
        self.configuration = configuration
        self.parameters = parameters
        rope = try RopeRuntime(configuration.rope)
        self.workers = max(1, workers)
        self.recompute = recompute
    }

    /// Loads the model directory's weights as f32 master weights.
    public convenience init(directory: ModelDirectory, workers: Int = 2, recompute: Bool = false) throws {
        let c = try TransformerConfiguration(directory: directory)
        let p = try ParameterStore(configuration: c, checkpoint: try directory.weights(), path: directory.path)
        try self.init(configuration: c, parameters: p, workers: workers, recompute: recompute)
    }

    var shape: AttentionShape {
        AttentionShape(heads: configuration.heads, kvHeads: configuration.kvHeads, headDim: configuration.headDim,
                       slidingWindow: configuration.slidingWindow)
    }

    /// Runs the forward and backward pass of one sequence, adding `lossScale · ∂(Σ CE)/∂θ` to the gradients.
    /// Returns the summed cross-entropy (natural log) over the positions with a target and their number.
    @discardableResult
    public func accumulateGradients(_ sequence: TrainingSequence, lossScale: Float) throws -> (loss: Double, tokens: Int) {
        try run(sequence, lossScale: lossScale, backward: true, attention: LocalAttention(), maxPositionId: nil)
    }

    /// The same for one worker's share of a sequence whose attention `attention` computes (a ring of workers):
    /// `sequence` holds this worker's tokens, their RoPE positions, targets and document starts (sequence indices,
    /// checked against ``AttentionStrategy/sequenceIndices(count:)``); `maxPositionId` is the largest RoPE position
    /// of the whole sequence (dynamic RoPE scaling depends on it). Loss and gradients cover this worker's tokens.
    @discardableResult
    public func accumulateGradients(_ sequence: TrainingSequence, lossScale: Float, attention: AttentionStrategy,
                                    maxPositionId: Int) throws -> (loss: Double, tokens: Int) {
        try run(sequence, lossScale: lossScale, backward: true, attention: attention, maxPositionId: maxPositionId)
    }

    /// The summed cross-entropy and its token count, forward only (held-out loss).
    public func loss(_ sequence: TrainingSequence) throws -> (loss: Double, tokens: Int) {
        try run(sequence, lossScale: 0, backward: false, attention: LocalAttention(), maxPositionId: nil)
    }

    private func validate(_ s: TrainingSequence, indices: [Int]) throws {
        let v = configuration.vocabSize
        guard s.positions.count == s.count, s.targets.count == s.count,
              s.documentStart.map({ $0.count == s.count }) ?? true else {
            throw EngineError("training sequence: tokens, positions, targets and document starts differ in length")
        }
        if let bad = s.tokens.first(where: { $0 < 0 || $0 >= v }) {
            throw EngineError("token id \(bad) is outside the vocabulary (0..<\(v))")
        }
        if let bad = s.targets.first(where: { $0 >= v || $0 < -1 }) {
            throw EngineError("target id \(bad) is outside the vocabulary (0..<\(v), or −1 for none)")
        }
        if let starts = s.documentStart {
            for (i, st) in starts.enumerated()
            where st < 0 || Int(st) > indices[i] || (i > 0 && indices[i - 1] < indices[i] && st < starts[i - 1]) {
                throw EngineError("document start \(st) at position \(indices[i]) is not a non-decreasing index ≤ \(indices[i])")
            }
        }
    }

    private func run(_ s: TrainingSequence, lossScale: Float, backward: Bool, attention: AttentionStrategy,
                     maxPositionId: Int?) throws -> (loss: Double, tokens: Int) {
        try validate(s, indices: attention.sequenceIndices(count: s.count))
        let n = s.count, c = configuration, d = c.hiddenSize
        guard n > 0 else { return (0, 0) }
        let savedThreads = BLAS.threads
        if savedThreads != 1 { BLAS.threads = 1 }
        defer { if savedThreads != 1 { BLAS.threads = savedThreads } }
        try rope.update(maxPositionId: maxPositionId ?? s.positions.max()!)
        let pass = Pass(model: self, sequence: s, attention: attention)
        // Embedding.
        let x0 = Floats(n * d)
        let embed = parameters.value("embed")!
        for (t, id) in s.tokens.enumerated() { (x0.pointer + t * d).update(from: embed + id * d, count: d) }
        // Layers: tape l holds layer l's input (and, without recomputation, its activations).
        // Activations that are not kept (recomputation, or no backward) live in one set shared by every layer.
        let shared = recompute || !backward ? LayerTape(n: n, configuration: c, input: Floats(1), full: true) : nil
        var tapes: [LayerTape] = []
        var input = x0
        for l in 0..<c.layers {
            let tape = LayerTape(n: n, configuration: c, input: input, full: shared == nil)
            if let shared { tape.borrowActivations(from: shared) }
            let out = Floats(n * d)
            try pass.forwardLayer(l, tape: tape, output: out.pointer)
            if shared != nil { tape.releaseActivations() }
            tapes.append(backward ? tape : LayerTape(n: 0, configuration: c, input: Floats(1), full: false))
            input = out
        }
        // Final norm, LM head and cross-entropy (gradient into dx).
        let dx = Floats(backward ? n * d : 1)
        let result = pass.lossHead(input.pointer, lossScale: lossScale, dInput: backward ? dx.pointer : nil)
        guard backward else { return result }
        for l in stride(from: c.layers - 1, through: 0, by: -1) {
            let tape = tapes[l]
            if let shared {
                tape.borrowActivations(from: shared)
                try pass.forwardLayer(l, tape: tape, output: nil)
            }
            try pass.backwardLayer(l, tape: tape, gradient: dx.pointer)
            tapes[l] = LayerTape(n: 0, configuration: c, input: Floats(1), full: false)
        }
        // Embedding gradient, rows in token order (deterministic).
        let dEmbed = parameters.gradient("embed")!
        for (t, id) in s.tokens.enumerated() {
            let dst = dEmbed + id * d, src = dx.pointer + t * d
            for j in 0..<d { dst[j] += src[j] }
        }
        return result
    }
}

/// What one layer's forward keeps for its backward (`n` rows).
final class LayerTape {
    let input: Floats
    /// Reciprocal RMS of the input and of the post-attention residual stream (`n`).
    var r1 = Floats(1), r2 = Floats(1)
    /// q, k, v after RoPE (`n × (qw + 2·kvw)`), attention output (`n × qw`), its log-sum-exp (`n × heads`),
    /// the residual stream after attention (`n × d`), the MLP pre-activations `[gate | up]` (`n × 2I`).
    var qkv = Floats(1), attn = Floats(1), lse = Floats(1), x2 = Floats(1), gateUp = Floats(1)
    let n: Int
    let configuration: TransformerConfiguration

    init(n: Int, configuration: TransformerConfiguration, input: Floats, full: Bool) {
        self.n = n
        self.configuration = configuration
        self.input = input
        if full { allocateActivations() }
    }

    func allocateActivations() {
        let c = configuration
        r1 = Floats(n); r2 = Floats(n)
        qkv = Floats(n * (c.queryWidth + 2 * c.kvWidth)); attn = Floats(n * c.queryWidth)
        lse = Floats(n * c.heads); x2 = Floats(n * c.hiddenSize); gateUp = Floats(n * 2 * c.intermediateSize)
    }

    /// Uses `other`'s activation buffers (same `n`), which the forward overwrites.
    func borrowActivations(from other: LayerTape) {
        r1 = other.r1; r2 = other.r2; qkv = other.qkv; attn = other.attn; lse = other.lse; x2 = other.x2
        gateUp = other.gateUp
    }

    func releaseActivations() {
        r1 = Floats(1); r2 = Floats(1); qkv = Floats(1); attn = Floats(1); lse = Floats(1); x2 = Floats(1)
        gateUp = Floats(1)
    }
}
