import Foundation

/// How a sequence's tokens are dealt to the workers of a ring (the stages file's `layout`).
public enum SequenceLayoutKind: String, Sendable, CaseIterable, Codable {
    /// `P` chunks in order: worker `r` holds chunk `r`. Causal work grows with `r` (worker 0 does the least).
    case contiguous
    /// `2P` chunks: worker `r` holds chunks `r` and `2P−1−r` (ring-flash-attention's zigzag, PyTorch's head–tail,
    /// Megatron's DualChunkSwap), which gives every worker the same causal work.
    case zigzag
}

/// Workers that share every training step (the `Distributed` target implements it over threads or MPI): each
/// sequence is sharded over a ring of `ring` workers (sequence parallelism), and with more workers than a ring the
/// `size / ring` rings take different sequences of the step (data parallelism); gradients are summed over all the
/// workers. All workers run the same ``Trainer`` on the same data; only rank 0 writes the log, states, model
/// directories and report, and every worker resumes from them.
public protocol TrainingGroup: AnyObject {
    /// This worker's index (0 writes the outputs).
    var rank: Int { get }
    /// All the workers (ring size × data-parallel rings).
    var size: Int { get }
    /// Workers each sequence is sharded over when a stage gives no `ring`; divides `size`.
    var ring: Int { get }
    /// Adds `lossScale · ∂(Σ CE over this worker's tokens of `sequence`)/∂θ` to the model's gradients, the
    /// sequence (number `index` of the step) being sharded with `layout` over a ring of `ring` workers; with
    /// `size / ring` rings, ring `k` (workers `k·ring ..< (k+1)·ring`) takes the sequences whose `index` is `k`
    /// modulo the number of rings and the others return (0, 0). Returns this worker's summed loss and token count.
    func accumulateGradients(model: TrainableModel, sequence: TrainingSequence, index: Int, lossScale: Float,
                             layout: SequenceLayoutKind, ring: Int) throws -> (loss: Double, tokens: Int)
    /// Sums the model's gradients and `loss` over all the workers (bit-identical on every worker); returns the summed
    /// loss.
    func finishStep(model: TrainableModel, loss: Double) throws -> Double
    /// Seconds this worker spent communicating and computing attention since the last call.
    func takeTimes() -> (communication: Double, compute: Double)
    func barrier() throws
    /// Rank 0's `value` on every worker (a stage check's verdict, which only rank 0 computes).
    func shareFromRankZero(_ value: Bool) throws -> Bool
}
