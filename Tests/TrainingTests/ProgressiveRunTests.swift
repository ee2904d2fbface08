import Basics
import Foundation
import ModelIO
import TestSupport
import Testing
import Tokenizers
import Training
import Transformer

/// `longctx train` end to end on a tiny model: two stages (256 tokens, then 1K with the YaRN factor the planner
/// picks), per-stage checkpoints that transformers loads with that stage's RoPE (its logits equal our engine's), a
/// lower held-out loss at the stage-2 length, and a run killed with SIGKILL in the middle of stage 2 that `--resume`
/// finishes with byte-identical final weights.
@Suite(.serialized) struct ProgressiveRunTests {
    static let stagesYAML = """
        seed: 7
        weight_decay: 0.1
        betas: [0.9, 0.95]
        eps: 1e-8
        grad_clip: 1.0
        recompute: true
        save_every: 3
        doc_mask: true
        reset_positions: false
        stages:
          - name: short
            seq_len: 256
            steps: 12
            lr: 3e-3
            schedule: constant
            warmup_steps: 2
            tokens_per_step: 1K
          - name: long
            seq_len: 1K
            plan: {method: yarn}
            steps: 9
            lr: 2e-3
            schedule: cosine
            warmup_steps: 1
            tokens_per_step: 2K

        """

    /// Documents that repeat one of a few word cycles from a random offset: learnable, with long-range structure.
    static func corpus(seed: UInt64, documents: Int) -> String {
        let cycles = [["amber", "birch", "cedar", "dune", "ember", "fjord", "grove"],
                      ["north", "east", "south", "west"],
                      ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]]
        var rng = SeededRandom(seed: seed)
        var lines: [String] = []
        for _ in 0..<documents {
            let cycle = cycles[Int(rng.next() % UInt64(cycles.count))]
            let words = 40 + Int(rng.next() % 400)
            var offset = Int(rng.next() % UInt64(cycle.count))
            var text: [String] = []
            for _ in 0..<words { text.append(cycle[offset % cycle.count]); offset += 1 }
            let object = try! JSONSerialization.data(withJSONObject: ["text": text.joined(separator: " ")])
            lines.append(String(decoding: object, as: UTF8.self))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    struct Fixture {
        let root: String, model: String, data: String, stages: String
    }

    static let fixture: Fixture = {
        let root = TestSupport.scratchDirectory("progressive")
        let model = root + "/model"
        let r = try! TestSupport.longctx(["init-model", "--layers", "2", "--hidden", "64", "--intermediate", "128",
                                          "--max-position", "256", "--vocab", "512", "--seed", "2", "--out", model])
        precondition(r.status == 0, r.stderr)
        try! corpus(seed: 1, documents: 300).write(toFile: root + "/train.jsonl", atomically: true, encoding: .utf8)
        try! stagesYAML.write(toFile: root + "/stages.yaml", atomically: true, encoding: .utf8)
        return Fixture(root: root, model: model, data: root + "/train.jsonl", stages: root + "/stages.yaml")
    }()

    static func trainArguments(_ f: Fixture, out: String) -> [String] {
        ["train", "--model", f.model, "--data", f.data, "--stages", f.stages, "--out", out, "--workers", "2"]
    }

    /// The uninterrupted run, made once.
    static let uninterrupted: String = {
        let out = fixture.root + "/run-a"
        let r = try! TestSupport.longctx(trainArguments(fixture, out: out))
        precondition(r.status == 0, "longctx train failed: \(r.stderr)")
        return out
    }()

    @Test func writesStageCheckpointsLogAndReport() throws {
        let out = Self.uninterrupted
        for name in ["stage-1", "stage-2", "final"] {
            for file in ["config.json", "model.safetensors", "tokenizer.json"] {
                #expect(FileManager.default.fileExists(atPath: "\(out)/\(name)/\(file)"), "\(name)/\(file) missing")
            }
        }
        let records = try TrainingLog.read(path: out + "/train.jsonl")
        #expect(records.count == 21)
        #expect(records.map(\.step) == Array(1...21))
        #expect(records.filter { $0.stageIndex == 1 }.allSatisfy { $0.seqLen == 1024 })
        #expect(FileManager.default.fileExists(atPath: out + "/report.html"))
        // Stage 2's config carries the planned YaRN scaling and the new length.
        let config = try FileOps.readJSONObject(out + "/stage-2/config.json").0
        #expect(config["max_position_embeddings"]?.intValue == 1024)
        let stage2 = try TransformerConfiguration(directory: try ModelDirectory(path: out + "/stage-2"))
        #expect(stage2.rope.ropeType.rawValue == "yarn")
    }

    @Test func heldOutLossFallsAtTheStage2Length() throws {
        let out = Self.uninterrupted
        let tokenizer = try Tokenizer.load(directory: Self.fixture.model)
        let text = Self.corpus(seed: 99, documents: 12)
            .split(separator: "\n").map { String($0.dropFirst(9).dropLast(2)) }.joined(separator: " ")
        let ids = Array(tokenizer.encode(text, addSpecialTokens: false).prefix(1024))
        #expect(ids.count == 1024)
        let sequence = TrainingSequence(causal: ids)
        func loss(_ dir: String) throws -> Double {
            let model = try TrainableModel(directory: try ModelDirectory(path: dir), workers: 2)
            let (sum, n) = try model.loss(sequence)
            return sum / Double(n)
        }
        let before = try loss(Self.fixture.model), after = try loss(out + "/final")
        #expect(after < before - 1.0, "held-out loss at 1024 tokens: base \(before), final \(after)")
    }

    @Test(.enabled(if: TestSupport.pythonHas(["torch", "transformers"]) || TestSupport.interopRequired))
    func transformersLoadsEachStageWithItsRope() throws {
        _ = try TestSupport.interopEnabled(["torch", "transformers"])
        let out = Self.uninterrupted
        for stage in ["stage-1", "stage-2"] {
            let dir = "\(out)/\(stage)"
            var rng = SeededRandom(seed: 4)
            let ids = (0..<600).map { _ in Int(rng.next() % 512) }
            let code = """
                import json, sys, torch
                from transformers import AutoModelForCausalLM
                m = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32, attn_implementation="eager").eval()
                ids = torch.tensor([json.loads(sys.argv[2])])
                with torch.no_grad():
                    logits = m(ids).logits[0]
                open(sys.argv[3], "wb").write(logits.numpy().astype("<f4").tobytes())
                print(m.config.rope_parameters.get("rope_type") if hasattr(m.config, "rope_parameters") and m.config.rope_parameters else "default")
                """
            let logitsPath = out + "/\(stage)-logits.f32"
            let printed = try TestSupport.runPython(code, [dir, "\(ids)", logitsPath])
            let reference = try Data(contentsOf: URL(fileURLWithPath: logitsPath)).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            let model = try TransformerModel(directory: dir)
            let ours = try model.forward(ids, cache: model.makeCache(), logits: .all)
            #expect(ours.count == reference.count)
            let err = zip(ours, reference).map { abs($0 - $1) }.max() ?? .infinity
            #expect(err <= 1e-4, "\(stage): max |Δlogit| = \(err) against transformers")
            if stage == "stage-2" { #expect(printed.contains("yarn"), "transformers read rope type \(printed)") }
        }
    }

    @Test func killedRunResumesToIdenticalWeights() throws {
        let f = Self.fixture
        let out = f.root + "/run-b"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestSupport.longctxPath)
        process.arguments = Self.trainArguments(f, out: out)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Kill it once stage 2 has saved a state and gone on (stage step ≥ 4 of 9).
        let deadline = Date().addingTimeInterval(600)
        var killed = false
        while process.isRunning && Date() < deadline {
            if let records = try? TrainingLog.read(path: out + "/train.jsonl"),
               records.contains(where: { $0.stageIndex == 1 && $0.stageStep >= 4 }) {
                kill(process.processIdentifier, SIGKILL)
                killed = true
                break
            }
            usleep(20_000)
        }
        process.waitUntilExit()
        try #require(killed, "the run finished before it could be killed mid-stage 2")
        #expect(!FileManager.default.fileExists(atPath: out + "/final"))
        let resumed = try TestSupport.longctx(Self.trainArguments(f, out: out) + ["--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let a = try Data(contentsOf: URL(fileURLWithPath: Self.uninterrupted + "/final/model.safetensors"))
        let b = try Data(contentsOf: URL(fileURLWithPath: out + "/final/model.safetensors"))
        #expect(a == b, "final weights differ after SIGKILL + --resume")
        let la = try TrainingLog.read(path: Self.uninterrupted + "/train.jsonl").map(\.loss)
        let lb = try TrainingLog.read(path: out + "/train.jsonl").map(\.loss)
        #expect(la == lb, "loss curves differ after resume")
    }
}

/// Bad input to `longctx train`: one line naming the file and the problem, exit status 1, nothing under `--out`.
@Suite struct TrainBadInputTests {
    static var fixture: ProgressiveRunTests.Fixture { ProgressiveRunTests.fixture }

    func expectRefused(_ arguments: [String], out: String, mentioning needles: [String]) throws {
        let r = try TestSupport.longctx(arguments)
        #expect(r.status == 1, "exit \(r.status): \(r.stderr)")
        let message = r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(message.split(separator: "\n").count == 1, "more than one line: \(message)")
        for needle in needles { #expect(message.contains(needle), "'\(needle)' not in: \(message)") }
        #expect(!FileManager.default.fileExists(atPath: out), "\(out) was created")
    }

    @Test func malformedJSONLNamesTheLine() throws {
        let f = Self.fixture
        let bad = f.root + "/bad.jsonl"
        try "{\"text\": \"fine\"}\n{\"text\": oops}\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let out = f.root + "/out-bad-jsonl"
        try expectRefused(["train", "--model", f.model, "--data", bad, "--stages", f.stages, "--out", out],
                          out: out, mentioning: ["bad.jsonl", "2"])
    }

    @Test func unknownStageKeyAndNonIncreasingLengths() throws {
        let f = Self.fixture
        let unknown = f.root + "/unknown.yaml"
        try ProgressiveRunTests.stagesYAML.replacingOccurrences(of: "    steps: 12", with: "    steps: 12\n    stpes: 3")
            .write(toFile: unknown, atomically: true, encoding: .utf8)
        let out = f.root + "/out-unknown"
        try expectRefused(["train", "--model", f.model, "--data", f.data, "--stages", unknown, "--out", out],
                          out: out, mentioning: ["unknown.yaml", "stpes"])
        let shrinking = f.root + "/shrinking.yaml"
        try ProgressiveRunTests.stagesYAML.replacingOccurrences(of: "seq_len: 1K", with: "seq_len: 128")
            .write(toFile: shrinking, atomically: true, encoding: .utf8)
        try expectRefused(["train", "--model", f.model, "--data", f.data, "--stages", shrinking, "--out", out],
                          out: out, mentioning: ["shrinking.yaml", "seq_len"])
    }

    @Test func resumeRefusesAnotherStagesFileOrModel() throws {
        let f = Self.fixture
        let run = ProgressiveRunTests.uninterrupted
        let other = f.root + "/other.yaml"
        try ProgressiveRunTests.stagesYAML.replacingOccurrences(of: "seed: 7", with: "seed: 8")
            .write(toFile: other, atomically: true, encoding: .utf8)
        let r = try TestSupport.longctx(["train", "--model", f.model, "--data", f.data, "--stages", other, "--out", run,
                                         "--resume", "--workers", "2"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("stages file"), "\(r.stderr)")
        let otherModel = f.root + "/other-model"
        _ = try TestSupport.longctx(["init-model", "--layers", "2", "--hidden", "64", "--intermediate", "128",
                                     "--max-position", "256", "--vocab", "512", "--seed", "3", "--out", otherModel])
        let m = try TestSupport.longctx(["train", "--model", otherModel, "--data", f.data, "--stages", f.stages,
                                         "--out", run, "--resume", "--workers", "2"])
        #expect(m.status == 1)
        #expect(m.stderr.contains("another model"), "\(m.stderr)")
    }
}
