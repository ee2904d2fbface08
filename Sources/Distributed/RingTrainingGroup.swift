import Foundation
import Training

/// The ``TrainingGroup`` of sequence-parallel training over a ``Communicator`` (threads with `--ring N`, or MPI ranks
/// under `mpirun`): every sequence is sharded over all the workers, attention goes around the ring, gradients are
/// summed with one all-reduce per step.
public final class RingTrainingGroup: TrainingGroup {
    public let communicator: Communicator
    /// `nil`: all-gather K/V when the sequence has document starts (arbitrary document masks, Llama 3's choice),
    /// pass-KV otherwise.
    public let strategy: RingStrategy?
    private var communication = 0.0, compute = 0.0

    public init(communicator: Communicator, strategy: RingStrategy? = nil) {
        self.communicator = communicator
        self.strategy = strategy
    }

    public var rank: Int { communicator.rank }
    public var size: Int { communicator.size }

    public func accumulateGradients(model: TrainableModel, sequence: TrainingSequence, lossScale: Float,
                                    layout: SequenceLayoutKind) throws -> (loss: Double, tokens: Int) {
        let shard = try SequenceShard(kind: layout, length: sequence.count, workers: size, rank: rank)
        let ring = try RingAttention(communicator: communicator, shard: shard,
                                     strategy: strategy ?? (sequence.documentStart == nil ? .passKV : .allGather))
        let result = try ShardedTraining.accumulateGradients(model, sequence, lossScale: lossScale, ring: ring)
        communication += ring.statistics.communicationSeconds
        compute += ring.statistics.computeSeconds
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
}
