import Foundation
import TestSupport
import Testing
import Tokenizers
import GGUFImport
@testable import Transformer

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
          arguments: [WeightFormat.q8_0, .q4_1, .q4_0, .q4_k])
    func quantizedTop1AgreesWithLlamaCpp(_ format: WeightFormat) throws {
        try #require(TestSupport.pythonHas(["llama_cpp"]), "LONGCTX_LLAMA_CPP=1 but Python cannot import llama_cpp")
        guard var dir = try Self.require() else { return }
        let gguf = Self.ggufPath(dir)
        try #require(FileManager.default.fileExists(atPath: gguf), "no \(gguf)")
        let scratch = TestSupport.scratchDirectory("llamacpp")
        let script = TestSupport.repoRoot + "/Tests/Interop/llamacpp_interop.py"
        var referenceFile = gguf
        if format != .q4_1 {
            referenceFile = try Self.llamaQuantized(gguf, format == .q4_k ? "q4_k_m" : format.rawValue, in: scratch)
        }
        // Q4_K_M: our engine runs on the directory imported from llama.cpp's file, on its own kept blocks.
        if format == .q4_k { dir = try Self.imported(referenceFile, in: scratch) }
        let lm = try LanguageModel.load(directory: dir, weights: format)
        let prompts = try Self.agreementPrompts(lm.tokenizer)
        let idsPath = scratch + "/ids.json"
        try JSONSerialization.data(withJSONObject: prompts).write(to: URL(fileURLWithPath: idsPath))
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

    /// The embedded default's GGUF beside its imported directory `dir` (CACHE/models/NAME ← CACHE/downloads/NAME).
    static func ggufPath(_ dir: String) -> String {
        let cache = ((dir as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
        return "\(cache)/downloads/\(name)/SmolLM2-135M-Instruct.Q4_1.gguf"
    }

    /// `gguf` re-quantized by llama.cpp's own quantizer to `kind` (`q8_0`, `q4_0`, `q4_k_m`, …) in `scratch`; the
    /// tied embedding must stay Q8_0 (our LM head's format).
    static func llamaQuantized(_ gguf: String, _ kind: String, in scratch: String) throws -> String {
        let out = scratch + "/\(kind).gguf"
        let script = TestSupport.repoRoot + "/Tests/Interop/llamacpp_interop.py"
        let q = try TestSupport.run("/usr/bin/env", ["python3", script, "quantize", gguf, out, kind])
        try #require(q.status == 0, "llamacpp_interop.py quantize: \(q.stderr.suffix(800))")
        let chosen = try #require(try JSONSerialization.jsonObject(with: Data(q.stdout.utf8)) as? [String: Any])
        try #require(chosen["token_embd"] as? String == "Q8_0", "llama.cpp chose \(chosen) for \(kind)")
        return out
    }

    /// `gguf` imported (f32) into `scratch/imported`, with its blocks kept.
    static func imported(_ gguf: String, in scratch: String) throws -> String {
        let out = scratch + "/imported"
        try? FileManager.default.removeItem(atPath: out)
        _ = try GGUFImporter.importModel(gguf: gguf, to: out, dtype: .f32)
        return out
    }

    /// llama.cpp's Q4_K_M file of the embedded default imported with its blocks kept (``GGUFBlocks``): under
    /// `--weights q4_k` the engine's weights dequantize to exactly gguf-py's values, bit for bit, for the Q4_K,
    /// Q5_0 and Q8_0 tensors (Q/K rows un-permuted as transformers does); the Q6_K ones, re-quantized to Q8_0 at
    /// load, within half a Q8_0 step (d/2 per element plus the f16 rounding of d: 127·d·2⁻¹¹).
    @Test(.enabled(if: llamaCppRequired || TestSupport.pythonHas(["llama_cpp", "gguf"]),
                   "needs Python llama_cpp and gguf (LONGCTX_LLAMA_CPP=1 makes their absence a failure)"))
    func q4kImportKeepsLlamaCppBlocks() throws {
        try #require(TestSupport.pythonHas(["llama_cpp", "gguf"]), "LONGCTX_LLAMA_CPP=1 but Python cannot import llama_cpp/gguf")
        guard let base = try Self.require() else { return }
        let scratch = TestSupport.scratchDirectory("q4k-import")
        let file = try Self.llamaQuantized(Self.ggufPath(base), "q4_k_m", in: scratch)
        let dir = try Self.imported(file, in: scratch)
        let model = try TransformerModel(directory: dir, weights: .q4_k)
        // (GGUF name, our matrix, first row of the tensor in it)
        var picks: [(String, WeightMatrix, Int)] = [("token_embd.weight", model.weights.lmHead, 0)]
        let c = model.configuration
        for l in [0, 3, 10, 29] {  // ffn_down: Q6_K in the first and last layers, Q4_K in 3 and 10
            let w = model.weights.layers[l]
            picks += [("blk.\(l).ffn_down.weight", w.down, 0), ("blk.\(l).attn_q.weight", w.qkv, 0),
                      ("blk.\(l).attn_k.weight", w.qkv, c.queryWidth), ("blk.\(l).attn_v.weight", w.qkv, c.queryWidth + c.kvWidth),
                      ("blk.\(l).ffn_up.weight", w.gateUp, c.intermediateSize)]
        }
        let script = TestSupport.repoRoot + "/Tests/Interop/llamacpp_interop.py"
        let r = try TestSupport.run("/usr/bin/env", ["python3", script, "dequantize", file, scratch] + picks.map(\.0))
        try #require(r.status == 0, "llamacpp_interop.py dequantize: \(r.stderr.suffix(800))")
        let o = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let types = try #require(o["types"] as? [String: String]), shapes = try #require(o["shapes"] as? [String: [Int]])
        var seen = Set<String>()
        for (name, w, first) in picks {
            let type = try #require(types[name]), shape = try #require(shapes[name])
            seen.insert(type)
            let want = try Data(contentsOf: URL(fileURLWithPath: "\(scratch)/\(name).f32")).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            let q = try #require(w.quantized, "\(name) is not quantized")
            var all = [Float](repeating: 0, count: q.rows * q.cols)
            q.dequantize(rows: first + shape[0], into: &all)
            let got = Array(all[(first * q.cols)..<((first + shape[0]) * q.cols)])
            try #require(got.count == want.count && q.cols == shape[1])
            if type == "Q6_K" {
                for b in 0..<(got.count / 32) {
                    let amax = want[(b * 32)..<(b * 32 + 32)].map(abs).max()!, d = amax / 127
                    let err = zip(got[(b * 32)..<(b * 32 + 32)], want[(b * 32)..<(b * 32 + 32)]).map { abs($0 - $1) }.max()!
                    #expect(err <= d / 2 * 1.0001 + 127 * d / 2048 + 1e-9, "\(name) block \(b): \(err) beyond Q8_0 rounding")
                }
            } else {
                let bad = zip(got, want).filter { $0.bitPattern != $1.bitPattern }.count
                #expect(bad == 0, "\(name) (\(type)): \(bad) of \(got.count) values differ from gguf-py's")
            }
        }
        #expect(seen.isSuperset(of: ["Q4_K", "Q6_K", "Q5_0", "Q8_0"]), "types compared: \(seen)")
    }
}
