import Foundation
import LoRA
import ModelIO
import TensorCore
import Testing
import TestSupport

/// Extraction and merging end to end through the library and the CLI: the merged model matches the
/// fine-tune to exactly the error the discarded singular values predict (Eckart–Young), per module.
@Suite("LoRA extract and merge")
struct ExtractMergeTests {
    static let linear = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    @Test("extract → merge reproduces the fine-tune to the predicted error (exact and randomized, portable scaling)", arguments: [true, false])
    func roundTrip(exact: Bool) throws {
        let root = TestSupport.scratchDirectory("lora-rt")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (base, tuned) = try Pair.make(root)
        var o = ExtractionOptions()
        o.policy.maxRank = 5          // below the true rank 6 of most modules: a real truncation
        o.exact = exact
        o.oversampling = 5
        let report = try LoRAExtractor.extract(base: base, tuned: tuned, out: root + "/adapter", options: o)
        let merged = root + "/merged"
        try LoRAMerger.merge(model: base, adapters: [root + "/adapter"], out: merged)
        let bw = try Checkpoint(directory: base), tw = try Checkpoint(directory: tuned), mw = try Checkpoint(directory: merged)
        #expect(mw.names == tw.names)
        #expect(mw.isSharded && mw.shardNames.count == bw.shardNames.count)
        for m in report.modules {
            let w = m.module + ".weight"
            let t = try tw.tensor(w).floats(), b = try bw.tensor(w).floats(), g = try mw.tensor(w).floats()
            switch m.action {
            case "lora":
                // ‖merged − tuned‖ = ‖Δ − BA‖ = relErr·‖Δ‖
                var num = 0.0, den = 0.0, wt = 0.0
                for i in t.indices {
                    num += Double(g[i] - t[i]) * Double(g[i] - t[i]); den += Double(t[i] - b[i]) * Double(t[i] - b[i]); wt += Double(t[i]) * Double(t[i])
                }
                let err = (num / den).squareRoot()
                // f32 rounding of the merged weight: ≤ 2⁻²⁴ per element relative to W, i.e. ~6e-8·‖W‖/‖Δ‖ relative to Δ.
                let roundingFloor = 2 * 6e-8 * (wt / den).squareRoot()
                #expect(abs(err - m.relativeError) <= 1e-3 * m.relativeError + roundingFloor, "\(m.module): measured \(err), predicted \(m.relativeError)")
                #expect(m.rank <= 5)
            case "saved":
                #expect(g == t, "\(m.module) saved whole must equal the fine-tune")
            default:
                Issue.record("unexpected action \(m.action) for \(m.module)")
            }
        }
        // Modules with true rank < 5 are reproduced to the noise floor; k_proj of layer 1 has rank 2.
        let k1 = try #require(report.modules.first { $0.module == "model.layers.1.self_attn.k_proj" })
        #expect(k1.energyRetained > 0.9999)
        let cfg = try FileOps.readJSONObject(root + "/adapter/adapter_config.json").0
        #expect(cfg["r"]?.intValue == 5 && cfg["lora_alpha"]?.intValue == 5)
        #expect(cfg["alpha_pattern"]?.objectValue?.isEmpty == true)
        #expect(Set(cfg["modules_to_save"]?.arrayValue?.compactMap(\.stringValue) ?? []) == ["embed_tokens", "input_layernorm", "post_attention_layernorm", "norm", "lm_head"])
        #expect(FileManager.default.fileExists(atPath: root + "/adapter/README.md"))
    }

    @Test("energy target, relative threshold and global budget pick lower ranks where the spectrum allows")
    func rankPolicies() throws {
        let root = TestSupport.scratchDirectory("lora-policy")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (base, tuned) = try Pair.make(root)
        var o = ExtractionOptions()
        o.policy.maxRank = 16
        o.policy.energy = 0.99
        let r1 = try LoRAExtractor.extract(base: base, tuned: tuned, out: root + "/a1", options: o)
        for m in r1.modules where m.action == "lora" { #expect(m.energyRetained >= 0.99) }
        #expect(r1.modules.first { $0.module == "model.layers.1.self_attn.k_proj" }!.rank <= 2)
        // Ranks differ, so rank_pattern holds the lower ones and the merge still reproduces the deltas.
        let cfg = try FileOps.readJSONObject(root + "/a1/adapter_config.json").0
        #expect(!(cfg["rank_pattern"]?.objectValue?.isEmpty ?? true))
        o.policy.energy = nil
        o.parameterBudget = 3000
        let r2 = try LoRAExtractor.extract(base: base, tuned: tuned, out: root + "/a2", options: o)
        #expect(r2.loraParameters <= 3000 && r2.loraParameters > 2000)
    }

    @Test("mismatched pairs fail before any output is written", arguments: ["missing", "shape", "vocab", "arch"])
    func mismatchedPairs(kind: String) throws {
        let root = TestSupport.scratchDirectory("lora-bad")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (base, _) = try Pair.make(root)
        var spec = RandomModelSpec()
        spec.layers = 2; spec.hiddenSize = 32; spec.intermediateSize = 64; spec.heads = 4; spec.kvHeads = 2; spec.vocabSize = 96; spec.seed = 8
        switch kind {
        case "missing": spec.layers = 3          // one more layer: tensors the base lacks
        case "shape": spec.intermediateSize = 48
        case "vocab": spec.vocabSize = 100
        default: spec.architecture = "mistral"
        }
        try spec.write(to: root + "/other")
        let r = try TestSupport.longctx(["lora", "extract", "--base", base, "--tuned", root + "/other", "--out", root + "/adapter"])
        #expect(r.status != 0)
        let expected = ["missing": "lacks", "shape": "has shape", "vocab": "vocab", "arch": "architecture"][kind]!
        #expect(r.stderr.contains(expected), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: root + "/adapter"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: root).filter { $0.hasPrefix(".adapter") }.isEmpty)
    }

    @Test("an adapter that does not fit the model is refused before writing")
    func adapterMismatch() throws {
        let root = TestSupport.scratchDirectory("lora-fit")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (base, tuned) = try Pair.make(root)
        var o = ExtractionOptions(); o.policy.maxRank = 2
        try LoRAExtractor.extract(base: base, tuned: tuned, out: root + "/adapter", options: o)
        var spec = RandomModelSpec()
        spec.layers = 2; spec.hiddenSize = 32; spec.intermediateSize = 64; spec.heads = 4; spec.kvHeads = 2; spec.vocabSize = 128
        try spec.write(to: root + "/bigvocab")
        let r = try TestSupport.longctx(["lora", "merge", "--base", root + "/bigvocab", "--adapter", root + "/adapter", "--out", root + "/merged"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("vocabulary"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: root + "/merged"))
        spec.vocabSize = 96; spec.intermediateSize = 80
        try spec.write(to: root + "/wide")
        let r2 = try TestSupport.longctx(["lora", "merge", "--base", root + "/wide", "--adapter", root + "/adapter", "--out", root + "/merged"])
        #expect(r2.status != 0)
        #expect(r2.stderr.contains("mlp"), "\(r2.stderr)")
        #expect(!FileManager.default.fileExists(atPath: root + "/merged"))
    }

    @Test("combine cat and svd are exact; ties with unit weights agrees between semantics")
    func combine() throws {
        let root = TestSupport.scratchDirectory("lora-comb")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (base, tuned) = try Pair.make(root)
        var o = ExtractionOptions(); o.policy.maxRank = 3
        try LoRAExtractor.extract(base: base, tuned: tuned, out: root + "/a1", options: o)
        o.policy.maxRank = 2; o.embedLoRA = true; o.seed = 3
        try LoRAExtractor.extract(base: base, tuned: tuned, out: root + "/a2", options: o)
        var c = CombineOptions(); c.weights = [0.5, 2]
        // a1 saves embed_tokens whole while a2 has a LoRA on it: refused.
        #expect(throws: (any Error).self) { try LoRACombiner.combine(adapters: [root + "/a1", root + "/a2"], out: root + "/bad", options: c) }
        #expect(!FileManager.default.fileExists(atPath: root + "/bad"))
        o.embedLoRA = false; o.serving = true
        try LoRAExtractor.extract(base: base, tuned: tuned, out: root + "/a3", options: o)
        for method in [CombineMethod.cat, .svd] {
            c.method = method
            try LoRACombiner.combine(adapters: [root + "/a1", root + "/a3"], out: root + "/\(method)", options: c)
            try LoRAMerger.merge(model: base, adapters: [root + "/\(method)"], out: root + "/m-\(method)")
        }
        try LoRAMerger.merge(model: base, adapters: [root + "/a1", root + "/a3"], weights: [0.5, 2], out: root + "/m-direct")
        let d = try Checkpoint(directory: root + "/m-direct")
        for method in ["cat", "svd"] {
            let m = try Checkpoint(directory: root + "/m-\(method)")
            for n in d.names {
                let x = try m.tensor(n).floats(), y = try d.tensor(n).floats()
                #expect(Pair.relDiff(x, y) < 1e-5, "\(method) \(n)")
            }
        }
    }

    @Test("include/exclude regexes, --save-module and --skip-undecomposable shape the adapter; target_modules stays exact")
    func modulePolicy() throws {
        let root = TestSupport.scratchDirectory("lora-policy2")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (base, tuned) = try Pair.make(root)
        var o = ExtractionOptions()
        o.policy.maxRank = 2
        o.exclude = ["layers\\.1\\.self_attn"]
        o.saveModules = ["o_proj"]
        o.skipUndecomposable = true
        let r = try LoRAExtractor.extract(base: base, tuned: tuned, out: root + "/a", options: o)
        let action = Dictionary(uniqueKeysWithValues: r.modules.map { ($0.module, $0.action) })
        #expect(action["model.layers.1.self_attn.q_proj"] == "excluded")
        #expect(action["model.layers.0.self_attn.q_proj"] == "lora")
        #expect(action["model.layers.0.self_attn.o_proj"] == "saved")
        #expect(action["model.layers.0.input_layernorm"] == "dropped")
        #expect(action["model.embed_tokens"] == "saved")
        let cfg = try FileOps.readJSONObject(root + "/a/adapter_config.json").0
        let targets = Set(cfg["target_modules"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        // q_proj of layer 1 is excluded, so q_proj must be named per module; the MLP leaves cover every layer.
        #expect(targets.contains("model.layers.0.self_attn.q_proj") && !targets.contains("q_proj"))
        #expect(targets.contains("gate_proj"))
        let saved = Set(cfg["modules_to_save"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        // Layer 1's o_proj is excluded, so o_proj is saved under its full name only.
        #expect(saved == ["embed_tokens", "model.layers.0.self_attn.o_proj", "lm_head"])
        let ad = try Adapter(path: root + "/a")
        #expect(ad.modules.allSatisfy { !$0.module.contains("layers.1.self_attn") })
    }
}
