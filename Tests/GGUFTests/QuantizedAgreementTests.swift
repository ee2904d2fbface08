import Foundation
import TestSupport
import Testing
import Tokenizers
import Transformer

extension RealModelTests {
    /// Fixed real-text prompts: four paragraphs of this repository's README (English prose with code) as it stood
    /// when the agreement figures in BENCHMARKS.md were measured, kept in `agreement-prompts.txt` (blank-line
    /// separated) so that editing the README does not move them; at most 160 tokens each (593 in all).
    static func agreementPrompts(_ tokenizer: Tokenizer) throws -> [[Int]] {
        let path = TestSupport.repoRoot + "/Tests/GGUFTests/agreement-prompts.txt"
        let text = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .newlines)
        return text.components(separatedBy: "\n\n").map { Array(tokenizer.encode($0).prefix(160)) }
    }

    /// Quantized decoding against llama.cpp: our engine loads the directory imported from the embedded default's
    /// GGUF (SmolLM2-135M-Instruct: Q4_1 projections, Q8_0 tied embedding) with `--weights q8_0` / `q4_1` / `q4_0`
    /// and runs every prompt teacher-forced one token at a time through the KV cache (the integer matrix–vector
    /// kernels). llama.cpp evaluates the same ids on the same blocks: the file itself for Q4_1, and for Q8_0 and
    /// Q4_0 the file re-quantized by llama.cpp's own quantizer (which keeps the tied embedding at Q8_0, as we keep
    /// the LM head).
    ///
    /// What "agree" can mean here was measured (BENCHMARKS.md, llama.cpp agreement): both sides quantize every
    /// activation vector to 8 bits per block of 32, so any rounding difference grows to the size of that
    /// quantization noise (median |Δlogit| ≈ 0.6 on this model) and flips the top-1 token wherever the margin is
    /// smaller. llama.cpp does not agree with itself beyond that floor: its f16 against its f32 KV cache agree at
    /// 93–96 % of these positions, its batched against its token-by-token evaluation at 96.5 %. So the test asks
    /// for two things that a real defect breaks and that noise does not:
    /// - at positions where llama.cpp's top-1 leads by ≥ 1 logit (≈ 36 % of them), the same token at ≥ 99 %
    ///   (measured: all 216 / 218 / 210 for Q4_1 / Q8_0 / Q4_0);
    /// - overall, agreement at least llama.cpp's own f16-vs-f32-cache agreement less 3 points (measured: 95.8 /
    ///   94.1 / 94.8 % against its 93.1 / 94.4 / 95.1 %). The LM head quantized to 4 bits like the projections,
    ///   as this engine did before, fails it: 82.0 % (Q4_1) and 77.1 % (Q4_0, which also fails the first: 197 of 210).
    /// llama.cpp is a peer built from source (`scripts/install-llama-cpp`, also run by `INSTALL_LLAMA_CPP=1 scripts/bench-engine`),
    /// not part of the interop requirements: the test runs where `llama_cpp` imports, and `LONGCTX_LLAMA_CPP=1`
    /// makes its absence a failure.
    static var llamaCppRequired: Bool { ProcessInfo.processInfo.environment["LONGCTX_LLAMA_CPP"] == "1" }

    @Test(.enabled(if: llamaCppRequired || TestSupport.pythonHas(["llama_cpp"]),
                   "needs Python llama_cpp (scripts/install-llama-cpp builds it; LONGCTX_LLAMA_CPP=1 makes its absence a failure)"),
          arguments: [WeightFormat.q8_0, .q4_1, .q4_0])
    func quantizedTop1AgreesWithLlamaCpp(_ format: WeightFormat) throws {
        try #require(TestSupport.pythonHas(["llama_cpp"]), "LONGCTX_LLAMA_CPP=1 but Python cannot import llama_cpp")
        guard let dir = try Self.require() else { return }
        let cache = ((dir as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
        let gguf = "\(cache)/downloads/\(Self.name)/SmolLM2-135M-Instruct.Q4_1.gguf"
        try #require(FileManager.default.fileExists(atPath: gguf), "no \(gguf)")
        let lm = try LanguageModel.load(directory: dir, weights: format)
        let prompts = try Self.agreementPrompts(lm.tokenizer)
        let scratch = TestSupport.scratchDirectory("llamacpp")
        let idsPath = scratch + "/ids.json"
        try JSONSerialization.data(withJSONObject: prompts).write(to: URL(fileURLWithPath: idsPath))
        let script = TestSupport.repoRoot + "/Tests/Interop/llamacpp_interop.py"
        var referenceFile = gguf
        if format != .q4_1 {
            referenceFile = scratch + "/\(format.rawValue).gguf"
            let q = try TestSupport.run("/usr/bin/env", ["python3", script, "quantize", gguf, referenceFile, format.rawValue])
            try #require(q.status == 0, "llamacpp_interop.py quantize: \(q.stderr.suffix(800))")
            let chosen = try #require(try JSONSerialization.jsonObject(with: Data(q.stdout.utf8)) as? [String: Any])
            try #require(chosen["token_embd"] as? String == "Q8_0", "llama.cpp chose \(chosen) for \(format.rawValue)")
        }
        let r = try TestSupport.run("/usr/bin/env", ["python3", script, "top1", referenceFile, idsPath],
                                    environment: ["OMP_NUM_THREADS": "2"])
        try #require(r.status == 0, "llamacpp_interop.py: \(r.stderr.suffix(800))")
        let reference = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let top1 = try #require(reference["top1"] as? [[Int]]), margins = try #require(reference["margin"] as? [[Double]])
        let top1F32Cache = try #require(reference["top1_f32_kv"] as? [[Int]])
        var agree = 0, total = 0, confident = 0, confidentAgree = 0, selfAgree = 0
        for (p, ids) in prompts.enumerated() {
            let kv = lm.model.makeCache(capacity: ids.count)
            for (i, id) in ids.enumerated() {
                let logits = try lm.model.forward([id], cache: kv, logits: .last)
                let ours = logits.indices.max { logits[$0] < logits[$1] }!
                let same = ours == top1[p][i]
                agree += same ? 1 : 0
                selfAgree += top1F32Cache[p][i] == top1[p][i] ? 1 : 0
                total += 1
                if margins[p][i] >= 1 {
                    confident += 1
                    confidentAgree += same ? 1 : 0
                }
            }
        }
        let rate = Double(agree) / Double(total), floor = Double(selfAgree) / Double(total)
        let confidentRate = Double(confidentAgree) / Double(max(1, confident))
        print("llama.cpp top-1 agreement, \(format.rawValue): \(agree)/\(total) = \(String(format: "%.3f", rate)) "
              + "(llama.cpp f16 vs f32 KV cache: \(String(format: "%.3f", floor))); where llama.cpp leads by ≥ 1 logit: "
              + "\(confidentAgree)/\(confident)")
        #expect(total >= 400 && confident >= 100)
        #expect(confidentRate >= 0.99, "\(format.rawValue): where llama.cpp's top-1 leads by ≥ 1 logit we agree at \(confidentAgree) of \(confident)")
        #expect(rate >= floor - 0.03, "\(format.rawValue): top-1 agrees with llama.cpp at \(agree) of \(total) positions, llama.cpp with itself (f16 vs f32 KV cache) at \(selfAgree)")
    }
}
