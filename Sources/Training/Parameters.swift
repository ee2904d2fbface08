import Foundation
import ModelIO
import TensorCore
import Transformer

/// Trainable f32 master weights of a Llama-family model in one flat buffer, with the gradients in a buffer of the
/// same layout, so the optimizer and the training-state file see one array each.
///
/// Each *slot* is one matrix or vector as the engine uses it: q/k/v stacked by rows into `qkv`
/// (`[(heads + 2·kvHeads)·headDim, hidden]`), gate/up into `gateUp` (`[2·intermediate, hidden]`), the rest as in the
/// checkpoint. ``huggingFaceTensors(of:)`` un-stacks them back to transformers' names for saving.
public final class ParameterStore: @unchecked Sendable {
    /// One parameter tensor inside the flat buffers.
    public struct Slot: Sendable, Equatable {
        public let name: String
        public let offset: Int
        public let rows: Int
        public let cols: Int
        /// Transformers' tensors stored in this slot, each a run of rows: `(name, firstRow, rowCount)`.
        public let parts: [Part]
        /// Whether weight decay applies (matrices: yes; norms and biases: no, as transformers' Trainer).
        public let decays: Bool
        public var count: Int { rows * cols }
        public var range: Range<Int> { offset..<(offset + count) }
    }

    public struct Part: Sendable, Equatable {
        public let name: String
        public let firstRow: Int
        public let rows: Int
    }

    public let configuration: TransformerConfiguration
    public let slots: [Slot]
    public let count: Int
    /// The master weights.
    public let values: UnsafeMutablePointer<Float>
    /// The gradients, same layout.
    public let gradients: UnsafeMutablePointer<Float>
    private let index: [String: Int]

    /// The layout for a configuration (no values yet): slots in the order embed, per layer (input norm, qkv, qkv
    /// bias, o, o bias, post-attention norm, gateUp, gateUp bias, down, down bias), final norm, lm head (untied).
    public init(configuration c: TransformerConfiguration) {
        configuration = c
        var slots: [Slot] = [], offset = 0
        func add(_ name: String, _ rows: Int, _ cols: Int, decays: Bool, _ parts: [Part]) {
            slots.append(Slot(name: name, offset: offset, rows: rows, cols: cols, parts: parts, decays: decays))
            offset += rows * cols
        }
        func single(_ name: String, _ hf: String, _ rows: Int, _ cols: Int, decays: Bool) {
            add(name, rows, cols, decays: decays, [Part(name: hf, firstRow: 0, rows: rows)])
        }
        let d = c.hiddenSize, qw = c.queryWidth, kvw = c.kvWidth, inter = c.intermediateSize
        single("embed", "model.embed_tokens.weight", c.vocabSize, d, decays: true)
        for l in 0..<c.layers {
            let p = "model.layers.\(l)."
            single("\(l).input_norm", p + "input_layernorm.weight", d, 1, decays: false)
            let qkvParts = [Part(name: p + "self_attn.q_proj", firstRow: 0, rows: qw),
                            Part(name: p + "self_attn.k_proj", firstRow: qw, rows: kvw),
                            Part(name: p + "self_attn.v_proj", firstRow: qw + kvw, rows: kvw)]
            add("\(l).qkv", qw + 2 * kvw, d, decays: true, qkvParts.map { Part(name: $0.name + ".weight", firstRow: $0.firstRow, rows: $0.rows) })
            if c.qkvBias {
                add("\(l).qkv_bias", qw + 2 * kvw, 1, decays: false, qkvParts.map { Part(name: $0.name + ".bias", firstRow: $0.firstRow, rows: $0.rows) })
            }
            single("\(l).o", p + "self_attn.o_proj.weight", d, qw, decays: true)
            if c.outputBias { single("\(l).o_bias", p + "self_attn.o_proj.bias", d, 1, decays: false) }
            single("\(l).post_norm", p + "post_attention_layernorm.weight", d, 1, decays: false)
            let guParts = [Part(name: p + "mlp.gate_proj", firstRow: 0, rows: inter),
                           Part(name: p + "mlp.up_proj", firstRow: inter, rows: inter)]
            add("\(l).gate_up", 2 * inter, d, decays: true, guParts.map { Part(name: $0.name + ".weight", firstRow: $0.firstRow, rows: $0.rows) })
            if c.mlpBias {
                add("\(l).gate_up_bias", 2 * inter, 1, decays: false, guParts.map { Part(name: $0.name + ".bias", firstRow: $0.firstRow, rows: $0.rows) })
            }
            single("\(l).down", p + "mlp.down_proj.weight", d, inter, decays: true)
            if c.mlpBias { single("\(l).down_bias", p + "mlp.down_proj.bias", d, 1, decays: false) }
        }
        single("final_norm", "model.norm.weight", d, 1, decays: false)
        if !c.tieWordEmbeddings { single("lm_head", "lm_head.weight", c.vocabSize, d, decays: true) }
        self.slots = slots
        count = offset
        index = Dictionary(uniqueKeysWithValues: slots.enumerated().map { ($1.name, $0) })
        values = .allocate(capacity: max(1, offset))
        values.initialize(repeating: 0, count: max(1, offset))
        gradients = .allocate(capacity: max(1, offset))
        gradients.initialize(repeating: 0, count: max(1, offset))
    }

    deinit {
        values.deallocate()
        gradients.deallocate()
    }

    /// Loads the master weights from a checkpoint (any of F32/F16/BF16, widened exactly). Errors name the tensor.
    public convenience init(configuration: TransformerConfiguration, checkpoint: Checkpoint, path: String) throws {
        self.init(configuration: configuration)
        for slot in slots {
            for part in slot.parts {
                guard checkpoint.contains(part.name) else {
                    throw ModelIOError(path, "tensor '\(part.name)' is missing from the checkpoint")
                }
                let t = try checkpoint.tensor(part.name)
                let expected = slot.cols == 1 ? [part.rows] : [part.rows, slot.cols]
                guard t.shape == expected else {
                    throw ModelIOError(path, "tensor '\(part.name)' has shape \(t.shape), expected \(expected) from config.json")
                }
                guard [.f32, .f16, .bf16].contains(t.dtype) else {
                    throw ModelIOError(path, "tensor '\(part.name)' has dtype \(t.dtype.rawValue); training reads F32, F16 and BF16")
                }
                Convert.toFloat(t.rawPointer, dtype: t.dtype, count: t.count,
                                into: values + slot.offset + part.firstRow * slot.cols)
            }
        }
    }

    public func slot(_ name: String) -> Slot? { index[name].map { slots[$0] } }

    /// Pointer to a slot's values (`nil` when the model has no such slot, e.g. biases).
    public func value(_ name: String) -> UnsafeMutablePointer<Float>? { slot(name).map { values + $0.offset } }
    public func gradient(_ name: String) -> UnsafeMutablePointer<Float>? { slot(name).map { gradients + $0.offset } }

    /// The LM head's slot: the embedding when tied.
    public var lmHeadName: String { configuration.tieWordEmbeddings ? "embed" : "lm_head" }

    public func zeroGradients() { gradients.update(repeating: 0, count: count) }

    /// A buffer of this layout (the weights, the gradients, an optimizer moment) split into transformers' tensors,
    /// sorted by name: `(name, shape, values)`.
    public func huggingFaceArrays(of buffer: UnsafePointer<Float>) -> [(name: String, shape: [Int], values: [Float])] {
        var out: [(String, [Int], [Float])] = []
        for slot in slots {
            for part in slot.parts {
                let shape = slot.cols == 1 ? [part.rows] : [part.rows, slot.cols]
                let src = buffer + slot.offset + part.firstRow * slot.cols
                out.append((part.name, shape, Array(UnsafeBufferPointer(start: src, count: part.rows * slot.cols))))
            }
        }
        return out.sorted { $0.0 < $1.0 }
    }

    /// The weights as transformers names them, in `dtype` (rounded to nearest even when narrower), for writing a
    /// checkpoint; `lm_head.weight` is absent when tied, as `save_pretrained` writes it.
    public func huggingFaceTensors(dtype: DType) -> [(name: String, tensor: Tensor)] {
        huggingFaceArrays(of: values).map { item in
            let f32 = Tensor(shape: item.shape, floats: item.values)
            return (item.name, dtype == .f32 ? f32 : f32.converted(to: dtype))
        }
    }
}
