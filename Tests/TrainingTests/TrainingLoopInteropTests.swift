import Basics
import Foundation
import ModelIO
import TestSupport
import Testing
import Training
import Transformer

/// Twenty optimizer steps of a tiny Llama, two sequences per step (gradient accumulation), AdamW with decay on
/// matrices only, gradient clipping and a cosine schedule with warmup, against the same loop in PyTorch
/// (Tests/Interop/training_loop_interop.py) from the same initial weights and batches.
@Suite(.serialized) struct TrainingLoopInteropTests {
    static let available = TestSupport.pythonHas(["torch", "transformers"])

    @Test(.enabled(if: available || TestSupport.interopRequired))
    func twentyStepsMatchPyTorch() throws {
        _ = try TestSupport.interopEnabled(["torch", "transformers"])
        let dir = TestSupport.scratchDirectory("loop")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let modelDir = dir + "/model"
        let made = try TestSupport.longctx(["init-model", "--layers", "2", "--hidden", "64", "--intermediate", "128",
                                            "--vocab", "300", "--seed", "5", "--out", modelDir])
        #expect(made.status == 0, "\(made.stderr)")
        var rng = SeededRandom(seed: 11)
        let lr = 3e-3, warmup = 5, stepsCount = 20
        let steps: [[TrainingSequence]] = (0..<stepsCount).map { _ in
            (0..<2).map { _ in
                // A learnable stream: a cycle of 12 tokens from a random start, so the loss must fall.
                let start = Int(rng.next() % 300)
                let tokens = (0..<96).map { (start + 7 * ($0 % 12)) % 300 }
                var targets = Array(tokens.dropFirst()) + [-1]
                for i in 0..<96 where rng.next() % 8 == 0 { targets[i] = -1 }
                return TrainingSequence(tokens: tokens, targets: targets)
            }
        }
        let spec: [String: Any] = [
            "steps": steps.map { $0.map { ["tokens": $0.tokens, "targets": $0.targets] } },
            "lr": lr, "warmup": warmup, "weight_decay": 0.1, "betas": [0.9, 0.95], "eps": 1e-8, "clip": 1.0,
        ]
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: dir + "/spec.json"))
        _ = try TestSupport.run("/usr/bin/env", ["python3", TestSupport.repoRoot + "/Tests/Interop/training_loop_interop.py",
                                                 modelDir, dir + "/spec.json", dir + "/torch.json"],
                                environment: ["OMP_NUM_THREADS": "2"])
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/torch.json"))) as! [String: [Double]]

        let model = try TrainableModel(directory: try ModelDirectory(path: modelDir), workers: 2)
        let store = model.parameters
        let slices = store.parameterSlices
        var optimizer = AdamW(slices: slices, options: AdamWOptions(learningRate: lr, beta1: 0.9, beta2: 0.95, eps: 1e-8,
                                                                    weightDecay: 0.1))
        let schedule = LearningRateSchedule(kind: .cosine, peak: lr, warmupSteps: warmup, totalSteps: stepsCount)
        var losses: [Double] = [], norms: [Double] = []
        for (i, batch) in steps.enumerated() {
            store.zeroGradients()
            let count = batch.reduce(0) { $0 + $1.lossTokens }
            var total = 0.0
            for s in batch { total += try model.accumulateGradients(s, lossScale: 1 / Float(count)).loss }
            losses.append(total / Double(count))
            let grads = UnsafeMutableBufferPointer(start: store.gradients, count: store.count)
            norms.append(Double(GradientClipping.clipGradientNorm(grads, slices: slices, maxNorm: 1.0)))
            optimizer.update(parameters: UnsafeMutableBufferPointer(start: store.values, count: store.count),
                             gradients: UnsafeBufferPointer(grads), learningRate: schedule.learningRate(at: i), threads: 2)
        }
        let torchLosses = try #require(reference["losses"]), torchNorms = try #require(reference["grad_norms"])
        #expect(torchLosses.count == stepsCount)
        for i in 0..<stepsCount {
            #expect(abs(losses[i] - torchLosses[i]) / torchLosses[i] <= 1e-4, "step \(i): loss \(losses[i]) vs torch \(torchLosses[i])")
            #expect(abs(norms[i] - torchNorms[i]) / torchNorms[i] <= 1e-4, "step \(i): grad norm \(norms[i]) vs torch \(torchNorms[i])")
        }
        // The loss must actually move, or the comparison says little.
        #expect(losses.last! < losses.first! - 0.05, "loss did not decrease: \(losses.first!) → \(losses.last!)")
    }
}
