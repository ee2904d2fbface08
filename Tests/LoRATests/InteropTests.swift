import Basics
import Foundation
import LoRA
import ModelIO
import TensorCore
import Testing
import TestSupport

/// Interop with PEFT and mergekit (CPU, from PyPI) through Tests/Interop/lora_interop.py.
/// Runs when torch, transformers, peft and mergekit import; with `LONGCTX_INTEROP=1` a missing module fails.
@Suite("interop: PEFT and mergekit LoRA", .serialized)
struct LoRAInteropTests {
    static let script = TestSupport.repoRoot + "/Tests/Interop/lora_interop.py"

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    static func cli(_ args: [String]) throws -> String {
        let r = try TestSupport.longctx(args)
        if r.status != 0 { Issue.record("longctx \(args.joined(separator: " ")) failed: \(r.stderr)") }
        return r.stdout
    }

    static func python(_ args: [String]) throws -> [String: Any] {
        let code = try String(contentsOfFile: script, encoding: .utf8)
        let out = try TestSupport.runPython(code, args)
        return try json(try #require(out.split(separator: "\n").last.map(String.init)))
    }

    @Test("PEFT loads our adapters (default and --serving --embed-lora) without warnings and merge_and_unload equals longctx lora merge", .enabled(if: TestSupport.interopCanRun(["torch", "transformers", "peft"]), "needs Python torch, transformers, peft (LONGCTX_INTEROP=1 makes their absence a failure)"))
    func peftMerge() throws {
        guard try TestSupport.interopEnabled(["torch", "transformers", "peft"]) else { return }
        let root = TestSupport.scratchDirectory("lora-peft")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (base, tuned) = try Pair.make(root)
        var reports = [[[String: Any]]]()
        var pyArgs = ["peft", base, tuned]
        for mode in ["default", "serving"] {
            // --sv-epsilon gives per-module ranks (k_proj of layer 1 has rank 2, down_proj of layer 0 rank 3):
            // rank_pattern with the compensation baked into the factors.
            let out = root + "/adapter-" + mode, merged = root + "/merged-" + mode
            var args = ["lora", "extract", "--base", base, "--tuned", tuned, "--out", out, "--rank", "5", "--sv-epsilon", "0.02", "--json"]
            if mode == "serving" { args += ["--serving", "--embed-lora"] }
            let report = try Self.json(try Self.cli(args))
            reports.append(try #require(report["modules"] as? [[String: Any]]))
            _ = try Self.cli(["lora", "merge", "--base", base, "--adapter", out, "--out", merged])
            let cfg = try FileOps.readJSONObject(out + "/adapter_config.json").0
            #expect(cfg["rank_pattern"]?.objectValue?["model.layers.1.self_attn.k_proj"]?.intValue == 2)
            #expect(cfg["alpha_pattern"]?.objectValue?.isEmpty == true)
            if mode == "serving" { #expect(cfg["modules_to_save"]?.isNull == true) }
            pyArgs += [out, merged]
        }
        let results = try #require(try Self.python(pyArgs)["results"] as? [[String: Any]])
        try #require(results.count == 2)
        for (r, modules) in zip(results, reports) {
            let warnings = r["warnings"] as? [String] ?? ["?"]
            #expect(warnings.isEmpty, "PEFT warned: \(warnings)")
            #expect((r["missing_in_peft"] as? [String])?.isEmpty == true)
            let diff = try #require(r["max_rel_diff_vs_ours"] as? Double)
            #expect(diff < 1e-6, "PEFT merge_and_unload vs ours: \(diff) at \(r["worst_key"] ?? "")")
            // Both match the fine-tune to the error the discarded singular values predict.
            let errs = try #require(r["rel_error_vs_tuned"] as? [String: Double])
            var checked = 0
            for m in modules where (m["action"] as? String)?.hasPrefix("lora") == true {
                let name = m["module"] as! String
                let predicted = m["relative_error"] as! Double
                let measured = try #require(errs[name + ".weight"])
                #expect(abs(measured - predicted) <= 2e-3 * predicted + 2e-5, "\(name): PEFT-merged error \(measured), predicted \(predicted)")
                checked += 1
            }
            #expect(checked >= 14)
        }
    }

    @Test("exact SVD with mergekit's options gives mergekit-extract-lora's factors; randomized is within 0.5 % of exact", .enabled(if: TestSupport.interopCanRun(["torch", "transformers", "peft", "mergekit"]), "needs Python torch, transformers, peft, mergekit (LONGCTX_INTEROP=1 makes their absence a failure)"),
          arguments: [["--max-rank", "5", "--sv-epsilon", "0.02"]])
    func mergekitEquality(mkArgs: [String]) throws {
        guard try TestSupport.interopEnabled(["torch", "transformers", "peft", "mergekit"]) else { return }
        let root = TestSupport.scratchDirectory("lora-mk")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (base, tuned) = try Pair.make(root)
        let mk = try TestSupport.run("/usr/bin/env", ["mergekit-extract-lora", "--model", tuned, "--base-model", base,
                                                      "--out-path", root + "/mk"] + mkArgs,
                                     environment: ["HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"])
        try #require(mk.status == 0, "mergekit-extract-lora failed: \(mk.stderr.suffix(2000))")
        let rank = mkArgs[1]
        var ours = ["lora", "extract", "--base", base, "--tuned", tuned, "--rank", rank, "--exact", "--scaling", "mergekit"]
        if let i = mkArgs.firstIndex(of: "--sv-epsilon") { ours += ["--sv-epsilon", mkArgs[i + 1]] }
        if mkArgs.contains("--embed-lora") { ours += ["--embed-lora"] }
        let exact = try Self.json(try Self.cli(ours + ["--out", root + "/ours", "--json"]))
        let r = try Self.python(["factors", root + "/ours", root + "/mk"])
        #expect((r["keys_only_ours"] as? [String])?.isEmpty == true, "\(r)")
        #expect((r["keys_only_mergekit"] as? [String])?.isEmpty == true, "\(r)")
        #expect((r["dtype_mismatch"] as? [String])?.isEmpty == true)
        #expect(r["shape_mismatch"] == nil, "\(r)")
        let fd = try #require(r["max_rel_factor_diff"] as? Double)
        #expect(fd < 1e-5, "factors differ by \(fd) at \(r["worst_key"] ?? "")")
        #expect((r["max_abs_saved_diff"] as? Double) == 0)
        #expect((r["config_diffs"] as? [String: Any])?.isEmpty == true, "\(r["config_diffs"] ?? "")")

        // Randomized (default) at the same ranks: per-module error within 0.5 % of exact.
        let rnd = try Self.json(try Self.cli(["lora", "extract", "--base", base, "--tuned", tuned, "--rank", rank,
                                              "--out", root + "/rnd", "--json"]))
        let e = Dictionary(uniqueKeysWithValues: (exact["modules"] as! [[String: Any]]).map { ($0["module"] as! String, $0) })
        for m in rnd["modules"] as! [[String: Any]] where (m["action"] as! String).hasPrefix("lora") {
            let ex = e[m["module"] as! String]!
            guard (ex["rank"] as! Int) == (m["rank"] as! Int) else { continue }
            #expect((m["relative_error"] as! Double) <= (ex["relative_error"] as! Double) * 1.005 + 1e-7)
        }
    }

    @Test("TIES with PEFT's and mergekit's semantics equals peft.utils.merge_utils.ties and mergekit's GTA core", .enabled(if: TestSupport.interopCanRun(["torch", "peft", "mergekit"]), "needs Python torch, peft, mergekit (LONGCTX_INTEROP=1 makes their absence a failure)"))
    func tiesSemantics() throws {
        guard try TestSupport.interopEnabled(["torch", "peft", "mergekit"]) else { return }
        let dir = TestSupport.scratchDirectory("lora-ties")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rng = SeededRandom(seed: 11)
        let n = 600
        let weights: [Float] = [2, 0.5, 1]
        let ts = weights.map { _ in (0..<n).map { _ in rng.normal() } }
        for (i, t) in ts.enumerated() { try SafetensorsWriter.write([("x", Tensor(shape: [20, 30], floats: t))], to: dir + "/t\(i).safetensors") }
        try #"{"weights": [2.0, 0.5, 1.0], "density": 0.4}"#.write(toFile: dir + "/args.json", atomically: true, encoding: .utf8)
        _ = try Self.python(["ties", dir])
        let expected = try SafetensorsFile(path: dir + "/expected.safetensors")
        var g = SeededRandom(seed: 0)
        for sem in MergeSemantics.allCases {
            let ours = TaskMerge.combine(ts, weights: weights, method: .ties, semantics: sem, density: 0.4, byCount: false, rng: &g)
            let theirs = try expected.tensor(sem.rawValue).floats()
            let d = zip(ours, theirs).map { abs($0 - $1) }.max()!
            #expect(d < 1e-6, "\(sem): max diff \(d)")
        }
        // The two semantics really differ with these weights.
        let p = try expected.tensor("peft").floats(), m = try expected.tensor("mergekit").floats()
        #expect(Pair.relDiff(p, m) > 0.1)
    }
}
