import Basics
import Foundation
import LoRA
import ModelIO
import TensorCore

/// A linear projection that LoRA training can adapt, by PEFT's leaf module name.
public enum LoRATarget: String, CaseIterable, Sendable, Codable {
    case qProj = "q_proj", kProj = "k_proj", vProj = "v_proj", oProj = "o_proj"
    case gateProj = "gate_proj", upProj = "up_proj", downProj = "down_proj"

    /// LongLoRA's choice: the attention projections.
    public static let attention: [LoRATarget] = [.qProj, .kProj, .vProj, .oProj]
}

/// Weights trained in full beside the LoRA factors (LongLoRA: both matter for long context).
public enum LoRAExtraTrainable: String, CaseIterable, Sendable, Codable {
    /// Every RMSNorm weight (input, post-attention, final).
    case norms
    /// The token embedding (and, when tied, the LM head with it).
    case embed
}

/// What LoRA training adapts and how (PEFT `LoraConfig` semantics: `ΔW = s·B·A`, `s = alpha/r`, or `alpha/√r`
/// with rsLoRA; A Kaiming-uniform as `nn.Linear`, B zero).
public struct LoRATrainingConfig: Sendable, Equatable, Codable {
    public var rank: Int
    public var alpha: Double
    public var targets: [LoRATarget]
    public var trainable: [LoRAExtraTrainable]
    public var rsLoRA: Bool
    /// Seed of A's initialisation (``SeededRandom``).
    public var seed: UInt64
    /// LoRA dropout; only 0 is supported (the update is then exactly a change of the weight).
    public var dropout: Double

    public init(rank: Int = 8, alpha: Double = 16, targets: [LoRATarget] = LoRATarget.attention,
                trainable: [LoRAExtraTrainable] = [], rsLoRA: Bool = false, seed: UInt64 = 0, dropout: Double = 0) {
        self.rank = rank; self.alpha = alpha; self.targets = targets; self.trainable = trainable
        self.rsLoRA = rsLoRA; self.seed = seed; self.dropout = dropout
    }

    /// Parses a comma-separated list of raw values (`q_proj,v_proj`; `norms,embed`) as the CLI's `option` takes it;
    /// an unknown or repeated name is an error naming the option and the accepted names.
    public static func list<T: RawRepresentable & CaseIterable>(_ text: String, option: String) throws -> [T] where T.RawValue == String {
        var out: [T] = []
        for name in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !name.isEmpty {
            guard let v = T(rawValue: name) else {
                throw TrainingError("\(option): unknown name '\(name)'; accepted: \(T.allCases.map(\.rawValue).joined(separator: ","))")
            }
            guard !out.contains(where: { $0.rawValue == name }) else { throw TrainingError("\(option): '\(name)' is listed twice") }
            out.append(v)
        }
        return out
    }

    /// The factor `s` of `ΔW = s·B·A`.
    public var scale: Double { rsLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank) }

    /// Checks the values; errors name the option.
    public func validate() throws {
        guard rank > 0 else { throw TrainingError("--lora-rank must be a positive integer, got \(rank)") }
        guard alpha.isFinite, alpha > 0 else { throw TrainingError("--lora-alpha must be a positive number, got \(alpha)") }
        guard !targets.isEmpty else { throw TrainingError("--lora-targets is empty; name at least one of \(LoRATarget.allCases.map(\.rawValue).joined(separator: ","))") }
        guard Set(targets).count == targets.count else { throw TrainingError("--lora-targets lists a module twice") }
        guard dropout == 0 else { throw TrainingError("LoRA dropout \(dropout) is not supported; only 0") }
    }
}

/// An error of the training configuration, naming the option or field.
public struct TrainingError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ message: String) { description = message }
}

/// LoRA training over a ``ParameterStore`` (LongLoRA-style), exact and simple: the frozen base weights `W₀` of the
/// adapted modules are kept as an f32 copy; ``prepare(_:)`` writes `W = W₀ + s·B·A` into the store before a step, the
/// ordinary forward/backward accumulates `G = ∂L/∂W` in the store's gradients, and ``collectGradients(_:)`` turns
/// it into `∂L/∂B = s·G·Aᵀ` and `∂L/∂A = s·Bᵀ·G` (exact: `W` depends on `A`, `B` only through `s·B·A`).
///
/// All trainable numbers (every module's A then B, then the fully trained norms / embedding) live in one flat
/// buffer ``values`` with gradients in ``gradients`` of the same layout, so the optimizer, clipping and the
/// training-state file treat them as they treat full fine-tuning; ``segments`` says where each tensor is.
public final class LoRATrainer: @unchecked Sendable {
    /// One adapted projection: rows `firstRow..<firstRow+rows` of store slot `slot` (`[rows, cols]`, row-major).
    public struct Module: Sendable {
        /// PEFT module name, e.g. `model.layers.0.self_attn.q_proj`.
        public let name: String
        /// Offset of the module's first weight in the store's buffers.
        public let storeOffset: Int
        public let rows: Int, cols: Int
        /// Offsets of A (`[r, cols]`) and B (`[rows, r]`) in ``LoRATrainer/values``.
        public let a: Int, b: Int
        /// Offset of the module's `W₀` in the frozen copy.
        let base: Int
    }

    /// A fully trained tensor (norm or embedding): `count` floats at `storeOffset` in the store.
    public struct Full: Sendable {
        /// Transformers' tensor name, e.g. `model.norm.weight`.
        public let tensor: String
        public let storeOffset: Int
        public let shape: [Int]
        public let offset: Int
        public var count: Int { shape.reduce(1, *) }
    }

    /// A named run of ``values`` for the optimizer (weight decay on matrices, as ``ParameterStore/Slot``).
    public struct Segment: Sendable {
        public let name: String
        public let range: Range<Int>
        public let decays: Bool
    }

    public let config: LoRATrainingConfig
    public let modules: [Module]
    public let full: [Full]
    public let segments: [Segment]
    public let count: Int
    /// The trainable values and their gradients (same layout).
    public let values: UnsafeMutablePointer<Float>
    public let gradients: UnsafeMutablePointer<Float>
    /// Whether the store's LM head is the embedding.
    public let tiedEmbeddings: Bool
    private let frozen: [Float]

    /// Lays out the factors for every targeted projection of `store`, keeps its current weights as `W₀`, takes the
    /// fully trained tensors' current values, and initialises as PEFT: `A ~ U(−1/√in, 1/√in)` (`nn.Linear`'s
    /// `kaiming_uniform_(a=√5)`), `B = 0`, drawn in module order from ``SeededRandom`` with `config.seed`.
    public init(store: ParameterStore, config: LoRATrainingConfig) throws {
        try config.validate()
        self.config = config
        tiedEmbeddings = store.configuration.tieWordEmbeddings
        let r = config.rank, targets = Set(config.targets.map(\.rawValue))
        var modules: [Module] = [], full: [Full] = [], segments: [Segment] = []
        var offset = 0, baseCount = 0
        for slot in store.slots where slot.cols > 1 {
            for part in slot.parts where part.name.hasSuffix(".weight") {
                let name = String(part.name.dropLast(".weight".count))
                guard targets.contains(String(name.split(separator: ".").last!)) else { continue }
                let m = Module(name: name, storeOffset: slot.offset + part.firstRow * slot.cols, rows: part.rows, cols: slot.cols,
                               a: offset, b: offset + r * slot.cols, base: baseCount)
                segments.append(Segment(name: AdapterKeys.a(name, .linear), range: m.a..<m.b, decays: true))
                segments.append(Segment(name: AdapterKeys.b(name, .linear), range: m.b..<(m.b + m.rows * r), decays: true))
                offset = m.b + m.rows * r
                baseCount += m.rows * m.cols
                modules.append(m)
            }
        }
        let extra = Set(config.trainable)
        for slot in store.slots {
            let isNorm = slot.name.hasSuffix("norm"), isEmbed = slot.name == "embed"
            guard (isNorm && extra.contains(.norms)) || (isEmbed && extra.contains(.embed)) else { continue }
            let f = Full(tensor: slot.parts[0].name, storeOffset: slot.offset, shape: slot.cols == 1 ? [slot.rows] : [slot.rows, slot.cols],
                         offset: offset)
            segments.append(Segment(name: AdapterKeys.saved(f.tensor), range: offset..<(offset + f.count), decays: slot.decays))
            offset += f.count
            full.append(f)
        }
        self.modules = modules; self.full = full; self.segments = segments; count = offset
        values = .allocate(capacity: max(1, offset)); values.initialize(repeating: 0, count: max(1, offset))
        gradients = .allocate(capacity: max(1, offset)); gradients.initialize(repeating: 0, count: max(1, offset))
        var frozen = [Float](repeating: 0, count: baseCount)
        var rng = SeededRandom(seed: config.seed)
        for m in modules {
            frozen.withUnsafeMutableBufferPointer { ($0.baseAddress! + m.base).update(from: store.values + m.storeOffset, count: m.rows * m.cols) }
            let bound = 1 / Double(m.cols).squareRoot()
            for i in 0..<(r * m.cols) { values[m.a + i] = Float((2 * rng.uniform() - 1) * bound) }
        }
        self.frozen = frozen
        for f in full { (values + f.offset).update(from: store.values + f.storeOffset, count: f.count) }
    }

    deinit {
        values.deallocate()
        gradients.deallocate()
    }

    public func zeroGradients() { gradients.update(repeating: 0, count: max(1, count)) }

    /// Writes the effective weights into `store`: `W = W₀ + s·B·A` for every adapted module (the same product and
    /// order as ``LoRAMerger``, so a merge of the written adapter gives these weights), and the fully trained tensors.
    public func prepare(_ store: ParameterStore) {
        let s = Float(config.scale), r = config.rank
        frozen.withUnsafeBufferPointer { w0 in
            for m in modules {
                let w = store.values + m.storeOffset
                w.update(from: w0.baseAddress! + m.base, count: m.rows * m.cols)
                // W[rows, cols] += s·B[rows, r]·A[r, cols]
                BLAS.sgemm(m: m.rows, n: m.cols, k: r, alpha: s, a: values + m.b, lda: r, b: values + m.a, ldb: m.cols,
                           beta: 1, c: w, ldc: m.cols)
            }
        }
        for f in full { (store.values + f.storeOffset).update(from: values + f.offset, count: f.count) }
    }

    /// Sets ``gradients`` from the store's accumulated weight gradients `G`: `∂B = s·G·Aᵀ` (`[rows, r]`),
    /// `∂A = s·Bᵀ·G` (`[r, cols]`), and the fully trained tensors' gradients copied. Overwrites; call once per step
    /// after all micro-batches (both are linear in `G`).
    public func collectGradients(_ store: ParameterStore) {
        let s = Float(config.scale), r = config.rank
        for m in modules {
            let g = store.gradients + m.storeOffset
            BLAS.sgemm(transB: true, m: m.rows, n: r, k: m.cols, alpha: s, a: g, lda: m.cols, b: values + m.a, ldb: m.cols,
                       beta: 0, c: gradients + m.b, ldc: r)
            BLAS.sgemm(transA: true, m: r, n: m.cols, k: m.rows, alpha: s, a: values + m.b, lda: r, b: g, ldb: m.cols,
                       beta: 0, c: gradients + m.a, ldc: m.cols)
        }
        for f in full { (gradients + f.offset).update(from: store.gradients + f.storeOffset, count: f.count) }
    }

    /// A buffer of this layout (values, gradients, a moment) as adapter tensors: `(PEFT key, shape, values)` with
    /// the factors unscaled (`ΔW = s·B·A`).
    public func namedArrays(of buffer: UnsafePointer<Float>) -> [(key: String, shape: [Int], values: [Float])] {
        let r = config.rank
        var out: [(String, [Int], [Float])] = []
        for m in modules {
            out.append((AdapterKeys.a(m.name, .linear), [r, m.cols], Array(UnsafeBufferPointer(start: buffer + m.a, count: r * m.cols))))
            out.append((AdapterKeys.b(m.name, .linear), [m.rows, r], Array(UnsafeBufferPointer(start: buffer + m.b, count: m.rows * r))))
        }
        for f in full { out.append((AdapterKeys.saved(f.tensor), f.shape, Array(UnsafeBufferPointer(start: buffer + f.offset, count: f.count)))) }
        return out
    }

    /// Takes the factors (and fully trained tensors) from a PEFT adapter written for the same modules and rank; B is
    /// rescaled when the adapter's scaling differs from ours, so the adapter's `ΔW` is kept exactly.
    public func load(adapter: Adapter) throws {
        let byName = Dictionary(adapter.modules.map { ($0.module, $0) }, uniquingKeysWith: { a, _ in a })
        for m in modules {
            guard let lora = byName[m.name] else { throw ModelIOError(adapter.path, "has no LoRA factors for module '\(m.name)'") }
            guard lora.kind == .linear, lora.rank == config.rank, lora.rows == m.rows, lora.cols == m.cols else {
                throw ModelIOError(adapter.path, "module '\(m.name)': rank \(lora.rank), \(lora.rows)×\(lora.cols); training expects rank \(config.rank), \(m.rows)×\(m.cols)")
            }
            let f = try adapter.factors(lora), c = Float(lora.scaling / config.scale)
            (values + m.a).update(from: f.a, count: f.a.count)
            for (i, x) in f.b.enumerated() { values[m.b + i] = x * c }
        }
        let saved = Dictionary(adapter.saved.map { ($0.tensor, $0.key) }, uniquingKeysWith: { a, _ in a })
        for f in full {
            guard let key = saved[f.tensor] else { throw ModelIOError(adapter.path, "does not save '\(f.tensor)' (modules_to_save)") }
            let x = try adapter.file.tensor(key).floats()
            guard x.count == f.count else { throw ModelIOError(adapter.path, "'\(key)' has \(x.count) values, expected \(f.count)") }
            (values + f.offset).update(from: x, count: x.count)
        }
    }

    /// PEFT's `modules_to_save` for the fully trained tensors. PEFT matches `name.endswith(entry)` without a dot, so
    /// the final norm is named `model.norm` (a bare `norm` would also catch every layer norm).
    var modulesToSave: [String] {
        var out: [String] = []
        for f in full {
            let module = String(f.tensor.dropLast(".weight".count))
            let leaf = String(module.split(separator: ".").last!)
            let entry = leaf == "norm" ? module : leaf
            if !out.contains(entry) { out.append(entry) }
        }
        return out
    }

    /// The adapter as the `LoRA` target writes it: unscaled factors with `lora_alpha`/`use_rslora` giving `s`,
    /// `target_modules` as leaf names, fully trained tensors in `savedDType` (the base checkpoint's dtype, so that
    /// `longctx lora merge` writes them unchanged) and `modules_to_save`.
    public func adapterContents(store: ParameterStore, baseModel: String, savedDType: DType = .f32) -> AdapterContents {
        var c = AdapterContents()
        let r = config.rank
        for m in modules {
            let a = Array(UnsafeBufferPointer(start: values + m.a, count: r * m.cols))
            let b = Array(UnsafeBufferPointer(start: values + m.b, count: m.rows * r))
            c.modules.append(.init(name: m.name, kind: .linear, factors: LoRAFactors(a: a, b: b, rank: r, rows: m.rows, cols: m.cols)))
        }
        for f in full {
            let t = Tensor(shape: f.shape, floats: Array(UnsafeBufferPointer(start: values + f.offset, count: f.count)))
            c.saved.append((f.tensor, savedDType == .f32 ? t : t.converted(to: savedDType)))
            // PEFT's `ensure_weight_tying` expects the tied LM head's copy saved too.
            if f.tensor == "model.embed_tokens.weight" && tiedEmbeddings { c.saved.append(("lm_head.weight", c.saved.last!.1)) }
        }
        c.modulesToSave = modulesToSave
        let linear = store.slots.filter { $0.cols > 1 }.flatMap(\.parts).map { String($0.name.dropLast(".weight".count)) }
        c.targetModules = AdapterContents.targetList(loraModules: modules.map(\.name), allModules: linear)
        c.baseModel = baseModel
        let alpha: JSONValue = config.alpha == config.alpha.rounded() ? .int(Int(config.alpha)) : .double(config.alpha)
        c.extraConfig = [("lora_alpha", alpha), ("use_rslora", .bool(config.rsLoRA))]
        if tiedEmbeddings && config.trainable.contains(.embed) { c.extraConfig.append(("ensure_weight_tying", .bool(true))) }
        return c
    }

    /// Writes the PEFT adapter directory `directory` (must not exist; appears complete by one rename):
    /// `adapter_config.json`, `adapter_model.safetensors` and a model card.
    public func writeAdapter(directory: String, store: ParameterStore, baseModel: String, savedDType: DType = .f32,
                             note: String = "") throws {
        let contents = adapterContents(store: store, baseModel: baseModel, savedDType: savedDType)
        try ModelDirectory.assemble(at: directory) { tmp in try contents.write(into: tmp, readme: modelCard(contents, note: note)) }
    }

    func modelCard(_ c: AdapterContents, note: String) -> String {
        """
        ---
        library_name: peft
        base_model: \(c.baseModel)
        tags:
        - lora
        - longcontext
        - long-context
        ---

        # LoRA trained with LongContext

        Trained by `longctx train` in LoRA mode (LongLoRA-style): `W = W₀ + s·B·A` on \
        \(c.targetModules.joined(separator: ", ")), rank \(config.rank), lora_alpha \(config.alpha), \
        s = \(config.scale)\(config.rsLoRA ? " (rsLoRA)" : ""); fully trained: \
        \(c.modulesToSave.isEmpty ? "none" : c.modulesToSave.joined(separator: ", ")).\(note.isEmpty ? "" : "\n\n" + note)

        ## Use

        ```python
        from peft import PeftModel
        model = PeftModel.from_pretrained(base_model, "path/to/this/adapter")
        ```

        or merge it: `longctx lora merge --base BASE --adapter path/to/this/adapter --out MERGED`.

        """
    }
}
