import Foundation
import ModelIO
import TestSupport
import Testing
@testable import Transformer

/// Logits of random Llama / Qwen2 / Mistral models against transformers (eager attention, f32), for 256-token
/// inputs, every RoPE scaling type at positions beyond the original context, biases, tied embeddings, GQA,
/// sliding window and bf16 weights. Reference models and logits are made by Tests/Interop/engine_interop.py.
@Suite(.serialized, .enabled(if: TestSupport.interopCanRun(["torch", "transformers"]), "needs Python torch, transformers (LONGCTX_INTEROP=1 makes their absence a failure)"))
struct EngineInteropTests {
    static let cases = ["llama-default", "llama-tied-bias", "llama-headdim", "llama-bf16", "llama-linear",
                        "llama-dynamic", "llama-yarn", "llama-llama3", "llama-longrope", "qwen2", "qwen2-yarn",
                        "mistral-window"]

    /// Built once per test process.
    static let references: String? = {
        guard (try? TestSupport.interopEnabled(["torch", "transformers"])) == true else { return nil }
        let dir = TestSupport.scratchDirectory("engine")
        let script = TestSupport.repoRoot + "/Tests/Interop/engine_interop.py"
        let r = try? TestSupport.run("/usr/bin/env", ["python3", script, dir],
                                     environment: ["PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "2"])
        return r?.status == 0 ? dir : nil
    }()

    static func load(_ name: String) throws -> (model: TransformerModel, ids: [Int], logits: [Float])? {
        guard try TestSupport.interopEnabled(["torch", "transformers"]) else { return nil }
        let dir = try #require(references, "engine_interop.py failed") + "/" + name
        let model = try TransformerModel(directory: dir)
        let ref = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/reference.json"))) as! [String: Any]
        let ids = (ref["input_ids"] as! [NSNumber]).map(\.intValue)
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/logits.f32"))
        let logits = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        return (model, ids, logits)
    }

    static func maxAbs(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Float {
        zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
    }

    @Test(arguments: cases)
    func logitsMatchTransformers(_ name: String) throws {
        guard let (model, ids, reference) = try Self.load(name) else { return }
        let vocab = model.configuration.vocabSize
        #expect(reference.count == ids.count * vocab)
        let ours = try model.forward(ids, cache: model.makeCache(), logits: .all)
        let err = Self.maxAbs(ours[...], reference[...])
        let scale = reference.map(abs).max()!
        #expect(err <= 1e-4, "\(name): max |Δlogit| = \(err) (logit scale \(scale))")
        #expect(scale > 0.5, "\(name): reference logits too small to be a meaningful check")
    }

    /// Chunked prefill followed by one-token decoding through the KV cache gives the same logits as one full
    /// forward in transformers (rope types whose frequencies do not depend on the call's length).
    @Test(arguments: ["llama-default", "llama-yarn", "qwen2", "mistral-window", "llama-bf16"])
    func chunkedPrefillAndDecodeMatch(_ name: String) throws {
        guard let (model, ids, reference) = try Self.load(name) else { return }
        let vocab = model.configuration.vocabSize
        model.prefillChunk = 37
        let cache = model.makeCache(capacity: 8)
        let split = 200
        var ours = try model.forward(Array(ids[..<split]), cache: cache, logits: .all)
        for id in ids[split...] { ours += try model.forward([id], cache: cache, logits: .last) }
        #expect(cache.count == ids.count)
        let err = Self.maxAbs(ours[...], reference[..<(ids.count * vocab)])
        #expect(err <= 1e-4, "\(name): max |Δlogit| = \(err)")
    }
}
