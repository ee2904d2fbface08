import CKernels
import Foundation
import ModelIO
import TensorCore

/// A growable f32 scratch buffer, 64-byte aligned, reused across calls to avoid page faults.
final class FloatBuffer: @unchecked Sendable {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private(set) var capacity: Int

    init(_ count: Int = 0) {
        capacity = max(count, 16)
        pointer = FloatBuffer.allocate(capacity)
    }

    deinit { free(pointer) }

    private static func allocate(_ n: Int) -> UnsafeMutablePointer<Float> {
        var raw: UnsafeMutableRawPointer?
        posix_memalign(&raw, 64, n * MemoryLayout<Float>.size)
        return raw!.bindMemory(to: Float.self, capacity: n)
    }

    /// Ensures room for `count` floats (contents are not kept) and returns the pointer.
    @discardableResult
    func reserve(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            free(pointer)
            capacity = count
            pointer = FloatBuffer.allocate(count)
        }
        return pointer
    }
}

/// A weight matrix `[rows, cols]` (PyTorch `Linear` layout `[out, in]`) kept in its checkpoint dtype, plus
/// optionally a block-quantized copy (``WeightFormat``) that then replaces it in every product.
/// f32 matrices are used in place (memory-mapped); f16/bf16 and quantized ones are widened to f32 into a scratch
/// buffer just before a matrix product (matrix–vector products on quantized weights use integer kernels instead).
/// In bf16 compute mode (``ComputePrecision/bf16``) a packed bf16 copy takes the products the integer kernels
/// do not.
struct WeightMatrix: @unchecked Sendable {
    let rows: Int
    let cols: Int
    let tensor: Tensor
    let quantized: QuantizedRows?
    let bf16: PackedBF16Matrix?

    init(_ tensor: Tensor, quantized: QuantizedRows? = nil, bf16: PackedBF16Matrix? = nil) {
        precondition(tensor.rank == 2)
        self.tensor = tensor
        self.quantized = quantized
        self.bf16 = bf16
        rows = tensor.shape[0]
        cols = tensor.shape[1]
    }

    /// This matrix prepared for decoding/compute: quantized to `format` (or on `kept` blocks, a GGUF file's own),
    /// then (when `bf16`) with a packed bf16 copy of the values the f32 path would use (bf16 checkpoints as stored;
    /// others rounded to nearest even).
    func prepared(_ format: WeightFormat, kept: QuantizedRows? = nil, bf16: Bool) -> WeightMatrix {
        let q = kept.map { WeightMatrix(tensor, quantized: $0) } ?? quantized(format)
        guard bf16 else { return q }
        if q.quantized == nil && dtype == .bf16 {
            let w = tensor.rawPointer.assumingMemoryBound(to: UInt16.self)
            return WeightMatrix(tensor, bf16: PackedBF16Matrix(bf16: w, rows: rows, cols: cols))
        }
        var rounded = [UInt16](repeating: 0, count: rows * cols)
        let row = FloatBuffer(cols), all = FloatBuffer()
        if let qm = q.quantized { qm.dequantize(rows: rows, into: all.reserve(rows * cols)) }
        rounded.withUnsafeMutableBufferPointer { dst in
            for r in 0..<rows {
                let src: UnsafeMutablePointer<Float>
                if q.quantized != nil { src = all.pointer + r * cols } else { copyRow(r, into: row.pointer); src = row.pointer }
                ck_f32_to_bf16(src, dst.baseAddress! + r * cols, cols)
            }
        }
        let packed = rounded.withUnsafeBufferPointer { PackedBF16Matrix(bf16: $0.baseAddress!, rows: rows, cols: cols) }
        return WeightMatrix(tensor, quantized: q.quantized, bf16: packed)
    }

    var dtype: DType { tensor.dtype }

    /// This matrix with a copy quantized to `format` (unchanged for `.stored` or when `cols` is not a multiple of
    /// 32, the block size; `.q4_k` where `cols` is not a multiple of 256 takes Q5_0's values, see ``WeightFormat``).
    func quantized(_ format: WeightFormat) -> WeightMatrix {
        let block: BlockFormat
        switch format {
        case .stored: return self
        case .q8_0: block = .q8_0
        case .q4_0: block = .q4_0
        case .q4_1: block = .q4_1
        case .q4_k: block = cols % 256 == 0 ? .q4_k : .q5_0
        }
        guard cols % 32 == 0 else { return self }
        let q = QuantizedMatrix(format: block, rows: rows, cols: cols) { r, dst in copyRow(r, into: dst) }
        return WeightMatrix(tensor, quantized: QuantizedRows([q]))
    }

    /// Rows `0..<n` of the matrix as f32, valid inside `body`.
    func withF32<R>(rows n: Int? = nil, scratch: FloatBuffer, _ body: (UnsafePointer<Float>) throws -> R) rethrows -> R {
        let count = (n ?? rows) * cols
        if let quantized {
            let dst = scratch.reserve(count)
            quantized.dequantize(rows: n ?? rows, into: dst)
            return try body(UnsafePointer(dst))
        }
        if dtype == .f32 {
            return try body(tensor.rawPointer.assumingMemoryBound(to: Float.self))
        }
        let dst = scratch.reserve(count)
        Convert.toFloat(tensor.rawPointer, dtype: dtype, count: count, into: dst)
        return try body(UnsafePointer(dst))
    }

    /// Row `r` widened to f32 into `dst` (`cols` values).
    func copyRow(_ r: Int, into dst: UnsafeMutablePointer<Float>) {
        Convert.toFloat(tensor.rawPointer + r * cols * dtype.size, dtype: dtype, count: cols, into: dst)
    }

    /// Stacks matrices with the same column count and dtype along rows (a fused projection).
    static func stacked(_ parts: [Tensor]) -> WeightMatrix {
        let dtype = parts[0].dtype
        let cols = parts[0].shape[1]
        let sameType = parts.allSatisfy { $0.dtype == dtype }
        let outType: DType = sameType ? dtype : .f32
        let rows = parts.reduce(0) { $0 + $1.shape[0] }
        let out = Tensor(zeros: [rows, cols], dtype: outType)
        out.withUnsafeMutableBytes { dst in
            var offset = 0
            for p in parts {
                let src = outType == p.dtype ? p : p.converted(to: outType)
                let n = src.byteCount
                dst.baseAddress!.advanced(by: offset).copyMemory(from: src.rawPointer, byteCount: n)
                offset += n
            }
        }
        return WeightMatrix(out)
    }
}

/// One decoder layer's parameters.
struct LayerWeights: @unchecked Sendable {
    let inputNorm: [Float]
    let postAttentionNorm: [Float]
    /// q, k and v projections stacked: `[(heads + 2·kvHeads)·headDim, hidden]`.
    let qkv: WeightMatrix
    let qkvBias: [Float]?
    let output: WeightMatrix
    let outputBias: [Float]?
    /// gate and up projections stacked: `[2·intermediate, hidden]`.
    let gateUp: WeightMatrix
    let gateUpBias: [Float]?
    let down: WeightMatrix
    let downBias: [Float]?
}

/// All parameters of a Llama-family causal LM, read from a checkpoint with Hugging Face tensor names.
struct ModelWeights: @unchecked Sendable {
    let embedding: WeightMatrix
    let layers: [LayerWeights]
    let finalNorm: [Float]
    let lmHead: WeightMatrix

    /// Reads every parameter; with a quantized `format`, the projections get quantized copies in that format and
    /// the LM head a Q8_0 copy, with `bf16` packed bf16 copies too (``WeightMatrix/prepared(_:kept:bf16:)``).
    /// Under `.q4_k`, a matrix whose parts a GGUF import kept as blocks (``GGUFBlocks``, in `path`) runs on those.
    init(checkpoint: Checkpoint, configuration c: TransformerConfiguration, path: String,
         format: WeightFormat = .stored, bf16: Bool = false) throws {
        // The LM head stays at 8 bits under every quantized format, as llama.cpp's quantizer keeps the output
        // matrix (Q6_K, or Q8_0 where rows are not a multiple of 256): 4-bit logits flip the top token too often.
        let headFormat: WeightFormat = format == .stored ? .stored : .q8_0
        let store = format == .q4_k ? try GGUFBlocks.Store(directory: path) : nil
        /// `w` prepared; `names`: the checkpoint tensors stacked in `w`, whose kept blocks are used when all have them.
        func prepare(_ w: WeightMatrix, _ names: [String], as f: WeightFormat? = nil) throws -> WeightMatrix {
            var kept: [QuantizedMatrix] = []
            if let store {
                for name in names {
                    guard let info = checkpoint.info(name), let b = try store.blocks(name, rows: info.shape[0], cols: w.cols)
                    else { break }
                    kept.append(try QuantizedMatrix.fromGGUF(b))
                }
            }
            return w.prepared(f ?? format, kept: kept.count == names.count ? QuantizedRows(kept) : nil, bf16: bf16)
        }
        func load(_ name: String, _ shape: [Int]) throws -> Tensor {
            guard checkpoint.contains(name) else {
                throw ModelIOError(path, "tensor '\(name)' is missing from the checkpoint")
            }
            let t = try checkpoint.tensor(name)
            guard t.shape == shape else {
                throw ModelIOError(path, "tensor '\(name)' has shape \(t.shape), expected \(shape) from config.json")
            }
            guard [.f32, .f16, .bf16].contains(t.dtype) else {
                throw ModelIOError(path, "tensor '\(name)' has dtype \(t.dtype.rawValue); the engine reads F32, F16 and BF16")
            }
            return t
        }
        func vector(_ name: String, _ n: Int) throws -> [Float] { try load(name, [n]).floats() }

        let d = c.hiddenSize, hd = c.headDim, inter = c.intermediateSize
        embedding = WeightMatrix(try load("model.embed_tokens.weight", [c.vocabSize, d]))
        var layers: [LayerWeights] = []
        for i in 0..<c.layers {
            let p = "model.layers.\(i)."
            let q = try load(p + "self_attn.q_proj.weight", [c.heads * hd, d])
            let k = try load(p + "self_attn.k_proj.weight", [c.kvHeads * hd, d])
            let v = try load(p + "self_attn.v_proj.weight", [c.kvHeads * hd, d])
            let qkvBias: [Float]? = c.qkvBias
                ? try vector(p + "self_attn.q_proj.bias", c.heads * hd) + vector(p + "self_attn.k_proj.bias", c.kvHeads * hd)
                    + vector(p + "self_attn.v_proj.bias", c.kvHeads * hd)
                : nil
            let gate = try load(p + "mlp.gate_proj.weight", [inter, d])
            let up = try load(p + "mlp.up_proj.weight", [inter, d])
            layers.append(LayerWeights(
                inputNorm: try vector(p + "input_layernorm.weight", d),
                postAttentionNorm: try vector(p + "post_attention_layernorm.weight", d),
                qkv: try prepare(WeightMatrix.stacked([q, k, v]), ["q_proj", "k_proj", "v_proj"].map { p + "self_attn.\($0).weight" }),
                qkvBias: qkvBias,
                output: try prepare(WeightMatrix(try load(p + "self_attn.o_proj.weight", [d, c.heads * hd])), [p + "self_attn.o_proj.weight"]),
                outputBias: c.outputBias ? try vector(p + "self_attn.o_proj.bias", d) : nil,
                gateUp: try prepare(WeightMatrix.stacked([gate, up]), [p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"]),
                gateUpBias: c.mlpBias ? try vector(p + "mlp.gate_proj.bias", inter) + vector(p + "mlp.up_proj.bias", inter) : nil,
                down: try prepare(WeightMatrix(try load(p + "mlp.down_proj.weight", [d, inter])), [p + "mlp.down_proj.weight"]),
                downBias: c.mlpBias ? try vector(p + "mlp.down_proj.bias", d) : nil))
        }
        self.layers = layers
        finalNorm = try vector("model.norm.weight", d)
        if c.tieWordEmbeddings || !checkpoint.contains("lm_head.weight") {
            guard c.tieWordEmbeddings else {
                throw ModelIOError(path, "tensor 'lm_head.weight' is missing and tie_word_embeddings is false")
            }
            lmHead = try prepare(embedding, ["model.embed_tokens.weight"], as: headFormat)
        } else {
            lmHead = try prepare(WeightMatrix(try load("lm_head.weight", [c.vocabSize, d])), ["lm_head.weight"], as: headFormat)
        }
    }
}
