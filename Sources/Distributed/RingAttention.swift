import Foundation
import Training
import Transformer

/// How the workers of a ring share keys and values.
public enum RingStrategy: String, Sendable, CaseIterable, Codable {
    /// Key/value blocks travel the ring (RingAttention, ring-flash-attention, Megatron p2p): `P−1` sends per layer
    /// forward, K/V memory `O(n/P)`, the next block's transfer overlapping the current block's attention.
    case passKV = "pass-kv"
    /// Every worker gathers all keys/values, then attends its queries in one go (Llama 3): simpler, K/V memory
    /// `O(n)` per layer; dK/dV are reduce-scattered back over the ring.
    case allGather = "all-gather"
}

/// One worker's communication and computation time inside ring attention, and its traffic.
public struct RingStatistics: Sendable, Equatable {
    /// Seconds spent waiting for transfers and packing/unpacking blocks (communication not hidden by compute).
    public var communicationSeconds = 0.0
    /// Seconds spent in the attention kernels.
    public var computeSeconds = 0.0
    public var bytesSent = 0
    public var messages = 0
    public init() {}
}

/// Sequence-parallel attention, forward and backward, for one worker of a ring that holds ``shard``'s tokens of
/// the sequence: the ``AttentionStrategy`` the training pass uses when a sequence is sharded.
///
/// Every (local query chunk, key/value chunk) pair is one call of ``BlockwiseAttention/attend`` with the chunks'
/// global positions, so causal masks, document starts (global token indices, per query) and sliding windows hold
/// across shard boundaries; pairs that no mask lets through are skipped. Partial outputs merge in f32 with the
/// engine's log-sum-exp rule (``BlockwiseAttention/mergePartial(output:logSumExp:with:otherLogSumExp:rows:width:)``).
/// The backward recomputes probabilities from the final log-sum-exp (``AttentionBackward``); with
/// ``RingStrategy/passKV`` the K/V blocks travel the ring again and each block's dK/dV partial sum (f32) travels with
/// it, arriving home after `P` hops.
///
/// Travelling block layout: `[keys: kvHeads × L × headDim | values: same]`, `L` the owner's token count.
public final class RingAttention: AttentionStrategy {
    public let communicator: Communicator
    public let shard: SequenceShard
    public let strategy: RingStrategy
    public var statistics = RingStatistics()
    private let peers: [SequenceShard]
    private static let kvTag = 1, gradientTag = 2, gatherTag = 3

    public init(communicator: Communicator, shard: SequenceShard, strategy: RingStrategy = .passKV) throws {
        guard shard.workers == communicator.size, shard.rank == communicator.rank else {
            throw DistributedError("shard of rank \(shard.rank) in a ring of \(shard.workers) does not match the communicator (rank \(communicator.rank) of \(communicator.size))")
        }
        self.communicator = communicator
        self.shard = shard
        self.strategy = strategy
        peers = (0..<shard.workers).map { shard.peer($0) }
    }

    public func sequenceIndices(count: Int) -> [Int] { shard.globalIndices }

    var size: Int { shard.workers }
    var rank: Int { shard.rank }

    // MARK: Forward

    public func forward(shape: AttentionShape, query: UnsafePointer<Float>, queryStride: Int, count: Int,
                        keys: UnsafePointer<Float>, values: UnsafePointer<Float>, documentStart: UnsafePointer<Int32>?,
                        output: UnsafeMutablePointer<Float>, logSumExp: UnsafeMutablePointer<Float>,
                        workers: Int) throws {
        try forward(shape: shape, query: query, queryStride: queryStride, count: count, keys: keys, values: values,
                    documentStart: documentStart, causal: true, output: output, logSumExp: logSumExp, workers: workers)
    }

    /// The same with a choice of causal or full (bidirectional) attention, for tests of the algorithm.
    public func forward(shape: AttentionShape, query: UnsafePointer<Float>, queryStride: Int, count: Int,
                        keys: UnsafePointer<Float>, values: UnsafePointer<Float>, documentStart: UnsafePointer<Int32>?,
                        causal: Bool, output: UnsafeMutablePointer<Float>, logSumExp: UnsafeMutablePointer<Float>,
                        workers: Int) throws {
        try checkCount(count)
        let q = Queries(shape: shape, query: query, queryStride: queryStride, documentStart: documentStart, causal: causal)
        switch strategy {
        case .passKV: try ringForward(q, keys: keys, values: values, output: output, logSumExp: logSumExp, workers: workers)
        case .allGather: try gatheredForward(q, keys: keys, values: values, output: output, logSumExp: logSumExp, workers: workers)
        }
    }

    func checkCount(_ count: Int) throws {
        guard count == shard.count else {
            throw DistributedError("rank \(rank) was given \(count) tokens but its \(shard.kind.rawValue) shard of \(shard.length) holds \(shard.count)")
        }
    }

    /// This worker's queries and the mask they use.
    struct Queries {
        let shape: AttentionShape
        let query: UnsafePointer<Float>, queryStride: Int
        let documentStart: UnsafePointer<Int32>?
        let causal: Bool
        var width: Int { shape.heads * shape.headDim }
    }

    private func ringForward(_ q: Queries, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                             output: UnsafeMutablePointer<Float>, logSumExp: UnsafeMutablePointer<Float>,
                             workers: Int) throws {
        let capacity = peers.map { blockFloats($0, q.shape) }.max()!
        let buffers = [Buffer(capacity), Buffer(capacity)]
        let own = shard.count
        output.update(repeating: 0, count: own * q.width)
        logSumExp.update(repeating: -.infinity, count: own * q.shape.heads)
        let tmpOut = Buffer(own * q.width), tmpLse = Buffer(own * q.shape.heads)
        timed(\.communicationSeconds) { pack(keys, values, count: own, shape: q.shape, into: buffers[0].pointer) }
        for s in 0..<size {
            let j = (rank - s + size) % size, current = buffers[s % 2]
            var pending: PendingExchange?
            if s + 1 < size {
                let incoming = (rank - s - 1 + size) % size
                pending = try start(send: current, floats: blockFloats(peers[j], q.shape), receive: buffers[(s + 1) % 2],
                                    floats: blockFloats(peers[incoming], q.shape), tag: Self.kvTag)
            }
            timed(\.computeSeconds) {
                attendBlock(q, block: current.pointer, owner: peers[j], output: output, logSumExp: logSumExp,
                            tmpOut: tmpOut.pointer, tmpLse: tmpLse.pointer, workers: workers)
            }
            if let pending { try finish(pending) }
        }
    }

    /// Attends the local query chunks to the key/value chunks of `owner`'s block and merges into the accumulators.
    private func attendBlock(_ q: Queries, block: UnsafePointer<Float>, owner: SequenceShard,
                             output: UnsafeMutablePointer<Float>, logSumExp: UnsafeMutablePointer<Float>,
                             tmpOut: UnsafeMutablePointer<Float>, tmpLse: UnsafeMutablePointer<Float>, workers: Int) {
        let heads = q.shape.heads, hd = q.shape.headDim
        for (qc, qo) in zip(shard.chunks, shard.chunkOffsets) {
            for (kc, ko) in zip(owner.chunks, owner.chunkOffsets) where visible(q, queries: qc, queryOffset: qo, keys: kc) {
                let kv = view(block, owner: owner, chunk: kc, offset: ko, shape: q.shape)
                BlockwiseAttention.attend(shape: q.shape, query: q.query + qo * q.queryStride, queryStride: q.queryStride,
                                          count: qc.count, firstPosition: qc.lowerBound, kv: kv, causal: q.causal,
                                          documentStart: q.documentStart.map { $0 + qo }, output: tmpOut,
                                          outputStride: q.width, logSumExp: tmpLse, workers: workers)
                BlockwiseAttention.mergePartial(output: output + qo * q.width, logSumExp: logSumExp + qo * heads,
                                                with: tmpOut, otherLogSumExp: tmpLse, rows: qc.count * heads, width: hd)
            }
        }
    }

    private func gatheredForward(_ q: Queries, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                                 output: UnsafeMutablePointer<Float>, logSumExp: UnsafeMutablePointer<Float>,
                                 workers: Int) throws {
        let n = shard.length, kvFloats = q.shape.kvHeads * n * q.shape.headDim
        let full = Buffer(2 * kvFloats)
        try gatherAll(keys, values, shape: q.shape, into: full.pointer)
        let kv = KeyValueView(keys: full.pointer, values: full.pointer + kvFloats, stride: n, count: n)
        timed(\.computeSeconds) {
            for (qc, qo) in zip(shard.chunks, shard.chunkOffsets) {
                BlockwiseAttention.attend(shape: q.shape, query: q.query + qo * q.queryStride, queryStride: q.queryStride,
                                          count: qc.count, firstPosition: qc.lowerBound, kv: kv, causal: q.causal,
                                          documentStart: q.documentStart.map { $0 + qo },
                                          output: output + qo * q.width, outputStride: q.width,
                                          logSumExp: logSumExp + qo * q.shape.heads, workers: workers)
            }
        }
    }

    // MARK: Backward

    public func backward(shape: AttentionShape, query: UnsafePointer<Float>, queryStride: Int, count: Int,
                         keys: UnsafePointer<Float>, values: UnsafePointer<Float>, documentStart: UnsafePointer<Int32>?,
                         output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
                         logSumExp: UnsafePointer<Float>, queryGradient: UnsafeMutablePointer<Float>,
                         queryGradientStride: Int, keyGradient: UnsafeMutablePointer<Float>,
                         valueGradient: UnsafeMutablePointer<Float>, workers: Int) throws {
        try backward(shape: shape, query: query, queryStride: queryStride, count: count, keys: keys, values: values,
                     documentStart: documentStart, causal: true, output: output, outputGradient: outputGradient,
                     logSumExp: logSumExp, queryGradient: queryGradient, queryGradientStride: queryGradientStride,
                     keyGradient: keyGradient, valueGradient: valueGradient, workers: workers)
    }

    /// The backward with a choice of causal or full attention (as the forward with `causal`).
    public func backward(shape: AttentionShape, query: UnsafePointer<Float>, queryStride: Int, count: Int,
                         keys: UnsafePointer<Float>, values: UnsafePointer<Float>, documentStart: UnsafePointer<Int32>?,
                         causal: Bool, output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
                         logSumExp: UnsafePointer<Float>, queryGradient: UnsafeMutablePointer<Float>,
                         queryGradientStride: Int, keyGradient: UnsafeMutablePointer<Float>,
                         valueGradient: UnsafeMutablePointer<Float>, workers: Int) throws {
        try checkCount(count)
        let q = Queries(shape: shape, query: query, queryStride: queryStride, documentStart: documentStart, causal: causal)
        let g = Gradients(output: output, outputGradient: outputGradient, logSumExp: logSumExp,
                          queryGradient: queryGradient, queryGradientStride: queryGradientStride)
        switch strategy {
        case .passKV:
            try ringBackward(q, g, keys: keys, values: values, keyGradient: keyGradient, valueGradient: valueGradient,
                             workers: workers)
        case .allGather:
            try gatheredBackward(q, g, keys: keys, values: values, keyGradient: keyGradient,
                                 valueGradient: valueGradient, workers: workers)
        }
    }

    /// The forward's results and the query gradient of this worker's rows.
    struct Gradients {
        let output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, logSumExp: UnsafePointer<Float>
        let queryGradient: UnsafeMutablePointer<Float>, queryGradientStride: Int
    }

    private func ringBackward(_ q: Queries, _ g: Gradients, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                              keyGradient: UnsafeMutablePointer<Float>, valueGradient: UnsafeMutablePointer<Float>,
                              workers: Int) throws {
        let capacity = peers.map { blockFloats($0, q.shape) }.max()!
        let blocks = [Buffer(capacity), Buffer(capacity)]
        let sums = [Buffer(capacity), Buffer(capacity)], arrived = [Buffer(capacity), Buffer(capacity)]
        let own = shard.count
        timed(\.communicationSeconds) { pack(keys, values, count: own, shape: q.shape, into: blocks[0].pointer) }
        var gradientPending: PendingExchange?
        for s in 0..<size {
            let j = (rank - s + size) % size, current = blocks[s % 2], floats = blockFloats(peers[j], q.shape)
            var pending: PendingExchange?
            if s + 1 < size {
                let incoming = (rank - s - 1 + size) % size
                pending = try start(send: current, floats: floats, receive: blocks[(s + 1) % 2],
                                    floats: blockFloats(peers[incoming], q.shape), tag: Self.kvTag)
            }
            // This worker's contribution to block j's dK/dV, plus the partial sum that travelled with the block.
            let sum = sums[s % 2]
            timed(\.computeSeconds) {
                sum.pointer.update(repeating: 0, count: floats)
                backwardBlock(q, g, block: current.pointer, owner: peers[j], gradient: sum.pointer, workers: workers)
            }
            if let gradientPending {
                try finish(gradientPending)
                timed(\.communicationSeconds) { add(arrived[(s - 1) % 2].pointer, into: sum.pointer, count: floats) }
            }
            if size > 1 {
                // Block j moves on to rank+1, with its sum; block j−1's sum comes from rank−1 (at the last step: our own).
                let incoming = (rank - s - 1 + size) % size
                gradientPending = try start(send: sum, floats: floats, receive: arrived[s % 2],
                                            floats: blockFloats(peers[incoming], q.shape), tag: Self.gradientTag)
            }
            if let pending { try finish(pending) }
        }
        let final: Buffer
        if let gradientPending {
            try finish(gradientPending)
            final = arrived[(size - 1) % 2]
        } else {
            final = sums[0]
        }
        // The last exchange sent from `sums` and may still have been reading it (MPI reads a large send buffer in
        // place): the buffers must outlive it, not just their last use in the loop.
        withExtendedLifetime((blocks, sums)) {}
        timed(\.communicationSeconds) {
            add(final.pointer, into: keyGradient, count: blockFloats(shard, q.shape) / 2)
            add(final.pointer + blockFloats(shard, q.shape) / 2, into: valueGradient, count: blockFloats(shard, q.shape) / 2)
        }
    }

    /// Adds the gradients of the local queries against `owner`'s block (dQ into the query gradient, dK/dV into
    /// `gradient`, laid out as the block).
    private func backwardBlock(_ q: Queries, _ g: Gradients, block: UnsafePointer<Float>, owner: SequenceShard,
                               gradient: UnsafeMutablePointer<Float>, workers: Int) {
        let hd = q.shape.headDim, half = q.shape.kvHeads * owner.count * hd
        for (qc, qo) in zip(shard.chunks, shard.chunkOffsets) {
            for (kc, ko) in zip(owner.chunks, owner.chunkOffsets) where visible(q, queries: qc, queryOffset: qo, keys: kc) {
                let kv = view(block, owner: owner, chunk: kc, offset: ko, shape: q.shape)
                backwardPair(q, g, queries: qc, queryOffset: qo, kv: kv, keyGradient: gradient + ko * hd,
                             valueGradient: gradient + half + ko * hd, workers: workers)
            }
        }
    }

    private func backwardPair(_ q: Queries, _ g: Gradients, queries qc: Range<Int>, queryOffset qo: Int,
                              kv: KeyValueView, keyGradient: UnsafeMutablePointer<Float>,
                              valueGradient: UnsafeMutablePointer<Float>, workers: Int) {
        AttentionBackward.accumulate(shape: q.shape, query: q.query + qo * q.queryStride, queryStride: q.queryStride,
                                     count: qc.count, firstPosition: qc.lowerBound, kv: kv, causal: q.causal,
                                     documentStart: q.documentStart.map { $0 + qo },
                                     output: g.output + qo * q.width, outputStride: q.width,
                                     outputGradient: g.outputGradient + qo * q.width, outputGradientStride: q.width,
                                     logSumExp: g.logSumExp + qo * q.shape.heads,
                                     queryGradient: g.queryGradient + qo * g.queryGradientStride,
                                     queryGradientStride: g.queryGradientStride, keyGradient: keyGradient,
                                     valueGradient: valueGradient, workers: workers)
    }

    private func gatheredBackward(_ q: Queries, _ g: Gradients, keys: UnsafePointer<Float>,
                                  values: UnsafePointer<Float>, keyGradient: UnsafeMutablePointer<Float>,
                                  valueGradient: UnsafeMutablePointer<Float>, workers: Int) throws {
        let n = shard.length, kvFloats = q.shape.kvHeads * n * q.shape.headDim
        let full = Buffer(2 * kvFloats), fullGradient = Buffer(2 * kvFloats)
        try gatherAll(keys, values, shape: q.shape, into: full.pointer)
        let kv = KeyValueView(keys: full.pointer, values: full.pointer + kvFloats, stride: n, count: n)
        timed(\.computeSeconds) {
            for (qc, qo) in zip(shard.chunks, shard.chunkOffsets) {
                backwardPair(q, g, queries: qc, queryOffset: qo, kv: kv, keyGradient: fullGradient.pointer,
                             valueGradient: fullGradient.pointer + kvFloats, workers: workers)
            }
        }
        try reduceScatter(fullGradient.pointer, shape: q.shape, keyGradient: keyGradient, valueGradient: valueGradient)
    }

    // MARK: Collectives over blocks

    /// Every worker's keys and values in sequence order, head-major `[keys: kvHeads × n × headDim | values]`,
    /// gathered around the ring in `P−1` steps.
    private func gatherAll(_ keys: UnsafePointer<Float>, _ values: UnsafePointer<Float>, shape: AttentionShape,
                           into full: UnsafeMutablePointer<Float>) throws {
        let capacity = peers.map { blockFloats($0, shape) }.max()!
        let buffers = [Buffer(capacity), Buffer(capacity)]
        timed(\.communicationSeconds) {
            pack(keys, values, count: shard.count, shape: shape, into: buffers[0].pointer)
            unpack(buffers[0].pointer, owner: shard, shape: shape, into: full)
        }
        for s in 0..<(size - 1) {
            let j = (rank - s + size) % size, incoming = (rank - s - 1 + size) % size
            let pending = try start(send: buffers[s % 2], floats: blockFloats(peers[j], shape),
                                    receive: buffers[(s + 1) % 2], floats: blockFloats(peers[incoming], shape),
                                    tag: Self.gatherTag)
            try finish(pending)
            timed(\.communicationSeconds) {
                unpack(buffers[(s + 1) % 2].pointer, owner: peers[incoming], shape: shape, into: full)
            }
        }
    }

    /// Sums every worker's full-sequence dK/dV (`[kvHeads × n × headDim | same]`) and adds this worker's rows of the
    /// sum to its key/value gradients: a ring reduce-scatter, block `b`'s sum starting at rank `b+1`.
    private func reduceScatter(_ full: UnsafeMutablePointer<Float>, shape: AttentionShape,
                               keyGradient: UnsafeMutablePointer<Float>, valueGradient: UnsafeMutablePointer<Float>) throws {
        let capacity = peers.map { blockFloats($0, shape) }.max()!
        let sums = [Buffer(capacity), Buffer(capacity)], mine = Buffer(capacity)
        let n = shard.length, kvFloats = shape.kvHeads * n * shape.headDim
        func packGradient(_ owner: SequenceShard, into out: UnsafeMutablePointer<Float>) {
            let half = blockFloats(owner, shape) / 2
            gatherRows(full, length: n, owner: owner, shape: shape, into: out)
            gatherRows(full + kvFloats, length: n, owner: owner, shape: shape, into: out + half)
        }
        var current = sums[0]
        timed(\.communicationSeconds) { packGradient(peers[(rank - 1 + size) % size], into: current.pointer) }
        for s in 0..<(size - 1) {
            let b = (rank - s - 1 + size) % size, incoming = (rank - s - 2 + 2 * size) % size
            let other = sums[(s + 1) % 2]
            let pending = try start(send: current, floats: blockFloats(peers[b], shape), receive: other,
                                    floats: blockFloats(peers[incoming], shape), tag: Self.gradientTag)
            try finish(pending)
            timed(\.communicationSeconds) {
                packGradient(peers[incoming], into: mine.pointer)
                add(mine.pointer, into: other.pointer, count: blockFloats(peers[incoming], shape))
            }
            current = other
        }
        // `current` is now block `rank`'s total (for P = 1 it is block 0's own contribution).
        let floats = blockFloats(shard, shape)
        timed(\.communicationSeconds) {
            add(current.pointer, into: keyGradient, count: floats / 2)
            add(current.pointer + floats / 2, into: valueGradient, count: floats / 2)
        }
    }

    // MARK: Helpers

    /// Floats in `owner`'s travelling block.
    func blockFloats(_ owner: SequenceShard, _ shape: AttentionShape) -> Int {
        2 * shape.kvHeads * owner.count * shape.headDim
    }

    /// Whether any query of `queries` may see any key of `keys` (a necessary condition; the kernels apply the exact
    /// mask).
    func visible(_ q: Queries, queries: Range<Int>, queryOffset: Int, keys: Range<Int>) -> Bool {
        guard !queries.isEmpty, !keys.isEmpty else { return false }
        if q.causal && keys.lowerBound > queries.upperBound - 1 { return false }
        if let w = q.shape.slidingWindow, queries.lowerBound - (keys.upperBound - 1) >= w { return false }
        // Document starts do not decrease within a chunk: the first query's is the smallest.
        if let d = q.documentStart, Int(d[queryOffset]) > keys.upperBound - 1 { return false }
        return true
    }

    /// The keys/values of one chunk of a travelling block.
    func view(_ block: UnsafePointer<Float>, owner: SequenceShard, chunk: Range<Int>, offset: Int,
              shape: AttentionShape) -> KeyValueView {
        let hd = shape.headDim, half = shape.kvHeads * owner.count * hd
        return KeyValueView(keys: block + offset * hd, values: block + half + offset * hd, stride: owner.count,
                            count: chunk.count, firstPosition: chunk.lowerBound)
    }

    func pack(_ keys: UnsafePointer<Float>, _ values: UnsafePointer<Float>, count: Int, shape: AttentionShape,
              into block: UnsafeMutablePointer<Float>) {
        let half = shape.kvHeads * count * shape.headDim
        block.update(from: keys, count: half)
        (block + half).update(from: values, count: half)
    }

    /// Writes `owner`'s block into the full-sequence buffer at its chunks' positions.
    func unpack(_ block: UnsafePointer<Float>, owner: SequenceShard, shape: AttentionShape,
                into full: UnsafeMutablePointer<Float>) {
        let hd = shape.headDim, n = shard.length, l = owner.count
        let kvFloats = shape.kvHeads * n * hd, half = shape.kvHeads * l * hd
        for part in 0..<2 {
            for h in 0..<shape.kvHeads {
                for (c, o) in zip(owner.chunks, owner.chunkOffsets) {
                    (full + part * kvFloats + (h * n + c.lowerBound) * hd)
                        .update(from: block + part * half + (h * l + o) * hd, count: c.count * hd)
                }
            }
        }
    }

    /// `owner`'s rows of one head-major full-sequence buffer (`kvHeads × length × headDim`), head-major.
    func gatherRows(_ full: UnsafePointer<Float>, length n: Int, owner: SequenceShard, shape: AttentionShape,
                    into out: UnsafeMutablePointer<Float>) {
        let hd = shape.headDim, l = owner.count
        for h in 0..<shape.kvHeads {
            for (c, o) in zip(owner.chunks, owner.chunkOffsets) {
                (out + (h * l + o) * hd).update(from: full + (h * n + c.lowerBound) * hd, count: c.count * hd)
            }
        }
    }

    func add(_ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { destination[i] += source[i] }
    }

    /// Sends `floats` of `send` to the next worker while receiving `floats` into `receive` from the previous one.
    func start(send: Buffer, floats sendFloats: Int, receive: Buffer, floats receiveFloats: Int,
               tag: Int) throws -> PendingExchange {
        statistics.bytesSent += sendFloats * 4
        statistics.messages += 1
        return try communicator.startExchange(
            send: UnsafeRawBufferPointer(start: send.pointer, count: sendFloats * 4), to: communicator.next,
            receive: UnsafeMutableRawBufferPointer(start: receive.pointer, count: receiveFloats * 4),
            from: communicator.previous, tag: tag)
    }

    func finish(_ pending: PendingExchange) throws {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { statistics.communicationSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
        try communicator.wait(pending)
    }

    func timed(_ field: WritableKeyPath<RingStatistics, Double>, _ body: () -> Void) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        body()
        statistics[keyPath: field] += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }
}

/// An owned f32 buffer.
final class Buffer {
    let pointer: UnsafeMutablePointer<Float>
    init(_ count: Int) {
        pointer = .allocate(capacity: max(1, count))
        pointer.initialize(repeating: 0, count: max(1, count))
    }
    deinit { pointer.deallocate() }
}
