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

    static func load(_ name: String, compute: ComputePrecision = .f32,
                     logitsFile: String = "logits.f32") throws -> (model: TransformerModel, ids: [Int], logits: [Float])? {
        guard try TestSupport.interopEnabled(["torch", "transformers"]) else { return nil }
        let dir = try #require(references, "engine_interop.py failed") + "/" + name
        let model = try TransformerModel(directory: dir, compute: compute)
        let ref = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/reference.json"))) as! [String: Any]
        let ids = (ref["input_ids"] as! [NSNumber]).map(\.intValue)
        return (model, ids, try floats(dir + "/" + logitsFile))
    }

    static func floats(_ path: String) throws -> [Float] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
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

    /// bf16 compute mode (`vdpbf16ps`/AMX products: bf16 weights × bf16-rounded activations, f32 accumulation; norms,
    /// RoPE and softmax in f32; prefill attention with bf16 Q, K, V and probabilities on AMX where the head dimension
    /// is a multiple of 32 — `llama-headdim`, head_dim 32 — else f32) against transformers run in bfloat16 (every activation rounded to bf16,
    /// attention and norms included). The two round at different places, so neither reproduces the other; the
    /// stated bound is relative to the size of bf16's own effect, ε = max|transformers bf16 − transformers f32|:
    /// - ours is no farther from the f32 result than transformers bf16 is (we round a subset of its roundings):
    ///   max|ours − f32| ≤ ε;
    /// - hence (triangle inequality) max|ours − transformers bf16| ≤ 2ε;
    /// - and bf16 mode really ran: max|ours − f32| > 1e-4 (the f32 path's own tolerance).
    @Test(.enabled(if: ComputePrecision.bf16IsNative, "no avx512_bf16 (or LONGCTX_KERNELS below avx512): bf16 mode runs f32 here"),
          arguments: ["llama-default", "llama-bf16", "qwen2", "llama-headdim"])
    func bf16ComputeMatchesTransformersBF16(_ name: String) throws {
        guard let (model, ids, f32) = try Self.load(name, compute: .bf16) else { return }
        let hfBF16 = try Self.floats(model.directory.path + "/logits_bf16.f32")
        #expect(hfBF16.count == f32.count)
        let ours = try model.forward(ids, cache: model.makeCache(), logits: .all)
        let eps = Self.maxAbs(hfBF16[...], f32[...])
        let ownError = Self.maxAbs(ours[...], f32[...])
        let cross = Self.maxAbs(ours[...], hfBF16[...])
        let vocab = model.configuration.vocabSize
        func argmax(_ v: [Float], _ t: Int) -> Int { (0..<vocab).max { v[t * vocab + $0] < v[t * vocab + $1] }! }
        let agree = (0..<ids.count).filter { argmax(ours, $0) == argmax(hfBF16, $0) }.count
        print("bf16 \(name): ε = \(eps), max|ours − f32| = \(ownError), max|ours − transformers bf16| = \(cross), top-1 agreement with transformers bf16 \(agree)/\(ids.count) (\(model.computePath))")
        #expect(ownError <= eps, "\(name): max|ours − f32| = \(ownError) > ε = \(eps)")
        #expect(cross <= 2 * eps, "\(name): max|ours − transformers bf16| = \(cross) > 2ε = \(2 * eps)")
        #expect(ownError > 1e-4, "\(name): bf16 mode left the f32 logits unchanged (\(ownError)); did it run?")
    }
}
