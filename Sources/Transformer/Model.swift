import CKernels
import Foundation
import ModelIO
import RoPE
import TensorCore

/// Errors from running a model, naming what was wrong.
public struct EngineError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A Llama-family causal language model (Llama 2/3.x, Mistral, Qwen2/2.5, SmolLM, TinyLlama) run in f32 on
/// BLAS, computing what transformers' `LlamaForCausalLM` / `MistralForCausalLM` / `Qwen2ForCausalLM` compute:
///
/// `x = embed(ids)`; per layer `x += o_proj(attn(rope(q), rope(k), v))` on `rmsnorm(x)`, then
/// `x += down(silu(gate(h)) · up(h))` on `h = rmsnorm(x)`; `logits = lm_head(rmsnorm(x))`.
///
/// Weights stay in their checkpoint dtype (memory-mapped when f32). Prompts are processed in chunks of
/// ``prefillChunk`` tokens against a ``KVCache``; attention is blockwise (``BlockwiseAttention``), so memory grows
/// linearly with context length. RoPE comes from the RoPE library, with dynamic NTK's length-dependent base and
/// longrope's short/long switch updated per ``forward(_:cache:logits:)`` call like transformers'
/// `dynamic_rope_update`, and YaRN's attention factor folded into cos/sin.
///
/// Not thread-safe: one forward call at a time per instance.
public final class TransformerModel: @unchecked Sendable {
    public let configuration: TransformerConfiguration
    public let directory: ModelDirectory
    let weights: ModelWeights
    public private(set) var rope: RopeRuntime
    /// Tokens per prefill chunk.
    public var prefillChunk = 1024
    /// Parallel workers for the projections and attention. OpenBLAS runs single-threaded during a forward pass and
    /// the work is split by the engine: OpenBLAS's own idle threads busy-wait (`sched_yield`) between calls and, on
    /// a 2-core machine, took a quarter of the CPU from the attention workers.
    public var workers = max(1, ProcessInfo.processInfo.activeProcessorCount)

    private let weightScratch = FloatBuffer()
    private let xBuf = FloatBuffer(), hBuf = FloatBuffer(), qkvBuf = FloatBuffer()
    private let attnBuf = FloatBuffer(), mlpBuf = FloatBuffer(), logitBuf = FloatBuffer()
    private let productBuf = FloatBuffer(), activationScales = FloatBuffer()
    private var activationQuants = [Int8]()
    private var activationBF16 = [UInt16]()

    /// Loads a model directory (config.json + safetensors). Errors name the file and tensor.
    public convenience init(directory path: String, weights format: WeightFormat = .stored,
                            compute: ComputePrecision = .f32) throws {
        try self.init(directory: try ModelDirectory(path: path), weights: format, compute: compute)
    }

    /// How the weight matrices are held (``WeightFormat``).
    public let weightFormat: WeightFormat
    /// The arithmetic of the matrix products (``ComputePrecision``).
    public let compute: ComputePrecision
    /// What the matrix products run on in this process (``ComputePrecision/effectivePath``).
    public var computePath: String { compute.effectivePath }

    /// Loads a model directory; `weights` other than `.stored` quantizes the projections and the LM head at load;
    /// `compute: .bf16` packs them as bf16 for `vdpbf16ps` products where the CPU has AVX-512 BF16.
    public init(directory: ModelDirectory, weights format: WeightFormat = .stored,
                compute: ComputePrecision = .f32) throws {
        self.directory = directory
        weightFormat = format
        self.compute = compute
        configuration = try TransformerConfiguration(directory: directory)
        weights = try ModelWeights(checkpoint: try directory.weights(), configuration: configuration,
                                   path: directory.path, format: format,
                                   bf16: compute == .bf16 && ComputePrecision.bf16IsNative)
        rope = try RopeRuntime(configuration.rope)
    }

    public var attentionShape: AttentionShape {
        AttentionShape(heads: configuration.heads, kvHeads: configuration.kvHeads, headDim: configuration.headDim,
                       slidingWindow: configuration.slidingWindow)
    }

    /// A new empty cache for this model.
    public func makeCache(capacity: Int = 256) -> KVCache {
        KVCache(layers: configuration.layers, kvHeads: configuration.kvHeads, headDim: configuration.headDim,
                capacity: capacity)
    }

    /// Whether a prompt may be run in several forward calls with the same result as one: true unless the rope
    /// frequencies depend on each call's longest position (dynamic NTK, longrope — transformers'
    /// `dynamic_rope_update`), where only a single call reproduces transformers.
    public var chunkedPrefillIsExact: Bool {
        rope.configuration.ropeType != .dynamic && rope.configuration.ropeType != .longrope
    }

    /// Which logits a forward call returns.
    public enum Logits: Sendable { case none, last, all }

    /// Runs `tokens` at positions `cache.count ..< cache.count + tokens.count`, appending their keys/values to
    /// `cache`. Returns logits row-major `[rows × vocab]`: every position (`.all`), the last (`.last`) or none.
    public func forward(_ tokens: [Int], cache: KVCache, logits: Logits = .last) throws -> [Float] {
        let c = configuration
        guard !tokens.isEmpty else { return [] }
        if let bad = tokens.first(where: { $0 < 0 || $0 >= c.vocabSize }) {
            throw EngineError("token id \(bad) is outside the vocabulary (0..<\(c.vocabSize)) of \(directory.path)")
        }
        let start = cache.count
        let savedThreads = BLAS.threads
        if savedThreads != 1 { BLAS.threads = 1 }
        defer { if savedThreads != 1 { BLAS.threads = savedThreads } }
        // One frequency update per call, with the call's largest position, as transformers does per forward.
        try rope.update(maxPositionId: start + tokens.count - 1)
        cache.reserve(start + tokens.count)
        var result: [Float] = []
        if logits == .all { result.reserveCapacity(tokens.count * c.vocabSize) }
        var offset = 0
        while offset < tokens.count {
            let n = min(max(1, prefillChunk), tokens.count - offset)
            let isLast = offset + n == tokens.count
            let rows: Int
            switch logits {
            case .all: rows = n
            case .last: rows = isLast ? 1 : 0
            case .none: rows = 0
            }
            let chunkLogits = forwardChunk(Array(tokens[offset..<(offset + n)]), cache: cache, logitRows: rows)
            result.append(contentsOf: chunkLogits)
            offset += n
        }
        return result
    }

    /// One chunk of `n` tokens; returns logits for its last `logitRows` positions.
    private func forwardChunk(_ tokens: [Int], cache: KVCache, logitRows: Int) -> [Float] {
        let c = configuration
        let n = tokens.count, d = c.hiddenSize
        let qw = c.queryWidth, kvw = c.kvWidth, fused = qw + 2 * kvw, inter = c.intermediateSize
        let start = cache.count
        let x = xBuf.reserve(n * d), h = hBuf.reserve(n * d)
        let qkv = qkvBuf.reserve(n * fused), attn = attnBuf.reserve(n * qw)
        let gu = mlpBuf.reserve(n * 2 * inter)

        for (t, id) in tokens.enumerated() { weights.embedding.copyRow(id, into: x + t * d) }
        let table = rope.current.table(positions: Array(start..<(start + n)))
        let shape = attentionShape

        let lastLayer = weights.layers.count - 1
        for (li, layer) in weights.layers.enumerated() {
            ck_rmsnorm(x, layer.inputNorm, h, n, d, c.rmsNormEps)
            linear(h, rows: n, layer.qkv, bias: layer.qkvBias, out: qkv, ldc: fused)
            applyRotary(qkv, rows: n, stride: fused, heads: c.heads, table: table)
            applyRotary(qkv + qw, rows: n, stride: fused, heads: c.kvHeads, table: table)
            cache.store(layer: li, keys: qkv + qw, values: qkv + qw + kvw, rows: n, rowStride: fused)
            // Past the last layer's keys/values, only the rows whose logits are wanted matter (the others' outputs
            // feed nothing), so the last layer's attention, o_proj and MLP run on those rows only, as llama.cpp does.
            let skip = li == lastLayer ? n - logitRows : 0
            let m = n - skip
            guard m > 0 else { continue }
            BlockwiseAttention.attend(shape: shape, query: qkv + skip * fused, queryStride: fused, count: m,
                                      firstPosition: start + skip, kv: cache.view(layer: li, extra: n),
                                      output: attn, outputStride: qw, workers: workers, compute: compute)
            let xr = x + skip * d
            linear(attn, rows: m, layer.output, bias: layer.outputBias, out: xr, ldc: d, accumulate: true)
            ck_rmsnorm(xr, layer.postAttentionNorm, h, m, d, c.rmsNormEps)
            linear(h, rows: m, layer.gateUp, bias: layer.gateUpBias, out: gu, ldc: 2 * inter)
            for t in 0..<m { ck_silu_mul(gu + t * 2 * inter, gu + t * 2 * inter + inter, inter) }
            linear(gu, rows: m, lda: 2 * inter, layer.down, bias: layer.downBias, out: xr, ldc: d, accumulate: true)
        }
        cache.advance(by: n)
        guard logitRows > 0 else { return [] }
        let first = n - logitRows
        ck_rmsnorm(x + first * d, weights.finalNorm, h, logitRows, d, c.rmsNormEps)
        let out = logitBuf.reserve(logitRows * c.vocabSize)
        linear(h, rows: logitRows, weights.lmHead, bias: nil, out: out, ldc: c.vocabSize)
        return Array(UnsafeBufferPointer(start: out, count: logitRows * c.vocabSize))
    }

    /// `out[rows × W.rows] (+)= input[rows × W.cols] · Wᵀ + bias` (a PyTorch `Linear`) through
    /// ``LayerOps/linear(_:rows:lda:weight:outFeatures:inFeatures:bias:out:ldc:accumulate:workers:)``, the weight
    /// widened to f32 first when stored narrower; on quantized weights for a few rows; on packed bf16 weights in
    /// bf16 compute mode.
    private func linear(_ input: UnsafePointer<Float>, rows: Int, lda: Int? = nil, _ w: WeightMatrix, bias: [Float]?,
                        out: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool = false) {
        if let q = w.quantized, rows <= Self.quantizedProductRows {
            quantizedLinear(input, rows: rows, lda: lda ?? w.cols, q, bias: bias, out: out, ldc: ldc,
                            accumulate: accumulate)
            return
        }
        if let packed = w.bf16 {
            packed.multiply(input, m: rows, lda: lda ?? w.cols, out: out, ldc: ldc, accumulate: accumulate,
                            workers: workers, scratch: &activationBF16)
            if let bias { for r in 0..<rows { for j in 0..<w.rows { out[r * ldc + j] += bias[j] } } }
            return
        }
        w.withF32(scratch: weightScratch) { wp in
            let call = { (b: UnsafePointer<Float>?) in
                LayerOps.linear(input, rows: rows, lda: lda ?? w.cols, weight: wp, outFeatures: w.rows,
                                inFeatures: w.cols, bias: b, out: out, ldc: ldc, accumulate: accumulate,
                                workers: self.workers)
            }
            if let bias { bias.withUnsafeBufferPointer { call($0.baseAddress!) } } else { call(nil) }
        }
    }

    /// Products of at most this many rows on quantized weights run as integer matrix–vector products (decoding);
    /// larger ones widen the weights to f32 for BLAS.
    static let quantizedProductRows = 4

    /// `out (+)= input · Wᵀ + bias` row by row on quantized weights: each input row quantized to Q8_0 blocks, then
    /// ``QuantizedRows/multiply(xq:xd:into:workers:)``.
    private func quantizedLinear(_ input: UnsafePointer<Float>, rows: Int, lda: Int, _ w: QuantizedRows,
                                 bias: [Float]?, out: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        let k = w.cols
        if activationQuants.count < k { activationQuants = [Int8](repeating: 0, count: k) }
        let xd = activationScales.reserve(k / 32), y = productBuf.reserve(w.rows)
        activationQuants.withUnsafeMutableBufferPointer { xq in
            for t in 0..<rows {
                ck_q8_quantize(input + t * lda, k, xq.baseAddress!, xd)
                w.multiply(xq: xq.baseAddress!, xd: xd, into: y, workers: workers)
                let row = out + t * ldc
                if accumulate { for j in 0..<w.rows { row[j] += y[j] } } else { row.update(from: y, count: w.rows) }
                if let bias { for j in 0..<w.rows { row[j] += bias[j] } }
            }
        }
    }

    private func applyRotary(_ base: UnsafeMutablePointer<Float>, rows: Int, stride: Int, heads: Int, table: RopeTable) {
        LayerOps.rotate(base, rows: rows, stride: stride, heads: heads, headDim: configuration.headDim, table: table)
    }
}
