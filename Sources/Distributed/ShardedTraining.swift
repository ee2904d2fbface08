import Foundation
import Training

/// Training steps with each sequence sharded over a ring of workers: every worker runs the embedding, projections,
/// norms, MLP and loss on its own tokens and attention through ``RingAttention``; weight gradients are then summed
/// over the group. All workers see the same global sequence (as EasyContext's sequence-parallel data loader does)
/// and take their rows of it.
public enum ShardedTraining {
    /// `shard`'s rows of a sequence: tokens, RoPE positions (global, so RoPE sees true positions), targets (shifted
    /// before sharding) and document starts (global token indices).
    public static func localSequence(_ s: TrainingSequence, shard: SequenceShard) throws -> TrainingSequence {
        guard s.count == shard.length else {
            throw DistributedError("a sequence of \(s.count) tokens was given to a ring sharding \(shard.length)")
        }
        return TrainingSequence(tokens: shard.local(s.tokens), positions: shard.local(s.positions),
                                documentStart: s.documentStart.map { shard.local($0) }, targets: shard.local(s.targets))
    }

    /// Forward and backward of this worker's tokens of `sequence` (the whole sequence, same on every worker), adding
    /// `lossScale · ∂(Σ CE over own tokens)/∂θ` to the model's gradients. Returns the summed loss and token count of
    /// this worker's tokens (sum them over the group with ``allReduce(loss:tokens:over:)``).
    @discardableResult
    public static func accumulateGradients(_ model: TrainableModel, _ sequence: TrainingSequence, lossScale: Float,
                                           ring: RingAttention) throws -> (loss: Double, tokens: Int) {
        let local = try localSequence(sequence, shard: ring.shard)
        return try model.accumulateGradients(local, lossScale: lossScale, attention: ring,
                                             maxPositionId: sequence.positions.max() ?? 0)
    }

    /// Sums the model's gradients over every worker of `communicator` (bit-identical on every worker).
    public static func allReduceGradients(_ model: TrainableModel, over communicator: Communicator) throws {
        try communicator.allReduceSum(model.parameters.gradients, count: model.parameters.count)
    }

    /// The group's total loss and token count.
    public static func allReduce(loss: Double, tokens: Int, over communicator: Communicator) throws -> (loss: Double, tokens: Int) {
        let s = try communicator.allReduceSum([loss, Double(tokens)])
        return (s[0], Int(s[1]))
    }
}
