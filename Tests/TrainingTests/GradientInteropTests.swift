import Foundation
import ModelIO
import TestSupport
import Testing
import Training
import Transformer

/// Every parameter's gradient of the mean cross-entropy of one 320-token sequence against torch autograd through
/// transformers (f32, eager attention): tied and untied Llama, biases, Qwen2, Mistral's sliding window, YaRN /
/// llama3 / linear RoPE scaling, and packed documents (a block-diagonal causal mask given to transformers
/// explicitly, with and without position reset). References are made by Tests/Interop/training_interop.py.
@Suite(.serialized) struct GradientInteropTests {
    static let cases = ["llama", "llama-tied-bias", "qwen2", "mistral-window", "llama-yarn", "llama-llama3",
                        "llama-linear", "llama-docmask", "llama-docmask-reset", "mistral-window-docmask"]

    static let references: String? = {
        guard TestSupport.pythonHas(["torch", "transformers", "safetensors"]) else { return nil }
        let dir = TestSupport.scratchDirectory("grads")
        let r = try? TestSupport.run("/usr/bin/env", ["python3", TestSupport.repoRoot + "/Tests/Interop/training_interop.py", dir],
                                     environment: ["PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "2"])
        return r?.status == 0 ? dir : nil
    }()

    struct Reference {
        let sequence: TrainingSequence
        let loss: Double
        let gradients: [String: [Float]]
    }

    static func reference(_ dir: String) throws -> Reference {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/reference.json"))) as! [String: Any]
        let ints = { (key: String) in (json[key] as! [NSNumber]).map(\.intValue) }
        let starts = (json["document_start"] as? [NSNumber]).map { $0.map { Int32($0.intValue) } }
        let sequence = TrainingSequence(tokens: ints("input_ids"), positions: ints("positions"), documentStart: starts,
                                        targets: ints("targets"))
        let file = try SafetensorsFile(path: dir + "/grads.safetensors")
        var grads: [String: [Float]] = [:]
        for name in file.names { grads[name] = try file.tensor(name).floats() }
        return Reference(sequence: sequence, loss: (json["loss"] as! NSNumber).doubleValue, gradients: grads)
    }

    static func gradients(_ dir: String, recompute: Bool) throws -> (loss: Double, grads: [(name: String, shape: [Int], values: [Float])]) {
        let model = try TrainableModel(directory: try ModelDirectory(path: dir), workers: 2, recompute: recompute)
        let ref = try reference(dir)
        let count = ref.sequence.lossTokens
        let (loss, tokens) = try model.accumulateGradients(ref.sequence, lossScale: 1 / Float(count))
        #expect(tokens == count)
        return (loss / Double(tokens), model.parameters.huggingFaceArrays(of: model.parameters.gradients))
    }

    @Test(.enabled(if: TestSupport.pythonHas(["torch", "transformers", "safetensors"]) || TestSupport.interopRequired),
          arguments: cases)
    func gradientsMatchTorchAutograd(_ name: String) throws {
        _ = try TestSupport.interopEnabled(["torch", "transformers", "safetensors"])
        let dir = try #require(Self.references, "training_interop.py failed") + "/" + name
        let ref = try Self.reference(dir)
        let (loss, ours) = try Self.gradients(dir, recompute: false)
        #expect(abs(loss - ref.loss) / ref.loss < 1e-5, "\(name): loss \(loss) vs torch \(ref.loss)")
        #expect(Set(ours.map(\.name)) == Set(ref.gradients.keys), "\(name): parameter names differ")
        for g in ours {
            guard let r = ref.gradients[g.name] else { continue }
            var diff = 0.0, norm = 0.0
            for (a, b) in zip(g.values, r) { diff += Double(a - b) * Double(a - b); norm += Double(b) * Double(b) }
            let rel = (diff / max(norm, 1e-300)).squareRoot()
            #expect(rel <= 1e-4, "\(name) \(g.name): ‖g − g_torch‖/‖g_torch‖ = \(rel)")
            #expect(norm > 0, "\(name) \(g.name): zero reference gradient")
        }
    }

    /// Recomputing each layer's activations in the backward gives bit-identical gradients.
    @Test(.enabled(if: TestSupport.pythonHas(["torch", "transformers", "safetensors"]) || TestSupport.interopRequired),
          arguments: ["llama-tied-bias", "mistral-window-docmask"])
    func recomputationIsIdentical(_ name: String) throws {
        _ = try TestSupport.interopEnabled(["torch", "transformers", "safetensors"])
        let dir = try #require(Self.references, "training_interop.py failed") + "/" + name
        let a = try Self.gradients(dir, recompute: false), b = try Self.gradients(dir, recompute: true)
        #expect(a.loss == b.loss)
        for (x, y) in zip(a.grads, b.grads) { #expect(x.values == y.values, "\(name) \(x.name) differs with recomputation") }
    }
}
