import Distributed
import DistributedMPI
import Foundation
import ModelIO
import Training

// Exactness checks of sequence parallelism over MPI, run as `mpirun -np P longctx-mpi-check …` by DistributedTests.
// Each rank compares its own rows with the single-process reference, prints one line, and the job exits non-zero
// when any error exceeds 1e-5 (relative to the largest reference magnitude).
//
//   longctx-mpi-check attention LENGTH LAYOUT STRATEGY MASK   (layouts: contiguous|zigzag; strategies: pass-kv|all-gather)
//     (each rank prints its errors, message count and network namespace)
//   longctx-mpi-check gradients MODEL_DIR LENGTH LAYOUT STRATEGY   (a tiny model's gradients of one sequence)

let tolerance = 1e-5

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
    exit(2)
}

/// This process's network namespace (`net:[inode]`), so that a test can see where each rank ran.
func networkNamespace() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net")) ?? "unknown"
}

func attentionCheck(_ args: [String], _ comm: MPICommunicator) throws -> Bool {
    guard args.count == 4, let length = Int(args[0]), let layout = SequenceLayoutKind(rawValue: args[1]),
          let strategy = RingStrategy(rawValue: args[2]), let mask = RingCheckMask(rawValue: args[3]) else {
        fail("usage: longctx-mpi-check attention LENGTH contiguous|zigzag pass-kv|all-gather \(RingCheckMask.allCases.map(\.rawValue).joined(separator: "|"))")
    }
    let problem = mask.problem(length: length)
    let shard = try SequenceShard(kind: layout, length: length, workers: comm.size, rank: comm.rank)
    let ring = try RingAttention(communicator: comm, shard: shard, strategy: strategy)
    let mine = try problem.run(ring)
    let errors = RingCheckProblem.errors(mine, reference: problem.rows(of: problem.reference(), shard: shard))
    let text = errors.map { "\($0.name) \(String(format: "%.2e", $0.error))" }.joined(separator: " ")
    print("rank \(comm.rank)/\(comm.size) \(layout.rawValue) \(strategy.rawValue) \(mask.rawValue): \(text) messages \(ring.statistics.messages) netns \(networkNamespace())")
    return errors.allSatisfy { $0.error < tolerance }
}

func gradientsCheck(_ args: [String], _ comm: MPICommunicator) throws -> Bool {
    guard args.count == 4, let length = Int(args[1]), let layout = SequenceLayoutKind(rawValue: args[2]),
          let strategy = RingStrategy(rawValue: args[3]) else {
        fail("usage: longctx-mpi-check gradients MODEL_DIR LENGTH contiguous|zigzag pass-kv|all-gather")
    }
    let model = try TrainableModel(directory: try ModelDirectory(path: args[0]), workers: 1)
    let sequence = RingModelCheck.sequence(length: length, vocabulary: model.configuration.vocabSize)
    let shard = try SequenceShard(kind: layout, length: length, workers: comm.size, rank: comm.rank)
    let ring = try RingAttention(communicator: comm, shard: shard, strategy: strategy)
    let r = try RingModelCheck.run(model: model, sequence: sequence, ring: ring)
    print("rank \(comm.rank)/\(comm.size) \(layout.rawValue) \(strategy.rawValue): gradient \(String(format: "%.2e", r.gradient.error)) (\(r.gradient.name)) loss \(String(format: "%.2e", r.loss))")
    return r.gradient.error < tolerance && r.loss < tolerance
}

let arguments = Array(CommandLine.arguments.dropFirst())
guard let command = arguments.first else { fail("usage: longctx-mpi-check attention|gradients …") }
let comm: MPICommunicator
do { comm = try MPICommunicator() } catch { fail("\(error)") }
var ok = false
do {
    switch command {
    case "attention": ok = try attentionCheck(Array(arguments.dropFirst()), comm)
    case "gradients": ok = try gradientsCheck(Array(arguments.dropFirst()), comm)
    default: fail("unknown check '\(command)'")
    }
} catch {
    FileHandle.standardError.write(Data("Error: rank \(comm.rank): \(error)\n".utf8))
    comm.abort(code: 1)
}
// Every rank's verdict: the job fails when any rank's check failed.
let failures = (try? comm.allReduceSum([ok ? 0.0 : 1.0]))?[0] ?? 1
comm.finalize()
exit(failures == 0 ? 0 : 1)
