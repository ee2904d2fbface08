import Basics
import Foundation
import ModelIO
import TestSupport
import Testing
import Training

/// `longctx train` in LoRA mode (the adapter loads in PEFT without warnings; PEFT's merge equals the merged model the
/// trainer writes and `longctx lora merge`), and the stage check (a failed check stops the run after the stage's
/// checkpoint; `--resume` goes on with the next stage; the report holds the check).
@Suite(.serialized) struct TrainModesTests {
    static var fixture: ProgressiveRunTests.Fixture { ProgressiveRunTests.fixture }

    static let loraStages = """
        seed: 3
        save_every: 2
        stages:
          - name: only
            seq_len: 256
            steps: 6
            lr: 5e-3
            schedule: constant
            warmup_steps: 0
            tokens_per_step: 512
            check: {task: passkey, lengths: [256], samples: 2, min_accuracy: 0, max_loss_increase: 10}

        """

    @Test(.enabled(if: TestSupport.pythonHas(["torch", "transformers", "peft"]) || TestSupport.interopRequired))
    func loraModeAdapterLoadsInPEFTAndMergesAsOurs() throws {
        _ = try TestSupport.interopEnabled(["torch", "transformers", "peft"])
        let f = Self.fixture
        let root = TestSupport.scratchDirectory("train-lora")
        try Self.loraStages.write(toFile: root + "/stages.yaml", atomically: true, encoding: .utf8)
        let out = root + "/run"
        let r = try TestSupport.longctx(["train", "--model", f.model, "--data", f.data, "--stages", root + "/stages.yaml",
                                         "--out", out, "--workers", "2", "--held-out", f.data,
                                         "--lora-rank", "4", "--lora-alpha", "8", "--lora-targets", "q_proj,v_proj,down_proj",
                                         "--lora-trainable", "norms", "--lora-merge"])
        try #require(r.status == 0, "longctx train --lora-rank failed: \(r.stderr)")
        for file in ["adapter/adapter_config.json", "adapter/adapter_model.safetensors", "model.safetensors", "config.json"] {
            #expect(FileManager.default.fileExists(atPath: "\(out)/final/\(file)"), "final/\(file) missing")
        }
        let config = try FileOps.readJSONObject(out + "/final/adapter/adapter_config.json").0
        #expect(config["r"]?.intValue == 4)
        let losses = try TrainingLog.read(path: out + "/train.jsonl").map(\.loss)
        #expect(losses.count == 6 && losses.last! < losses.first!, "LoRA training did not lower the loss: \(losses)")
        let report = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
        #expect(report.contains("passkey") && report.contains("LoRA rank 4"), "report lacks the check or the mode")

        let merged = root + "/merged"
        let m = try TestSupport.longctx(["lora", "merge", "--base", f.model, "--adapter", out + "/final/adapter", "--out", merged])
        try #require(m.status == 0, "longctx lora merge failed: \(m.stderr)")
        let ids = Array(0..<64).map { ($0 * 37) % 512 }
        let reference: [String: Any] = ["input_ids": ids, "targets": Array(ids.dropFirst()) + [-1]]
        try JSONSerialization.data(withJSONObject: reference).write(to: URL(fileURLWithPath: root + "/reference.json"))
        let check = try TestSupport.run("/usr/bin/env", [
            "python3", TestSupport.repoRoot + "/Tests/Interop/lora_training_interop.py", "check", f.model,
            out + "/final/adapter", merged, out + "/final/model.safetensors", root + "/reference.json",
        ], environment: ["PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "2"])
        try #require(check.status == 0, "check failed: \(check.stderr)")
        let line = try #require(check.stdout.split(separator: "\n").last.map(String.init))
        let j = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        #expect((j["warnings"] as! [String]).isEmpty, "PEFT warned: \(j["warnings"]!)")
        #expect((j["worst_vs_merged"] as! NSNumber).doubleValue <= 1e-6, "PEFT merge vs longctx lora merge: \(line)")
        #expect((j["worst_vs_effective"] as! NSNumber).doubleValue <= 1e-6, "PEFT merge vs the trainer's merged model: \(line)")
        // 3 targets × 2 layers adapted, 2 × 2 layer norms and the final norm trained in full.
        #expect((j["changed_by_adapter"] as! NSNumber).intValue == 11, "\(line)")
    }

    @Test func failedStageCheckStopsAndResumeGoesOn() throws {
        let f = Self.fixture
        let root = TestSupport.scratchDirectory("train-check")
        let stages = ProgressiveRunTests.stagesYAML
            .replacingOccurrences(of: "    steps: 12", with: "    steps: 2\n    check: {task: passkey, samples: 2, min_accuracy: 1.0}")
            .replacingOccurrences(of: "    steps: 9", with: "    steps: 1")
        try stages.write(toFile: root + "/stages.yaml", atomically: true, encoding: .utf8)
        let out = root + "/run"
        let args = ["train", "--model", f.model, "--data", f.data, "--stages", root + "/stages.yaml", "--out", out, "--workers", "2"]
        let first = try TestSupport.longctx(args)
        #expect(first.status == 1)
        #expect(first.stderr.contains("stage 'short' failed its check") && first.stderr.contains("256: 0 %"), "\(first.stderr)")
        #expect(FileManager.default.fileExists(atPath: out + "/stage-1/model.safetensors"))
        #expect(!FileManager.default.fileExists(atPath: out + "/stage-2"))
        let report = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
        #expect(report.contains("Check after short"), "the report lacks the failed check")
        let resumed = try TestSupport.longctx(args + ["--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(FileManager.default.fileExists(atPath: out + "/final/model.safetensors"))
        #expect(try TrainingLog.read(path: out + "/train.jsonl").map(\.step) == [1, 2, 3])
    }

    @Test func loraOptionsAreChecked() throws {
        let f = Self.fixture
        let out = TestSupport.scratchDirectory("train-lora-bad") + "/run"
        let base = ["train", "--model", f.model, "--data", f.data, "--stages", f.stages, "--out", out]
        for (extra, needle) in [(["--lora-rank", "0"], "--lora-rank"), (["--lora-rank", "4", "--lora-targets", "q_proj,x_proj"], "x_proj"),
                                (["--lora-merge"], "--lora-merge")] {
            let r = try TestSupport.longctx(base + extra)
            #expect(r.status != 0)
            #expect(r.stderr.contains(needle), "\(extra): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out), "\(out) was created")
        }
    }
}
