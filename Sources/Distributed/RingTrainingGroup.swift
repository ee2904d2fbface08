import Foundation
import Training

/// The ``TrainingGroup`` over a ``Communicator`` (threads with `--ring N [--data-parallel D]`, or MPI ranks under
/// `mpirun`): the workers form `size / ring` rings of consecutive ranks; each sequence of a step goes to one ring
/// (sequence `i` to ring `i mod rings`), is sharded over its workers and its attention goes around that ring; the
/// gradients are summed over all the workers with one all-reduce per step, so the update is the single-process
/// gradient accumulation over the same sequences.
public final class RingTrainingGroup: TrainingGroup {
    public let communicator: Communicator
    public let ring: Int
    /// `nil`: all-gather K/V when the sequence has document starts (arbitrary document masks, Llama 3's choice),
    /// pass-KV otherwise.
    public let strategy: RingStrategy?
    private var communication = 0.0, compute = 0.0

    /// `ring`: workers per sequence (default all of them: no data parallelism); must divide the communicator's size.
    public init(communicator: Communicator, ring: Int? = nil, strategy: RingStrategy? = nil) throws {
        let ring = ring ?? communicator.size
        guard ring >= 1, communicator.size % ring == 0 else {
            throw DistributedError("a ring of \(ring) workers does not divide the \(communicator.size) workers")
        }
        self.communicator = communicator
        self.ring = ring
        self.strategy = strategy
    }

    public var rank: Int { communicator.rank }
    public var size: Int { communicator.size }

    /// The communicator of this worker's ring of `ring` workers.
    func ringCommunicator(_ ring: Int) throws -> Communicator {
        ring == size ? communicator : try RingSubgroup(parent: communicator, first: rank / ring * ring, size: ring)
    }

    public func accumulateGradients(model: TrainableModel, sequence: TrainingSequence, index: Int, lossScale: Float,
                                    layout: SequenceLayoutKind, ring: Int) throws -> (loss: Double, tokens: Int) {
        guard size % ring == 0 else { throw DistributedError("a ring of \(ring) workers does not divide the \(size) workers") }
        guard index % (size / ring) == rank / ring else { return (0, 0) }
        let comm = try ringCommunicator(ring)
        let shard = try SequenceShard(kind: layout, length: sequence.count, workers: ring, rank: comm.rank)
        let attention = try RingAttention(communicator: comm, shard: shard,
                                          strategy: strategy ?? (sequence.documentStart == nil ? .passKV : .allGather))
        let result = try ShardedTraining.accumulateGradients(model, sequence, lossScale: lossScale, ring: attention)
        communication += attention.statistics.communicationSeconds
        compute += attention.statistics.computeSeconds
        return result
    }

    public func finishStep(model: TrainableModel, loss: Double) throws -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { communication += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
        try ShardedTraining.allReduceGradients(model, over: communicator)
        return try communicator.allReduceSum([loss])[0]
    }

    public func takeTimes() -> (communication: Double, compute: Double) {
        defer { communication = 0; compute = 0 }
        return (communication, compute)
    }

    public func barrier() throws { try communicator.barrier() }

    public func shareFromRankZero(_ value: Bool) throws -> Bool {
        var byte: UInt8 = value ? 1 : 0
        try withUnsafeMutableBytes(of: &byte) { try communicator.broadcast($0, root: 0) }
        return byte == 1
    }
}
