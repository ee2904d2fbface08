import Basics
import Demo
import EvalBackends
import Evaluation
import Foundation
import RoPE
import TestSupport
import Testing
import Tokenizers
import Transformer

/// The shipped toy base with `rope plan`'s YaRN ×8 config (the demo's `yarn_untrained` row) against transformers'
/// `LlamaForCausalLM` (f32, eager): logits at every position of passkey prompts inside and beyond the trained 256
/// tokens, and the greedy answers. This is what tells whether the demo's YaRN row measures the model or a bug.
@Suite(.serialized, .enabled(if: TestSupport.interopCanRun(["torch", "transformers"]), "needs Python torch, transformers (LONGCTX_INTEROP=1 makes their absence a failure)"))
struct DemoYarnInteropTests {
    static let script = """
        import json, sys, torch
        from transformers import LlamaForCausalLM
        torch.set_num_threads(2)
        model = LlamaForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32, attn_implementation="eager").eval()
        rope = model.model.rotary_emb
        out = []
        for ids in json.load(open(sys.argv[2])):
            x = torch.tensor([ids])
            with torch.no_grad():
                logits = model(x).logits[0]
                gen = model.generate(x, max_new_tokens=6, do_sample=False, attention_mask=torch.ones_like(x))
            out.append({"logits": logits.flatten().tolist(), "greedy": gen[0, len(ids):].tolist()})
        print(json.dumps({"inv_freq": rope.inv_freq.tolist(), "attention_scaling": float(rope.attention_scaling), "cases": out}))
        """

    @Test func yarnPlanOnToyBaseMatchesTransformers() throws {
        guard try TestSupport.interopEnabled(["torch", "transformers"]) else { return }
        let base = TestSupport.repoRoot + "/demo/base"
        let dir = TestSupport.scratchDirectory("demo-yarn") + "/yarn"
        let plan = try DemoSteps.applyPlan(base: base, method: .yarn, target: 2048, out: dir)
        #expect(plan.final.configuration.factor == 8 && plan.final.configuration.originalMaxPositionEmbeddings == 256)
        let tokenizer = try Tokenizer.load(directory: base)
        let corpus = PasskeyCorpus(counter: TokenizerCounter(tokenizer: tokenizer), keys: .distinctDigits(5), seed: 11)
        // One prompt inside the trained window, one 2–3× beyond it.
        let short = try corpus.records(count: 40, maxTokens: 256).first { tokenizer.encode($0.prompt).count > 200 }!
        let long = try corpus.records(count: 40, maxTokens: 768).first { tokenizer.encode($0.prompt).count > 600 }!
        let prompts = [short.prompt, long.prompt].map { tokenizer.encode($0) }
        let input = TestSupport.scratchDirectory("demo-yarn-in") + "/ids.json"
        let rows: [JSONValue] = prompts.map { ids in JSONValue.array(ids.map { JSONValue.int($0) }) }
        try JSONValue.array(rows).serialized(indent: nil).write(toFile: input, atomically: true, encoding: .utf8)
        let reference = try JSONValue.parse(try TestSupport.runPython(Self.script, [dir, input]))

        let model = try TransformerModel(directory: dir)
        let frequencies = try model.configuration.rope.frequencies()
        let theirs = reference["inv_freq"]!.arrayValue!.map { Float($0.doubleValue!) }
        #expect(frequencies.invFreq == theirs)
        #expect(abs(frequencies.attentionFactor - reference["attention_scaling"]!.doubleValue!) < 1e-12)
        for (ids, expected) in zip(prompts, reference["cases"]!.arrayValue!) {
            let want = expected["logits"]!.arrayValue!.map { Float($0.doubleValue!) }
            let ours = try model.forward(ids, cache: model.makeCache(), logits: .all)
            #expect(ours.count == want.count)
            let err = zip(ours, want).map { abs($0 - $1) }.max()!
            let scale: Float = want.map { abs($0) }.max()!
            let tolerance: Float = 1e-4 * Swift.max(1, scale)
            #expect(err <= tolerance, "\(ids.count) tokens: max |Δlogit| = \(err), logit scale \(scale)")
            #expect(try Self.greedy(model, ids, count: 6) == expected["greedy"]!.arrayValue!.map { $0.intValue! })
        }
    }

    /// Greedy continuation of `ids` by the engine, `count` tokens.
    static func greedy(_ model: TransformerModel, _ ids: [Int], count: Int) throws -> [Int] {
        let vocab = model.configuration.vocabSize
        let cache = model.makeCache()
        var logits = try model.forward(ids, cache: cache, logits: .last)
        var out: [Int] = []
        for _ in 0..<count {
            let next = logits.indices.max { logits[$0] < logits[$1] }! % vocab
            out.append(next)
            logits = try model.forward([next], cache: cache, logits: .last)
        }
        return out
    }
}
