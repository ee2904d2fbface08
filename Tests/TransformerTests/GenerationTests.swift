import Basics
import Foundation
import ModelIO
import TestSupport
import Testing
@testable import Transformer

/// Generation through `longctx generate` against transformers' `generate`, and the sampler's warpers against
/// transformers' `TemperatureLogitsWarper` → `TopKLogitsWarper` → `TopPLogitsWarper`.
@Suite(.serialized) struct GenerationTests {
    static func json(_ text: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
    }

    static let model: String = {
        let dir = TestSupport.scratchDirectory("gen") + "/model"
        _ = try? TestSupport.longctx(["init-model", "--arch", "qwen2", "--layers", "2", "--hidden", "64", "--heads", "4",
                                      "--kv-heads", "2", "--vocab", "400", "--seed", "3", "--out", dir])
        return dir
    }()

    @Test(.enabled(if: TestSupport.interopCanRun(["torch", "transformers"]), "needs Python torch, transformers (LONGCTX_INTEROP=1 makes their absence a failure)")) func greedyGenerationMatchesTransformers() throws {
        guard try TestSupport.interopEnabled(["torch", "transformers"]) else { return }
        let r = try TestSupport.longctx(["generate", Self.model, "--prompt", "The quick brown fox jumps over 12 lazy dogs.",
                                         "--max-tokens", "24", "--temperature", "0", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let out = try Self.json(r.stdout)
        let promptIds = (out["prompt_ids"] as! [NSNumber]).map(\.intValue)
        let ours = (out["generated_ids"] as! [NSNumber]).map(\.intValue)
        #expect(!ours.isEmpty)
        let code = """
        import json, sys, torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        d, ids, n = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
        tok = AutoTokenizer.from_pretrained(d)
        m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
        eos = [tok.convert_tokens_to_ids(t) for t in [tok.eos_token] if t is not None]
        out = m.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=n, eos_token_id=eos or None,
                         pad_token_id=0, attention_mask=torch.ones(1, len(ids), dtype=torch.long))
        print(json.dumps({"ids": out[0, len(ids):].tolist(), "prompt": tok(open(sys.argv[4]).read())["input_ids"]}))
        """
        let promptFile = TestSupport.scratchDirectory("gen") + "/prompt.txt"
        try "The quick brown fox jumps over 12 lazy dogs.".write(toFile: promptFile, atomically: true, encoding: .utf8)
        let ref = try Self.json(try TestSupport.runPython(code, [Self.model, "\(promptIds)", "24", promptFile]))
        #expect((ref["prompt"] as! [NSNumber]).map(\.intValue) == promptIds, "prompt tokenization differs from transformers")
        #expect((ref["ids"] as! [NSNumber]).map(\.intValue) == ours)
    }

    @Test func stopStringCutsTheText() throws {
        let base = try TestSupport.longctx(["generate", Self.model, "--prompt", "abc", "--max-tokens", "16", "--json"])
        #expect(base.status == 0, "\(base.stderr)")
        let full = try Self.json(base.stdout)["text"] as! String
        let chars = Array(full)
        try #require(chars.count >= 6, "generated text too short for the test: \(full)")
        let stop = String(chars[3..<5])
        let r = try TestSupport.longctx(["generate", Self.model, "--prompt", "abc", "--max-tokens", "16", "--json", "--stop", stop])
        let cut = try Self.json(r.stdout)
        let expected = String(full[..<full.range(of: stop)!.lowerBound])
        #expect(cut["text"] as? String == expected)
        #expect(cut["finish_reason"] as? String == "stop")
    }

    @Test func samplingIsSeededAndTopKOneIsGreedy() throws {
        func ids(_ extra: [String]) throws -> [Int] {
            let r = try TestSupport.longctx(["generate", Self.model, "--prompt", "hello", "--max-tokens", "12", "--json"] + extra)
            return (try Self.json(r.stdout)["generated_ids"] as! [NSNumber]).map(\.intValue)
        }
        let a = try ids(["--temperature", "1.5", "--seed", "1"])
        #expect(try ids(["--temperature", "1.5", "--seed", "1"]) == a)
        #expect(try ids(["--temperature", "1.5", "--seed", "2"]) != a)
        #expect(try ids(["--temperature", "1.5", "--top-k", "1", "--seed", "5"]) == (try ids([])))
    }

    @Test(.enabled(if: TestSupport.interopCanRun(["torch", "transformers"]), "needs Python torch, transformers (LONGCTX_INTEROP=1 makes their absence a failure)"), arguments: [(Float(0.7), 0, Float(0.9)), (Float(1.3), 50, Float(1)), (Float(1.0), 20, Float(0.5)), (Float(2.0), 0, Float(0.95))])
    func warpersMatchTransformers(_ temperature: Float, _ topK: Int, _ topP: Float) throws {
        guard try TestSupport.interopEnabled(["torch", "transformers"]) else { return }
        var rng = SeededRandom(seed: UInt64(topK) &+ 17)
        let logits = (0..<300).map { _ in rng.normal() * 3 }
        let sampler = Sampler(GenerationParameters(temperature: temperature, topK: topK, topP: topP))
        let ours = sampler.candidates(logits[...])
        let code = """
        import json, sys, torch
        from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
        x = torch.tensor([json.loads(sys.argv[1])], dtype=torch.float32)
        t, k, p = float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
        ids = torch.zeros(1, 1, dtype=torch.long)
        x = TemperatureLogitsWarper(t)(ids, x)
        if k > 0: x = TopKLogitsWarper(k)(ids, x)
        if p < 1: x = TopPLogitsWarper(p)(ids, x)
        probs = torch.softmax(x.double(), -1)[0]
        keep = torch.nonzero(probs > 0).flatten().tolist()
        print(json.dumps({str(i): probs[i].item() for i in keep}))
        """
        let ref = try Self.json(try TestSupport.runPython(code, ["\(logits)", "\(temperature)", "\(topK)", "\(topP)"]))
        #expect(Set(ours.map { String($0.id) }) == Set(ref.keys))
        for c in ours {
            let p = (ref[String(c.id)] as? NSNumber)?.doubleValue ?? -1
            #expect(abs(p - c.probability) < 1e-6, "token \(c.id): \(c.probability) vs \(p)")
        }
    }
}
