import Foundation
import Transformer

/// How a training pass computes each layer's attention over the keys and values of its tokens: in one worker over
/// the whole sequence (``LocalAttention``, the default), or — in the `Distributed` target — over a ring of workers
/// that each hold a slice of the sequence's tokens. Everything else in a layer is per token and does not care.
///
/// Layouts (all `Float`, row-major): `query` `count × (heads·headDim)` with row stride `queryStride`, after RoPE;
/// `keys`/`values` head-major `[kvHeads][count][headDim]`; `output` `count × (heads·headDim)` (contiguous, stride
/// `heads·headDim`); `logSumExp` `count × heads` (natural log); `documentStart` `count` values or `nil` (query `i`
/// sees no key before that token of the sequence). Rows are this worker's tokens.
public protocol AttentionStrategy: AnyObject {
    /// Causal attention of the worker's queries over every visible key of the sequence; writes `output` and the
    /// final `logSumExp`.
    func forward(shape: AttentionShape, query: UnsafePointer<Float>, queryStride: Int, count: Int,
                 keys: UnsafePointer<Float>, values: UnsafePointer<Float>, documentStart: UnsafePointer<Int32>?,
                 output: UnsafeMutablePointer<Float>, logSumExp: UnsafeMutablePointer<Float>, workers: Int) throws

    /// The gradients of ``forward(shape:query:queryStride:count:keys:values:documentStart:output:logSumExp:workers:)``
    /// for the worker's rows: adds to `queryGradient` (`count × (heads·headDim)`, stride `queryGradientStride`) and
    /// to `keyGradient`/`valueGradient` (head-major like the keys) — the full gradients of this worker's keys and
    /// values, summed over every query that sees them, whichever worker holds it.
    func backward(shape: AttentionShape, query: UnsafePointer<Float>, queryStride: Int, count: Int,
                  keys: UnsafePointer<Float>, values: UnsafePointer<Float>, documentStart: UnsafePointer<Int32>?,
                  output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
                  logSumExp: UnsafePointer<Float>, queryGradient: UnsafeMutablePointer<Float>,
                  queryGradientStride: Int, keyGradient: UnsafeMutablePointer<Float>,
                  valueGradient: UnsafeMutablePointer<Float>, workers: Int) throws

    /// The sequence index of each of the worker's rows (`0..<count` for the whole sequence): document starts are
    /// checked against it.
    func sequenceIndices(count: Int) -> [Int]
}

/// The whole sequence in one worker: ``BlockwiseAttention`` forward and ``AttentionBackward``.
public final class LocalAttention: AttentionStrategy {
    public init() {}

    public func forward(shape: AttentionShape, query: UnsafePointer<Float>, queryStride: Int, count: Int,
                        keys: UnsafePointer<Float>, values: UnsafePointer<Float>, documentStart: UnsafePointer<Int32>?,
                        output: UnsafeMutablePointer<Float>, logSumExp: UnsafeMutablePointer<Float>, workers: Int) {
        BlockwiseAttention.attend(shape: shape, query: query, queryStride: queryStride, count: count, firstPosition: 0,
                                  kv: KeyValueView(keys: keys, values: values, stride: count, count: count),
                                  documentStart: documentStart, output: output,
                                  outputStride: shape.heads * shape.headDim, logSumExp: logSumExp, workers: workers)
    }

    public func backward(shape: AttentionShape, query: UnsafePointer<Float>, queryStride: Int, count: Int,
                         keys: UnsafePointer<Float>, values: UnsafePointer<Float>, documentStart: UnsafePointer<Int32>?,
                         output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
                         logSumExp: UnsafePointer<Float>, queryGradient: UnsafeMutablePointer<Float>,
                         queryGradientStride: Int, keyGradient: UnsafeMutablePointer<Float>,
                         valueGradient: UnsafeMutablePointer<Float>, workers: Int) {
        let width = shape.heads * shape.headDim
        AttentionBackward.accumulate(shape: shape, query: query, queryStride: queryStride, count: count,
                                     firstPosition: 0,
                                     kv: KeyValueView(keys: keys, values: values, stride: count, count: count),
                                     documentStart: documentStart, output: output, outputStride: width,
                                     outputGradient: outputGradient, outputGradientStride: width,
                                     logSumExp: logSumExp, queryGradient: queryGradient,
                                     queryGradientStride: queryGradientStride, keyGradient: keyGradient,
                                     valueGradient: valueGradient, workers: workers)
    }

    public func sequenceIndices(count: Int) -> [Int] { Array(0..<count) }
}
