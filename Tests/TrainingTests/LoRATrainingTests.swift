import Foundation
import LoRA
import ModelIO
import TensorCore
import TestSupport
import Testing
import Training
import Transformer

/// LoRA training (``LoRATrainer``) against PEFT: the factors' gradients against torch autograd through a PEFT model,
/// the written adapter loaded by `PeftModel.from_pretrained` without warnings and merged by `merge_and_unload()` equal
/// to `longctx lora merge` and to the weights training used. References: Tests/Interop/lora_training_interop.py.
@Suite(.serialized) struct LoRATrainingTests {
    static let modules = ["torch", "transformers", "peft", "safetensors"]
    static let script = TestSupport.repoRoot + "/Tests/Interop/lora_training_interop.py"

    /// The script's cases with the same settings.
    static let cases: [String: LoRATrainingConfig] = [
        "untied-all": LoRATrainingConfig(rank: 4, alpha: 8, targets: LoRATarget.allCases, trainable: [.norms, .embed]),
        "tied-attn-rslora": LoRATrainingConfig(rank: 4, alpha: 8, targets: LoRATarget.attention, trainable: [.norms, .embed],
                                               rsLoRA: true),
        "untied-qv": LoRATrainingConfig(rank: 8, alpha: 16, targets: [.qProj, .vProj]),
    ]
    static let names = ["untied-all", "tied-attn-rslora", "untied-qv"]

    static let references: String? = {
        guard TestSupport.pythonHas(modules) else { return nil }
        let dir = TestSupport.scratchDirectory("lora-train")
        let r = try? TestSupport.run("/usr/bin/env", ["python3", script, "grads", dir],
                                     environment: ["PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "2"])
        return r?.status == 0 ? dir : nil
    }()

    static func sequence(_ dir: String) throws -> (TrainingSequence, Double) {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/reference.json"))) as! [String: Any]
        let ints = { (key: String) in (json[key] as! [NSNumber]).map(\.intValue) }
        return (TrainingSequence(tokens: ints("input_ids"), targets: ints("targets")), (json["loss"] as! NSNumber).doubleValue)
    }

    /// One forward/backward at the current factors; returns the mean loss.
    static func step(_ model: TrainableModel, _ lora: LoRATrainer, _ s: TrainingSequence) throws -> Double {
        lora.prepare(model.parameters)
        model.parameters.zeroGradients()
        let n = s.lossTokens
        let (loss, tokens) = try model.accumulateGradients(s, lossScale: 1 / Float(n))
        lora.collectGradients(model.parameters)
        return loss / Double(tokens)
    }

    static func relative(_ a: [Float], _ b: [Float]) -> (rel: Double, norm: Double) {
        var diff = 0.0, norm = 0.0
        for (x, y) in zip(a, b) { diff += Double(x - y) * Double(x - y); norm += Double(y) * Double(y) }
        return ((diff / max(norm, 1e-300)).squareRoot(), norm)
    }

    /// (1) ∂L/∂A, ∂L/∂B (and the norms' / embedding's gradients) for one sequence equal torch autograd through PEFT
    /// with random non-zero A and B, to 1e-4 relative.
    @Test(.enabled(if: TestSupport.pythonHas(modules) || TestSupport.interopRequired), arguments: names)
    func gradientsMatchPEFTAutograd(_ name: String) throws {
        _ = try TestSupport.interopEnabled(Self.modules)
        let dir = try #require(Self.references, "lora_training_interop.py grads failed") + "/" + name
        let model = try TrainableModel(directory: try ModelDirectory(path: dir + "/base"), workers: 2)
        let lora = try LoRATrainer(store: model.parameters, config: Self.cases[name]!)
        try lora.load(adapter: try Adapter(path: dir + "/adapter"))
        let (s, refLoss) = try Self.sequence(dir)
        let loss = try Self.step(model, lora, s)
        #expect(abs(loss - refLoss) / refLoss < 1e-5, "\(name): loss \(loss) vs PEFT \(refLoss)")
        let file = try SafetensorsFile(path: dir + "/grads.safetensors")
        let ours = lora.namedArrays(of: lora.gradients)
        #expect(Set(ours.map(\.key)) == Set(file.names), "\(name): trainable tensors differ from PEFT's")
        for g in ours where file.names.contains(g.key) {
            let (rel, norm) = Self.relative(g.values, try file.tensor(g.key).floats())
            #expect(rel <= 1e-4, "\(name) \(g.key): ‖g − g_torch‖/‖g_torch‖ = \(rel)")
            #expect(norm > 0, "\(name) \(g.key): zero reference gradient")
        }
    }

    /// (2) After a few training steps the written adapter loads in PEFT with no warning or log line, PEFT's loss on
    /// the unmerged model equals ours, and `merge_and_unload()` equals both `longctx lora merge` of the adapter and
    /// the effective weights training used, to 1e-6 (f32).
    @Test(.enabled(if: TestSupport.pythonHas(modules) || TestSupport.interopRequired), arguments: names)
    func writtenAdapterLoadsInPEFTAndMergesLikeLongctx(_ name: String) throws {
        _ = try TestSupport.interopEnabled(Self.modules)
        let ref = try #require(Self.references, "lora_training_interop.py grads failed") + "/" + name
        let root = TestSupport.scratchDirectory("lora-train-out")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let base = ref + "/base"
        let model = try TrainableModel(directory: try ModelDirectory(path: base), workers: 2)
        var config = Self.cases[name]!
        config.seed = 11
        let lora = try LoRATrainer(store: model.parameters, config: config)
        let (s, _) = try Self.sequence(ref)
        var losses: [Double] = []
        for _ in 0..<4 {   // plain SGD: enough to move B off zero and the norms / embedding off the base
            losses.append(try Self.step(model, lora, s))
            for i in 0..<lora.count { lora.values[i] -= 0.5 * lora.gradients[i] }
        }
        #expect(losses.last! < losses.first!, "\(name): loss did not fall: \(losses)")
        lora.prepare(model.parameters)
        let ourLoss = try model.loss(s)
        let effective = root + "/effective.safetensors"
        let tensors = model.parameters.huggingFaceTensors(dtype: .f32)
        let w = try SafetensorsWriter(path: effective, specs: tensors.map { TensorSpec(name: $0.name, dtype: .f32, shape: $0.tensor.shape) })
        for t in tensors { try w.append(name: t.name, tensor: t.tensor) }
        try w.finish()
        try lora.writeAdapter(directory: root + "/adapter", store: model.parameters, baseModel: base)
        let merge = try TestSupport.longctx(["lora", "merge", "--base", base, "--adapter", root + "/adapter", "--out", root + "/merged"])
        try #require(merge.status == 0, "longctx lora merge failed: \(merge.stderr)")
        let r = try TestSupport.run("/usr/bin/env", ["python3", Self.script, "check", base, root + "/adapter", root + "/merged",
                                                     effective, ref + "/reference.json"],
                                    environment: ["PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "2"])
        try #require(r.status == 0, "check failed: \(r.stderr)")
        let line = try #require(r.stdout.split(separator: "\n").last.map(String.init))
        let j = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        #expect((j["warnings"] as! [String]).isEmpty, "\(name): PEFT warned: \(j["warnings"]!)")
        #expect((j["missing_in_peft"] as! [String]).isEmpty && (j["missing_in_ours"] as! [String]).isEmpty, "\(name): \(line)")
        #expect((j["worst_vs_merged"] as! NSNumber).doubleValue <= 1e-6, "\(name): PEFT merge vs longctx lora merge: \(line)")
        #expect((j["worst_vs_effective"] as! NSNumber).doubleValue <= 1e-6, "\(name): PEFT merge vs training weights: \(line)")
        let expectedChanged = lora.modules.count + lora.full.count
        #expect((j["changed_by_adapter"] as! NSNumber).intValue == expectedChanged, "\(name): \(line)")
        let peftLoss = (j["loss"] as! NSNumber).doubleValue, mean = ourLoss.loss / Double(ourLoss.tokens)
        #expect(abs(peftLoss - mean) / mean < 1e-5, "\(name): PEFT loss \(peftLoss) vs ours \(mean)")
    }

    static func randomStore(tied: Bool, seed: UInt64 = 5) throws -> ParameterStore {
        let dir = TestSupport.scratchDirectory("lora-init")
        var spec = RandomModelSpec()
        spec.tieEmbeddings = tied
        spec.seed = seed
        try spec.write(to: dir + "/m")
        let md = try ModelDirectory(path: dir + "/m")
        return try ParameterStore(configuration: try TransformerConfiguration(directory: md), checkpoint: try md.weights(), path: md.path)
    }

    /// (3) At initialisation B = 0, so the effective weights are the base weights bit for bit; A is PEFT's
    /// Kaiming-uniform (`|a| ≤ 1/√in`, spread over the range) and reproducible from the seed.
    @Test func effectiveWeightsEqualBaseAtInit() throws {
        let store = try Self.randomStore(tied: false)
        let before = Array(UnsafeBufferPointer(start: store.values, count: store.count))
        let config = LoRATrainingConfig(rank: 4, alpha: 16, targets: LoRATarget.allCases, trainable: [.norms, .embed], seed: 3)
        let lora = try LoRATrainer(store: store, config: config)
        lora.prepare(store)
        #expect(Array(UnsafeBufferPointer(start: store.values, count: store.count)) == before)
        #expect(lora.modules.count == 2 * 7)
        for m in lora.modules {
            let a = Array(UnsafeBufferPointer(start: lora.values + m.a, count: 4 * m.cols))
            let b = Array(UnsafeBufferPointer(start: lora.values + m.b, count: m.rows * 4))
            let bound = 1 / Float(m.cols).squareRoot()
            #expect(b.allSatisfy { $0 == 0 })
            #expect(a.allSatisfy { abs($0) <= bound })
            #expect(a.map { abs($0) }.max()! > 0.9 * bound && a.reduce(0, +) / Float(a.count) < 0.2 * bound, "\(m.name)")
        }
        let again = try LoRATrainer(store: store, config: config)
        #expect(Array(UnsafeBufferPointer(start: again.values, count: again.count)) == Array(UnsafeBufferPointer(start: lora.values, count: lora.count)))
        var other = config
        other.seed = 4
        let different = try LoRATrainer(store: store, config: other)
        #expect(different.values[0] != lora.values[0])
        // Trainable layout: 2·7 (A, B) pairs, 2·2 + 1 norms, the embedding.
        #expect(lora.segments.count == 2 * 14 + 5 + 1)
        #expect(lora.count == lora.segments.last!.range.upperBound)
    }

    /// The gradient formulas against finite differences of the loss in f64-free form: ∂L/∂B = s·G·Aᵀ, ∂L/∂A = s·Bᵀ·G
    /// checked on the store's own gradient (no Python): for a random G, ⟨∂B, δB⟩ + ⟨∂A, δA⟩ equals ⟨G, δW⟩ to first order.
    @Test func factorGradientsAreTheChainRule() throws {
        let store = try Self.randomStore(tied: true)
        let lora = try LoRATrainer(store: store, config: LoRATrainingConfig(rank: 2, alpha: 6, targets: [.vProj, .downProj]))
        for i in 0..<lora.count { lora.values[i] = Float(sin(Double(i) * 0.37)) * 0.1 }
        for i in 0..<store.count { store.gradients[i] = Float(cos(Double(i) * 0.11)) }
        lora.collectGradients(store)
        let s = lora.config.scale
        for m in lora.modules {
            // Direct sums: ∂B[i][k] = s Σ_j G[i][j]·A[k][j], ∂A[k][j] = s Σ_i B[i][k]·G[i][j].
            let g = store.gradients + m.storeOffset, r = 2
            for (i, k) in [(0, 0), (m.rows - 1, 1), (m.rows / 2, 0)] {
                var x = 0.0
                for j in 0..<m.cols { x += Double(g[i * m.cols + j]) * Double(lora.values[m.a + k * m.cols + j]) }
                #expect(abs(Double(lora.gradients[m.b + i * r + k]) - s * x) <= 1e-4 * max(1, abs(s * x)))
            }
            for (k, j) in [(0, 0), (1, m.cols - 1), (1, m.cols / 3)] {
                var x = 0.0
                for i in 0..<m.rows { x += Double(lora.values[m.b + i * r + k]) * Double(g[i * m.cols + j]) }
                #expect(abs(Double(lora.gradients[m.a + k * m.cols + j]) - s * x) <= 1e-4 * max(1, abs(s * x)))
            }
        }
    }

    @Test func badConfigurationsNameTheOption() throws {
        let store = try Self.randomStore(tied: false)
        let bad: [(LoRATrainingConfig, String)] = [
            (LoRATrainingConfig(rank: 0), "--lora-rank"),
            (LoRATrainingConfig(alpha: -1), "--lora-alpha"),
            (LoRATrainingConfig(targets: []), "--lora-targets"),
            (LoRATrainingConfig(targets: [.qProj, .qProj]), "--lora-targets"),
            (LoRATrainingConfig(dropout: 0.1), "dropout"),
        ]
        let targets: [LoRATarget] = try LoRATrainingConfig.list("q_proj, v_proj,down_proj", option: "--lora-targets")
        #expect(targets == [.qProj, .vProj, .downProj])
        let extra: [LoRAExtraTrainable] = try LoRATrainingConfig.list("norms,embed", option: "--lora-trainable")
        #expect(extra == [.norms, .embed])
        #expect { let _: [LoRATarget] = try LoRATrainingConfig.list("q_proj,lm_head", option: "--lora-targets") } throws: {
            "\($0)".contains("--lora-targets: unknown name 'lm_head'")
        }
        #expect { let _: [LoRAExtraTrainable] = try LoRATrainingConfig.list("norms,norms", option: "--lora-trainable") } throws: {
            "\($0)".contains("listed twice")
        }
        for (c, word) in bad {
            #expect { try LoRATrainer(store: store, config: c) } throws: { "\($0)".contains(word) }
        }
    }
}
