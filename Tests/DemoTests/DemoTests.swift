import Basics
import Demo
import EvalBackends
import Evaluation
import Foundation
import ModelIO
import TestSupport
import Testing
import Tokenizers
import Training

/// The toy passkey corpus, the word-level tokenizer against Hugging Face `tokenizers`, the summary's schema and (with
/// `LONGCTX_DEMO_RUN=1`) a short end-to-end demo run.
@Suite struct DemoTests {
    static func toyTokenizer() throws -> (Tokenizer, String) {
        let dir = TestSupport.scratchDirectory("demo-tok")
        try WordTokenizer.write(to: dir, pieces: ToyBase.pieces)
        return (try Tokenizer.load(directory: dir), dir)
    }

    @Test func corpusIsDeterministicAndFits() throws {
        let (tokenizer, _) = try Self.toyTokenizer()
        let counter = TokenizerCounter(tokenizer: tokenizer)
        let a = try PasskeyCorpus(counter: counter, keys: .distinctDigits(5), seed: 7).records(count: 200, maxTokens: 256)
        let b = try PasskeyCorpus(counter: counter, keys: .distinctDigits(5), seed: 7).records(count: 200, maxTokens: 256)
        let c = try PasskeyCorpus(counter: counter, keys: .distinctDigits(5), seed: 8).records(count: 200, maxTokens: 256)
        #expect(a == b)
        #expect(a != c)
        var lengths: [Int] = []
        for r in a {
            let key = r.completion.dropFirst()
            #expect(r.completion.hasPrefix(" ") && key.count == 5 && Set(key).count == 5 && key.first != "0")
            #expect(r.prompt.contains(Passkey.keyLine(Int(key)!)) && r.prompt.hasSuffix(Passkey.question))
            let n = tokenizer.encode(r.prompt + r.completion).count + 1
            #expect(n <= 256)
            lengths.append(n)
        }
        // Lengths spread over the whole range: from the empty-filler prompt to the budget.
        #expect(lengths.min()! < 90 && lengths.max()! > 230)
        // No token is unknown: the vocabulary covers the prompt.
        #expect(!a.contains { tokenizer.encode($0.prompt).contains(1) })
    }

    /// The shuffled layout: one key line stating the key once, filler sentences drawn from the five, every word in
    /// the toy vocabulary, lengths spread up to the budget, deterministic from the seed.
    @Test func shuffledCorpusFits() throws {
        let (tokenizer, _) = try Self.toyTokenizer()
        let counter = TokenizerCounter(tokenizer: tokenizer)
        let corpus = PasskeyCorpus(counter: counter, keys: .distinctDigits(5), layout: .shuffled, seed: 7)
        let a = try corpus.records(count: 200, maxTokens: 512)
        #expect(a == (try corpus.records(count: 200, maxTokens: 512)))
        var lengths: [Int] = []
        var sentences = Set<String>()
        for r in a {
            let key = String(r.completion.dropFirst())
            let lines = r.prompt.components(separatedBy: "\n")
            #expect(lines.count == 5 && lines[0] == Passkey.task && lines[2] == "The pass key is \(key). Remember it.")
            #expect(r.prompt.components(separatedBy: key).count == 2, "the key appears once")
            for line in [lines[1], lines[3]] where !line.isEmpty {
                var rest = Substring(line)
                while !rest.isEmpty {
                    let s = Passkey.fillerSentences.first { rest.hasPrefix($0) }
                    #expect(s != nil, "\(rest)")
                    guard let s else { break }
                    sentences.insert(s)
                    rest = rest.dropFirst(s.count).drop { $0 == " " }
                }
            }
            let n = tokenizer.encode(r.prompt + r.completion).count + 1
            #expect(n <= 512)
            lengths.append(n)
            #expect(!tokenizer.encode(r.prompt).contains(1))
        }
        #expect(sentences.count == Passkey.fillerSentences.count)
        #expect(lengths.min()! < 100 && lengths.max()! > 490)
    }

    @Test func distinctDigitKeys() {
        var rng = SeededRandom(seed: 3)
        for _ in 0..<500 {
            let key = String(Passkey.Keys.distinctDigits(5).draw(&rng))
            #expect(key.count == 5 && Set(key).count == 5)
        }
    }

    /// Our encoding and decoding of the toy tokenizer against `tokenizers.Tokenizer.from_file` on prompts, numbers,
    /// unknown words, newlines and repeated spaces.
    @Test(.enabled(if: TestSupport.interopCanRun(["tokenizers"]), "needs Python tokenizers (LONGCTX_INTEROP=1 makes their absence a failure)"))
    func toyTokenizerMatchesHuggingFace() throws {
        guard try TestSupport.interopEnabled(["tokenizers"]) else { return }
        let (tokenizer, dir) = try Self.toyTokenizer()
        let corpus = try PasskeyCorpus(counter: TokenizerCounter(tokenizer: tokenizer), keys: .standard, seed: 1).records(count: 5, maxTokens: 300)
        let texts = corpus.map { $0.prompt + $0.completion } + [
            "The pass key is 12345. Remember it.", "What is the pass key?\nThe pass key is", "unknown words here 0 9",
            "The  grass is green.", "", "42", "sky.blue?Here",
        ]
        let input = TestSupport.scratchDirectory("demo-tok-in") + "/texts.json"
        try JSONValue.array(texts.map { .string($0) }).serialized(indent: nil).write(toFile: input, atomically: true, encoding: .utf8)
        let out = try TestSupport.runPython("""
            import json, sys
            from tokenizers import Tokenizer
            t = Tokenizer.from_file(sys.argv[1] + "/tokenizer.json")
            texts = json.load(open(sys.argv[2]))
            print(json.dumps([[e.ids, t.decode(e.ids, skip_special_tokens=False)] for e in (t.encode(x) for x in texts)]))
            """, [dir, input])
        let expected = try JSONValue.parse(out).arrayValue!
        #expect(expected.count == texts.count)
        for (text, pair) in zip(texts, expected) {
            let ids = pair.arrayValue![0].arrayValue!.map { $0.intValue! }
            #expect(tokenizer.encode(text) == ids, "\(text)")
            #expect(tokenizer.decode(ids) == pair.arrayValue![1].stringValue!, "\(text)")
        }
    }

    @Test func summaryHasTheInterfaceKeys() throws {
        let phases = DemoReport.phaseKeys.map { key in
            PhaseResult(key: key, title: key, modelDirectory: "/m", rope: "θ 10000", lengths: [256, 512], results: [])
        }
        var outcome = DemoOutcome(request: DemoRequest(base: "/b", out: "/o"))
        outcome.phases = phases
        let summary = DemoReport.summary(outcome)
        let object = summary.objectValue!
        #expect(object["trained_context_length"]?.intValue == 256)
        #expect(object["final_context_length"]?.intValue == 2048)
        for key in DemoReport.phaseKeys {
            let row = object[key]?.objectValue
            #expect(row?.keys == ["256", "512"], "\(key)")
            #expect(row?["256"]?.doubleValue == 0)
        }
    }

    /// The whole demo on a tiny budget: a base trained from scratch for a few steps, every phase, both files; a second
    /// run from that base with the same seed writes the same `summary.json`.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["LONGCTX_DEMO_RUN"] == "1", "a short demo run (minutes); set LONGCTX_DEMO_RUN=1"))
    func shortRun() throws {
        let out = TestSupport.scratchDirectory("demo-run")
        let small = ["--no-act-one", "--extension-steps", "3", "--grid-prompts", "1"]
        let r = try TestSupport.longctx(["demo", "--from-scratch", "--base-steps", "20", "--out", out + "/o"] + small)
        #expect(r.status == 0, "\(r.stderr)")
        let again = try TestSupport.longctx(["demo", "--base", out + "/o/base", "--out", out + "/o2"] + small)
        #expect(again.status == 0, "\(again.stderr)")
        let text = try String(contentsOfFile: out + "/o/summary.json", encoding: .utf8)
        #expect(try String(contentsOfFile: out + "/o2/summary.json", encoding: .utf8) == text)
        let summary = try JSONValue.parse(text)
        for key in DemoReport.phaseKeys { #expect(summary[key]?.objectValue?.count == 4, "\(key)") }
        #expect(FileOps.exists(out + "/o/report.html") && FileOps.exists(out + "/o/adapters/extended-minus-base/adapter_config.json"))
        // The demo's adapter loads in PEFT onto the base, and PEFT's merge equals ours.
        guard try TestSupport.interopEnabled(["peft", "transformers", "torch"]) else { return }
        let o = out + "/o"
        let json = try TestSupport.runPython(try String(contentsOfFile: TestSupport.repoRoot + "/Tests/Interop/lora_interop.py", encoding: .utf8),
                                             ["peft", o + "/base", o + "/extension/run/final", o + "/adapters/extended-minus-base", o + "/models/merged"])
        let parsed = try JSONValue.parse(json)
        let result = try #require(parsed["results"]?.arrayValue?.first)
        #expect(result["warnings"]?.arrayValue?.isEmpty == true, "\(json)")
        #expect(result["missing_in_peft"]?.arrayValue?.isEmpty == true)
        #expect((result["max_rel_diff_vs_ours"]?.doubleValue ?? 1) <= 1e-6, "\(json)")
    }

    /// The adapter shipped in `adapters/` (written by the demo) loads in PEFT onto the shipped base without
    /// warnings, and PEFT's `merge_and_unload()` equals `longctx lora merge` (1e-6 relative per tensor).
    @Test(.enabled(if: TestSupport.interopCanRun(["peft", "transformers", "torch"]), "needs Python peft, transformers, torch (LONGCTX_INTEROP=1 makes their absence a failure)"))
    func shippedAdapterLoadsInPEFT() throws {
        guard try TestSupport.interopEnabled(["peft", "transformers", "torch"]) else { return }
        let base = TestSupport.repoRoot + "/demo/base", adapter = TestSupport.repoRoot + "/adapters/demo-extended-minus-base"
        let merged = TestSupport.scratchDirectory("demo-adapter") + "/merged"
        let r = try TestSupport.longctx(["lora", "merge", "--base", base, "--adapter", adapter, "--out", merged])
        try #require(r.status == 0, "\(r.stderr)")
        let json = try TestSupport.runPython(try String(contentsOfFile: TestSupport.repoRoot + "/Tests/Interop/lora_interop.py", encoding: .utf8),
                                             ["peft", base, merged, adapter, merged])
        let result = try #require(try JSONValue.parse(json)["results"]?.arrayValue?.first)
        #expect(result["warnings"]?.arrayValue?.isEmpty == true, "\(json)")
        #expect(result["missing_in_peft"]?.arrayValue?.isEmpty == true, "\(json)")
        #expect((result["max_rel_diff_vs_ours"]?.doubleValue ?? 1) <= 1e-6, "\(json)")
    }
}
