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

    /// A run in `out` (its process result `r`) ended with the single-process weights to 1e-5 and the same losses.
    static func expectMatchesSingleProcess(_ out: String, _ r: TestSupport.ProcessResult) throws {
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        let e = try weightError(out + "/final", reference)
        #expect(e.error < 1e-5, "\(e.name): \(e.error)")
        let log = try records(out), single = try records(reference + "/..")
        #expect(log.count == single.count)
        for (a, b) in zip(log, single) {
            #expect(abs((a["loss"] as! Double) - (b["loss"] as! Double)) < 1e-5 * (b["loss"] as! Double))
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
        try Self.expectMatchesSingleProcess(out, try MPI.run(ranks: 2, TestSupport.longctxPath, Self.arguments(out: out, ring: 2)))
    }

    /// Under mpirun a `--ring` that does not divide the number of ranks is one error line and a non-zero exit.
    @Test(.enabled(if: MPI.canRun, "mpirun (openmpi-bin) is not installed"))
    func mpiRingMustDivideRanks() throws {
        let r = try MPI.run(ranks: 2, TestSupport.longctxPath, Self.arguments(out: Self.fixture.root + "/mismatch", ring: 3))
        #expect(r.status != 0)
        #expect(r.stderr.contains("the job has 2 MPI ranks (mpirun -np 2), which --ring 3 does not divide"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: Self.fixture.root + "/mismatch"))
    }

    /// Data parallelism over rings: 4 workers in one process, rings of 2 (`--ring 2 --data-parallel 2`), each ring
    /// taking one of the step's 2 sequences, gradients summed over all 4: 5 steps end within 1e-5 of the
    /// single-process weights (its gradient accumulation over the same 2 sequences), same losses.
    @Test func inProcessDataParallelMatchesSingleProcess() throws {
        let out = Self.fixture.root + "/dp-threads"
        try Self.expectMatchesSingleProcess(out, try TestSupport.longctx(Self.arguments(out: out, ring: 2) + ["--data-parallel", "2"]))
    }

    /// The same with MPI ranks: `mpirun -np 4 longctx train … --ring 2` (two rings of two ranks).
    @Test(.enabled(if: MPI.canRun, "mpirun (openmpi-bin) is not installed"))
    func mpiDataParallelMatchesSingleProcess() throws {
        let out = Self.fixture.root + "/dp-mpi"
        try Self.expectMatchesSingleProcess(out, try MPI.run(ranks: 4, TestSupport.longctxPath, Self.arguments(out: out, ring: 2)))
    }

    /// A stage check inside a ring: rank 0 runs it on the stage's checkpoint while the other worker waits; a failed
    /// check stops every worker with rank 0's error (checkpoint written), and `--resume` then finishes.
    @Test func stageCheckRunsOnRankZero() throws {
        let stages = Self.fixture.root + "/check.yaml"
        try Self.stagesYAML.replacingOccurrences(of: "steps: 5", with: "steps: 2\n    check: {task: passkey, lengths: [256], samples: 2, min_accuracy: 1.0}")
            .write(toFile: stages, atomically: true, encoding: .utf8)
        let out = Self.fixture.root + "/check"
        let first = try TestSupport.longctx(Self.arguments(out: out, ring: 2, stages: stages))
        #expect(first.status == 1)
        #expect(first.stderr.contains("stage 'ring' failed its check") && first.stderr.contains("256: 0 %"), "\(first.stderr)")
        #expect(FileManager.default.fileExists(atPath: out + "/stage-1/model.safetensors"))
        #expect(!FileManager.default.fileExists(atPath: out + "/final"))
        let resumed = try TestSupport.longctx(Self.arguments(out: out, ring: 2, stages: stages) + ["--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(FileManager.default.fileExists(atPath: out + "/final/model.safetensors"))
    }

    /// The PID of rank `rank` among `mpirun`'s children (Open MPI puts `OMPI_COMM_WORLD_RANK` in their environment).
    static func rankProcess(of mpirun: Int32, rank: Int) -> Int32? {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { Int32($0) } ?? []
        for pid in pids {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 2, Int32(fields[1]) == mpirun,
                  let env = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { continue }
            if env.split(separator: 0).contains(where: { String(decoding: $0, as: UTF8.self) == "OMPI_COMM_WORLD_RANK=\(rank)" }) {
                return pid
            }
        }
        return nil
    }

    /// SIGKILL of rank 1 in the middle of a stage ends the job within seconds (no hang); `--resume` under mpirun then
    /// finishes with the same final weights as an uninterrupted mpirun run, and the same loss curve.
    @Test(.enabled(if: MPI.canRun, "mpirun (openmpi-bin) is not installed"))
    func killedRankResumesToIdenticalWeights() throws {
        guard let mpirun = MPI.mpirun else { throw DistributedError("mpirun is not on PATH") }
        let stages = Self.fixture.root + "/long.yaml"
        try Self.stagesYAML.replacingOccurrences(of: "steps: 5", with: "steps: 14")
            .replacingOccurrences(of: "save_every: 2", with: "save_every: 4")
            .write(toFile: stages, atomically: true, encoding: .utf8)
        let full = Self.fixture.root + "/mpi-full", out = Self.fixture.root + "/mpi-killed"
        let uninterrupted = try MPI.run(ranks: 2, TestSupport.longctxPath, Self.arguments(out: full, ring: 2, stages: stages))
        #expect(uninterrupted.status == 0, "\(uninterrupted.stderr)")

        let process = Process()
        process.executableURL = URL(fileURLWithPath: mpirun)
        process.arguments = ["--oversubscribe", "-np", "2", TestSupport.longctxPath] + Self.arguments(out: out, ring: 2, stages: stages)
        process.environment = ProcessInfo.processInfo.environment.merging(
            ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"]) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        var killedAt: Date?
        let deadline = Date().addingTimeInterval(300)
        while process.isRunning && Date() < deadline {
            if let records = try? TrainingLog.read(path: out + "/train.jsonl"), records.contains(where: { $0.stageStep >= 6 }),
               let victim = Self.rankProcess(of: process.processIdentifier, rank: 1) {
                kill(victim, SIGKILL)
                killedAt = Date()
                break
            }
            usleep(5_000)
        }
        let killed = try #require(killedAt, "the run finished before rank 1 could be killed mid-stage")
        while process.isRunning && Date().timeIntervalSince(killed) < 60 { usleep(50_000) }
        let took = Date().timeIntervalSince(killed)
        if process.isRunning { process.terminate() }
        #expect(took < 20, "mpirun took \(took) s to end after a rank was killed")
        #expect(process.terminationStatus != 0)
        #expect(!FileManager.default.fileExists(atPath: out + "/final"))

        let resumed = try MPI.run(ranks: 2, TestSupport.longctxPath, Self.arguments(out: out, ring: 2, stages: stages) + ["--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let a = try Data(contentsOf: URL(fileURLWithPath: full + "/final/model.safetensors"))
        let b = try Data(contentsOf: URL(fileURLWithPath: out + "/final/model.safetensors"))
        #expect(a == b, "final weights differ after SIGKILL of a rank + --resume")
        #expect(try TrainingLog.read(path: full + "/train.jsonl").map(\.loss) == TrainingLog.read(path: out + "/train.jsonl").map(\.loss))
    }

    /// A stage's `ring` that does not divide the run's workers is refused before anything is written.
    @Test func stageRingMustDivideTheRun() throws {
        let stages = Self.fixture.root + "/ring4.yaml"
        try Self.stagesYAML.replacingOccurrences(of: "layout: zigzag", with: "layout: zigzag\n    ring: 4")
            .write(toFile: stages, atomically: true, encoding: .utf8)
        let r = try TestSupport.longctx(Self.arguments(out: Self.fixture.root + "/ring4", ring: 2, stages: stages))
        #expect(r.status != 0)
        #expect(r.stderr.contains("stage 'ring': ring 4: the run has 2 workers (--ring × --data-parallel, or mpirun -np), which ring 4 does not divide"), "\(r.stderr)")
        let single = try TestSupport.longctx(Self.arguments(out: Self.fixture.root + "/ring4b", stages: stages))
        #expect(single.stderr.contains("stage 'ring': ring 4: run with --ring 4 or under mpirun -np 4"), "\(single.stderr)")
    }
}
