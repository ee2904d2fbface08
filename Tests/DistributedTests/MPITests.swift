import Distributed
import Foundation
import TestSupport
import Testing
import Training

/// Running `longctx-mpi-check` under `mpirun`.
enum MPI {
    /// `mpirun` on PATH, if any.
    static let mpirun: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/mpirun" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    /// True when `LONGCTX_MPI=1` (scripts/test): the MPI tests must run, and fail without mpirun.
    static var required: Bool { ProcessInfo.processInfo.environment["LONGCTX_MPI"] == "1" }

    /// The `.enabled(if:)` condition: mpirun present, or required (then the test fails for its absence). Without
    /// mpirun a plain `swift test` reports the MPI tests as skipped.
    static var canRun: Bool { mpirun != nil || required }

    /// Runs `longctx-mpi-check ARGS` on `ranks` processes.
    static func check(ranks: Int, _ arguments: [String]) throws -> TestSupport.ProcessResult {
        try run(ranks: ranks, TestSupport.builtExecutable("longctx-mpi-check"), arguments)
    }

    /// Runs `executable ARGS` on `ranks` processes (oversubscribing the cores), as root if need be.
    static func run(ranks: Int, _ executable: String, _ arguments: [String]) throws -> TestSupport.ProcessResult {
        guard let mpirun else { throw DistributedError("LONGCTX_MPI=1 but mpirun is not on PATH; run scripts/setup (it installs openmpi-bin)") }
        let env = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                   // No MCA warnings about unused network components in containers.
                   "OMPI_MCA_btl_base_warn_component_unused": "0"]
        return try TestSupport.run(mpirun, ["--oversubscribe", "-np", "\(ranks)", executable] + arguments, environment: env)
    }
}

@Suite(.serialized, .enabled(if: MPI.canRun, "mpirun (openmpi-bin) is not installed"))
struct MPIRingAttentionTests {
    /// Every rank's out/lse/dQ/dK/dV within 1e-5 of single-process attention on the gathered sequence, for
    /// `mpirun -np 2` and `-np 4`, both layouts and strategies; causal, document masks crossing shards, sliding
    /// window; 96 tokens (even) and 61 (uneven chunks).
    @Test(arguments: [2, 4], [SequenceLayoutKind.contiguous, .zigzag])
    func exactUnderMPI(ranks: Int, layout: SequenceLayoutKind) throws {
        for strategy in RingStrategy.allCases {
            for (length, mask) in [(96, RingCheckMask.causal), (96, .documents), (61, .window), (61, .documentsAndWindow)] {
                let r = try MPI.check(ranks: ranks, ["attention", "\(length)", layout.rawValue, strategy.rawValue, mask.rawValue])
                #expect(r.status == 0, "\(ranks) ranks \(layout) \(strategy) \(mask): \(r.stdout) \(r.stderr)")
                let lines = r.stdout.split(separator: "\n").filter { $0.hasPrefix("rank ") }
                #expect(lines.count == ranks, "\(r.stdout)")
            }
        }
    }

    /// A bad argument is one clear error line and a non-zero exit.
    @Test func badArgumentsFail() throws {
        let r = try MPI.check(ranks: 2, ["attention", "3", "zigzag", "pass-kv", "causal"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("a sequence of 3 tokens cannot be split into the 4 zigzag chunks"))
    }
}
