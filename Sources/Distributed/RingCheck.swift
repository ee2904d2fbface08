import Basics
import Foundation
import Training
import Transformer

/// Attention results of some rows of a sequence: outputs and their gradients in row-major `rows × (heads·headDim)`,
/// log-sum-exp `rows × heads`, key/value gradients head-major `[kvHeads][rows][headDim]`.
public struct AttentionResults: Sendable {
    public var output: [Float], logSumExp: [Float], queryGradient: [Float], keyGradient: [Float], valueGradient: [Float]
}

/// A seeded random attention problem over a whole sequence, for checking ring attention against single-worker
/// attention on the gathered sequence (the in-process tests and `longctx-mpi-check` under `mpirun` use it alike).
/// Queries are stored with the row stride of a fused `[q | k | v]` projection, as the training pass has them.
public struct RingCheckProblem: Sendable {
    public let shape: AttentionShape
    public let length: Int
    public let causal: Bool
    /// `length × queryStride`, the queries in the first `heads·headDim` columns.
    public let query: [Float]
    public let queryStride: Int
    /// Head-major `[kvHeads][length][headDim]`.
    public let keys: [Float], values: [Float]
    /// `length × (heads·headDim)`.
    public let outputGradient: [Float]
    public let documentStart: [Int32]?

    /// `documents`: lengths of the packed documents (summing to `length`) or `nil` for one document.
    public init(length: Int, heads: Int, kvHeads: Int, headDim: Int, slidingWindow: Int? = nil,
                documents: [Int]? = nil, causal: Bool = true, seed: UInt64) {
        shape = AttentionShape(heads: heads, kvHeads: kvHeads, headDim: headDim, slidingWindow: slidingWindow)
        self.length = length
        self.causal = causal
        let qw = heads * headDim, kvw = kvHeads * headDim
        queryStride = qw + 2 * kvw
        var rng = SeededRandom(seed: seed)
        func draw(_ n: Int) -> [Float] { (0..<n).map { _ in rng.normal() } }
        query = draw(length * queryStride)
        keys = draw(kvw * length)
        values = draw(kvw * length)
        outputGradient = draw(length * qw)
        if let documents {
            precondition(documents.reduce(0, +) == length, "document lengths must sum to the sequence length")
            var starts: [Int32] = [], first = 0
            for d in documents { starts += Array(repeating: Int32(first), count: d); first += d }
            documentStart = starts
        } else {
            documentStart = nil
        }
    }

    var width: Int { shape.heads * shape.headDim }

    /// Single-worker blockwise attention over the whole sequence, forward and backward.
    public func reference(workers: Int = 1) -> AttentionResults {
        var r = AttentionResults(output: [Float](repeating: 0, count: length * width),
                                 logSumExp: [Float](repeating: 0, count: length * shape.heads),
                                 queryGradient: [Float](repeating: 0, count: length * width),
                                 keyGradient: [Float](repeating: 0, count: keys.count),
                                 valueGradient: [Float](repeating: 0, count: values.count))
        let w = width
        query.withUnsafeBufferPointer { q in keys.withUnsafeBufferPointer { k in values.withUnsafeBufferPointer { v in
        outputGradient.withUnsafeBufferPointer { dO in withStarts(documentStart) { starts in
            let kv = KeyValueView(keys: k.baseAddress!, values: v.baseAddress!, stride: length, count: length)
            BlockwiseAttention.attend(shape: shape, query: q.baseAddress!, queryStride: queryStride, count: length,
                                      firstPosition: 0, kv: kv, causal: causal, documentStart: starts,
                                      output: &r.output, outputStride: w, logSumExp: &r.logSumExp, workers: workers)
            AttentionBackward.accumulate(shape: shape, query: q.baseAddress!, queryStride: queryStride, count: length,
                                         firstPosition: 0, kv: kv, causal: causal, documentStart: starts,
                                         output: r.output, outputStride: w, outputGradient: dO.baseAddress!,
                                         outputGradientStride: w, logSumExp: r.logSumExp,
                                         queryGradient: &r.queryGradient, queryGradientStride: w,
                                         keyGradient: &r.keyGradient, valueGradient: &r.valueGradient, workers: workers)
        }}}}}
        return r
    }

    /// `shard`'s rows of results over the whole sequence.
    public func rows(of r: AttentionResults, shard: SequenceShard) -> AttentionResults {
        let hd = shape.headDim
        return AttentionResults(output: rowsOf(r.output, width: width, shard),
                                logSumExp: rowsOf(r.logSumExp, width: shape.heads, shard),
                                queryGradient: rowsOf(r.queryGradient, width: width, shard),
                                keyGradient: headRows(r.keyGradient, hd, shard),
                                valueGradient: headRows(r.valueGradient, hd, shard))
    }

    func rowsOf(_ a: [Float], width: Int, _ shard: SequenceShard) -> [Float] {
        shard.chunks.flatMap { a[($0.lowerBound * width)..<($0.upperBound * width)] }
    }

    func headRows(_ a: [Float], _ hd: Int, _ shard: SequenceShard) -> [Float] {
        (0..<shape.kvHeads).flatMap { h in
            shard.chunks.flatMap { a[((h * length + $0.lowerBound) * hd)..<((h * length + $0.upperBound) * hd)] }
        }
    }

    /// One worker's forward and backward through `ring`, given its rows of the problem.
    public func run(_ ring: RingAttention, workers: Int = 1) throws -> AttentionResults {
        let shard = ring.shard, n = shard.count, w = width
        let q = rowsOf(query, width: queryStride, shard)
        let k = headRows(keys, shape.headDim, shard), v = headRows(values, shape.headDim, shard)
        let dO = rowsOf(outputGradient, width: w, shard), starts = documentStart.map { shard.local($0) }
        var r = AttentionResults(output: [Float](repeating: 0, count: n * w),
                                 logSumExp: [Float](repeating: 0, count: n * shape.heads),
                                 queryGradient: [Float](repeating: 0, count: n * w),
                                 keyGradient: [Float](repeating: 0, count: k.count),
                                 valueGradient: [Float](repeating: 0, count: v.count))
        try withStarts(starts) { s in
            try ring.forward(shape: shape, query: q, queryStride: queryStride, count: n, keys: k, values: v,
                             documentStart: s, causal: causal, output: &r.output, logSumExp: &r.logSumExp,
                             workers: workers)
            try ring.backward(shape: shape, query: q, queryStride: queryStride, count: n, keys: k, values: v,
                              documentStart: s, causal: causal, output: r.output, outputGradient: dO,
                              logSumExp: r.logSumExp, queryGradient: &r.queryGradient, queryGradientStride: w,
                              keyGradient: &r.keyGradient, valueGradient: &r.valueGradient, workers: workers)
        }
        return r
    }

    /// Worst element-wise error of each result relative to the largest reference magnitude of that result:
    /// `max|a − b| / max|b|` (out, lse, dq, dk, dv). Equal infinities count as no error.
    public static func errors(_ a: AttentionResults, reference b: AttentionResults) -> [(name: String, error: Double)] {
        func rel(_ x: [Float], _ y: [Float]) -> Double {
            guard x.count == y.count else { return .infinity }
            var diff = 0.0, scale = 0.0
            for (p, q) in zip(x, y) {
                if p == q { scale = max(scale, q.isFinite ? abs(Double(q)) : 0); continue }
                diff = max(diff, abs(Double(p) - Double(q)))
                scale = max(scale, abs(Double(q)))
            }
            return diff == 0 ? 0 : diff / max(scale, .leastNormalMagnitude)
        }
        return [("out", rel(a.output, b.output)), ("lse", rel(a.logSumExp, b.logSumExp)),
                ("dq", rel(a.queryGradient, b.queryGradient)), ("dk", rel(a.keyGradient, b.keyGradient)),
                ("dv", rel(a.valueGradient, b.valueGradient))]
    }
}

/// The masks the exactness checks exercise.
public enum RingCheckMask: String, CaseIterable, Sendable {
    case causal, documents, window, documentsAndWindow, full

    /// A problem of `length` tokens (4 query heads over 2 key/value heads, head size 16). Documents are cut at
    /// lengths (⌊n/5⌋, ⌊n/3⌋, the rest) that do not line up with shard boundaries; the window is ⌊n/4⌋ + 3.
    public func problem(length: Int, seed: UInt64 = 7) -> RingCheckProblem {
        let docs: [Int]? = [.documents, .documentsAndWindow].contains(self)
            ? [length / 5, length / 3, length - length / 5 - length / 3] : nil
        let window: Int? = [.window, .documentsAndWindow].contains(self) ? length / 4 + 3 : nil
        return RingCheckProblem(length: length, heads: 4, kvHeads: 2, headDim: 16, slidingWindow: window,
                                documents: docs, causal: self != .full, seed: seed)
    }
}

func withStarts<R>(_ starts: [Int32]?, _ body: (UnsafePointer<Int32>?) throws -> R) rethrows -> R {
    guard let starts else { return try body(nil) }
    return try starts.withUnsafeBufferPointer { try body($0.baseAddress) }
}

/// The whole-model check: one sequence's gradients of a tiny model with the sequence sharded over the ring (summed
/// over the group) against the single-process gradients of the same model on the whole sequence.
public enum RingModelCheck {
    /// A seeded sequence of `length` tokens in three packed documents (document starts crossing shard boundaries,
    /// positions restarting at each document as with `reset positions`, no target at each document's last token).
    public static func sequence(length: Int, vocabulary: Int, seed: UInt64 = 11) -> TrainingSequence {
        var rng = SeededRandom(seed: seed)
        let tokens = (0..<length).map { _ in rng.int(0...(vocabulary - 1)) }
        let cuts = [0, length / 3 + 1, length - length / 4]
        var starts: [Int32] = [], positions: [Int] = [], targets: [Int] = []
        for i in 0..<length {
            let doc = cuts.lastIndex { $0 <= i }!
            let end = doc + 1 < cuts.count ? cuts[doc + 1] : length
            starts.append(Int32(cuts[doc]))
            positions.append(i - cuts[doc])
            targets.append(i + 1 < end ? tokens[i + 1] : -1)
        }
        return TrainingSequence(tokens: tokens, positions: positions, documentStart: starts, targets: targets)
    }

    /// Worst relative error over the model's tensors, `max|a − b| / max|b|` per tensor, with that tensor's name.
    public static func worstError(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                                  slices: [ParameterSlice]) -> (name: String, error: Double) {
        var worst = (name: "", error: 0.0)
        for s in slices {
            var diff = 0.0, scale = 0.0
            for i in s.offset..<(s.offset + s.count) {
                diff = max(diff, abs(Double(a[i]) - Double(b[i])))
                scale = max(scale, abs(Double(b[i])))
            }
            let e = diff == 0 ? 0 : diff / max(scale, .leastNormalMagnitude)
            if e > worst.error { worst = (s.name, e) }
        }
        return worst
    }

    /// Runs the check on one worker: `model` is this worker's copy (its gradients are overwritten). Returns the
    /// worst gradient error and the relative error of the group's summed loss.
    public static func run(model: TrainableModel, sequence: TrainingSequence, ring: RingAttention) throws
        -> (gradient: (name: String, error: Double), loss: Double) {
        let p = model.parameters, scale = 1 / Float(sequence.lossTokens)
        p.zeroGradients()
        let reference = try model.accumulateGradients(sequence, lossScale: scale)
        let expected = Array(UnsafeBufferPointer(start: p.gradients, count: p.count))
        p.zeroGradients()
        let mine = try ShardedTraining.accumulateGradients(model, sequence, lossScale: scale, ring: ring)
        try ShardedTraining.allReduceGradients(model, over: ring.communicator)
        let total = try ShardedTraining.allReduce(loss: mine.loss, tokens: mine.tokens, over: ring.communicator)
        let worst = expected.withUnsafeBufferPointer { worstError(p.gradients, $0.baseAddress!, slices: p.parameterSlices) }
        let lossError = total.tokens == reference.tokens ? abs(total.loss - reference.loss) / abs(reference.loss) : .infinity
        return (worst, lossError)
    }
}
