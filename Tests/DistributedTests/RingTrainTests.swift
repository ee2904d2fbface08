import Distributed
import Foundation
import ModelIO
import TestSupport
import Testing
import Training

/// `longctx train` with each sequence sharded over a ring: in-process (`--ring 2`) and one process per rank
/// (`mpirun -np 2 longctx train … --ring 2`), against the single-process trainer on the same data.
@Suite(.serialized) struct RingTrainTests {
    static let stagesYAML = """
        seed: 3
        grad_clip: 1.0
        save_every: 2
        doc_mask: true
        stages:
          - name: ring
            seq_len: 96
            steps: 5
            lr: 1e-3
            schedule: cosine
            warmup_steps: 1
            tokens_per_step: 192
            layout: zigzag

        """

    struct Fixture { let root: String, model: String, data: String, stages: String }

    /// A tiny f32 Llama (so the written weights are the trained f32 values) and documents of varied lengths.
    static let fixture: Fixture = {
        let root = TestSupport.scratchDirectory("ring-train")
        let model = root + "/model"
        let r = try! TestSupport.longctx(["init-model", "--layers", "2", "--hidden", "64", "--intermediate", "96",
                                          "--heads", "4", "--kv-heads", "2", "--vocab", "300", "--max-position", "256",
                                          "--dtype", "f32", "--seed", "4", "--out", model])
        precondition(r.status == 0, r.stderr)
        var lines: [String] = []
        for d in 0..<60 {
            let words = (0..<(10 + (d * 37) % 90)).map { "w\(($0 * 7 + d) % 23)" }.joined(separator: " ")
            lines.append("{\"text\": \"\(words)\"}")
        }
        try! (lines.joined(separator: "\n") + "\n").write(toFile: root + "/train.jsonl", atomically: true, encoding: .utf8)
        try! stagesYAML.write(toFile: root + "/stages.yaml", atomically: true, encoding: .utf8)
        return Fixture(root: root, model: model, data: root + "/train.jsonl", stages: root + "/stages.yaml")
    }()

    static func arguments(out: String, ring: Int? = nil, stages: String? = nil) -> [String] {
        let f = fixture
        return ["train", "--model", f.model, "--data", f.data, "--stages", stages ?? f.stages, "--out", out,
                "--workers", "1"] + (ring.map { ["--ring", "\($0)"] } ?? [])
    }

    /// The single-process run, once.
    static let reference: String = {
        let out = fixture.root + "/single"
        let r = try! TestSupport.longctx(arguments(out: out))
        precondition(r.status == 0, r.stderr)
        return out + "/final"
    }()

    /// Worst per-tensor error `max|a − b| / max|b|` between two model directories' weights.
    static func weightError(_ a: String, _ b: String) throws -> (name: String, error: Double) {
        let ca = try ModelDirectory(path: a).weights(), cb = try ModelDirectory(path: b).weights()
        var worst = (name: "", error: 0.0)
        #expect(ca.infos.map(\.name).sorted() == cb.infos.map(\.name).sorted())
        for info in cb.infos {
            let x = try ca.tensor(info.name).floats(), y = try cb.tensor(info.name).floats()
            var diff = 0.0, scale = 0.0
            for (p, q) in zip(x, y) { diff = max(diff, abs(Double(p) - Double(q))); scale = max(scale, abs(Double(q))) }
            if diff / scale > worst.error { worst = (info.name, diff / scale) }
        }
        return worst
    }

    static func records(_ out: String) throws -> [[String: Any]] {
        try String(contentsOfFile: out + "/train.jsonl", encoding: .utf8).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }

    /// 5 steps (2 sequences of 96 tokens each, documents crossing the shard boundaries) with `--ring 2` in one
    /// process end within 1e-5 of the single-process weights; the log has the communication/compute split.
    @Test func inProcessRingMatchesSingleProcess() throws {
        let out = Self.fixture.root + "/threads"
        let r = try TestSupport.longctx(Self.arguments(out: out, ring: 2))
        #expect(r.status == 0, "\(r.stderr)")
        let e = try Self.weightError(out + "/final", Self.reference)
        #expect(e.error < 1e-5, "\(e.name): \(e.error)")
        let log = try Self.records(out)
        #expect(log.count == 5)
        #expect(log.allSatisfy { $0["communication_seconds"] is Double && $0["compute_seconds"] is Double })
        let single = try Self.records(Self.reference + "/..")
        for (a, b) in zip(log, single) {
            #expect(abs((a["loss"] as! Double) - (b["loss"] as! Double)) < 1e-5 * (b["loss"] as! Double))
        }
    }

    /// The same under `mpirun -np 2 longctx train … --ring 2`: rank 0 writes, the weights equal to 1e-5.
    @Test(.enabled(if: MPI.canRun, "mpirun (openmpi-bin) is not installed"))
    func mpiRingMatchesSingleProcess() throws {
        let out = Self.fixture.root + "/mpi"
        let r = try MPI.run(ranks: 2, TestSupport.longctxPath, Self.arguments(out: out, ring: 2))
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        let e = try Self.weightError(out + "/final", Self.reference)
        #expect(e.error < 1e-5, "\(e.name): \(e.error)")
        #expect(try Self.records(out).count == 5)
    }

    /// Under mpirun a `--ring` that is not the number of ranks is one error line and a non-zero exit.
    @Test(.enabled(if: MPI.canRun, "mpirun (openmpi-bin) is not installed"))
    func mpiRingMustMatchRanks() throws {
        let r = try MPI.run(ranks: 2, TestSupport.longctxPath, Self.arguments(out: Self.fixture.root + "/mismatch", ring: 3))
        #expect(r.status != 0)
        #expect(r.stderr.contains("the job has 2 MPI ranks (mpirun -np 2); give --ring 2, got 3"))
        #expect(!FileManager.default.fileExists(atPath: Self.fixture.root + "/mismatch"))
    }

    /// A stage's `ring` that differs from the run's is refused before anything is written.
    @Test func stageRingMustMatchTheRun() throws {
        let stages = Self.fixture.root + "/ring4.yaml"
        try Self.stagesYAML.replacingOccurrences(of: "layout: zigzag", with: "layout: zigzag\n    ring: 4")
            .write(toFile: stages, atomically: true, encoding: .utf8)
        let r = try TestSupport.longctx(Self.arguments(out: Self.fixture.root + "/ring4", ring: 2, stages: stages))
        #expect(r.status != 0)
        #expect(r.stderr.contains("stage 'ring': ring 4: the run has 2 workers"), "\(r.stderr)")
        let single = try TestSupport.longctx(Self.arguments(out: Self.fixture.root + "/ring4b", stages: stages))
        #expect(single.stderr.contains("stage 'ring': ring 4: run with --ring 4 or under mpirun -np 4"), "\(single.stderr)")
    }
}
