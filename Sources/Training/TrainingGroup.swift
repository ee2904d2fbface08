import Foundation

/// How a sequence's tokens are dealt to the workers of a ring (the stages file's `layout`).
public enum SequenceLayoutKind: String, Sendable, CaseIterable, Codable {
    /// `P` chunks in order: worker `r` holds chunk `r`. Causal work grows with `r` (worker 0 does the least).
    case contiguous
    /// `2P` chunks: worker `r` holds chunks `r` and `2P−1−r` (ring-flash-attention's zigzag, PyTorch's head–tail,
    /// Megatron's DualChunkSwap), which gives every worker the same causal work.
    case zigzag
}

/// Workers that share every training step by sharding each sequence (sequence parallelism; the `Distributed`
/// target implements it over threads or MPI). All workers run the same ``Trainer`` on the same data; only rank 0
/// writes the log, states, model directories and report, and every worker resumes from them.
public protocol TrainingGroup: AnyObject {
    /// This worker's index (0 writes the outputs).
    var rank: Int { get }
    /// Workers in the group (the ring size).
    var size: Int { get }
    /// Adds `lossScale · ∂(Σ CE over this worker's tokens of `sequence`)/∂θ` to the model's gradients, the
    /// sequence being sharded with `layout`; returns this worker's summed loss and token count.
    func accumulateGradients(model: TrainableModel, sequence: TrainingSequence, lossScale: Float,
                             layout: SequenceLayoutKind) throws -> (loss: Double, tokens: Int)
    /// Sums the model's gradients and `loss` over the group (bit-identical on every worker); returns the summed loss.
    func finishStep(model: TrainableModel, loss: Double) throws -> Double
    /// Seconds this worker spent communicating and computing attention since the last call.
    func takeTimes() -> (communication: Double, compute: Double)
    func barrier() throws
}
