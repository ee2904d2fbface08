import Foundation
import TestSupport
import Testing
import Tokenizers
import Transformer

extension RealModelTests {
    /// Fixed real-text prompts: paragraphs of this repository's README (English prose and code).
    static func agreementPrompts(_ tokenizer: Tokenizer) throws -> [[Int]] {
        let text = try String(contentsOfFile: TestSupport.repoRoot + "/README.md", encoding: .utf8)
        let paragraphs = text.components(separatedBy: "\n\n").filter { $0.count > 300 }.prefix(4)
        return paragraphs.map { Array(tokenizer.encode($0).prefix(160)) }
    }

    /// Quantized decoding against llama.cpp on the same GGUF (SmolLM2-135M-Instruct, Q4_1): our engine loads the
    /// directory imported from it with `--weights q8_0` / `q4_1` (the file's own blocks back) / `q4_0` and runs every prompt teacher-forced one token at a
    /// time through the KV cache (the integer matrix–vector kernels), llama.cpp evaluates the same ids on its Q4_1
    /// blocks; the top-1 token must agree at ≥ 95 % of positions (teacher forcing: one flip does not cascade).
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
        let r = try TestSupport.run("/usr/bin/env", ["python3", TestSupport.repoRoot + "/Tests/Interop/llamacpp_interop.py",
                                                     "top1", gguf, idsPath], environment: ["OMP_NUM_THREADS": "2"])
        try #require(r.status == 0, "llamacpp_interop.py: \(r.stderr.suffix(800))")
        let reference = try #require((try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["top1"] as? [[Int]])
        var agree = 0, total = 0
        for (ids, theirs) in zip(prompts, reference) {
            let kv = lm.model.makeCache(capacity: ids.count)
            for (i, id) in ids.enumerated() {
                let logits = try lm.model.forward([id], cache: kv, logits: .last)
                let ours = logits.indices.max { logits[$0] < logits[$1] }!
                if ours == theirs[i] { agree += 1 }
                total += 1
            }
        }
        let rate = Double(agree) / Double(total)
        print("llama.cpp top-1 agreement, \(format.rawValue): \(agree)/\(total) = \(String(format: "%.3f", rate))")
        #expect(total >= 400)
        #expect(rate >= 0.95, "\(format.rawValue): top-1 agrees with llama.cpp at \(agree) of \(total) positions")
    }
}
