import CKernels
import Foundation
import TensorCore

/// Shapes of multi-head attention with grouped key/value heads.
public struct AttentionShape: Sendable, Equatable {
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    /// Scores are `q·k × scale` (transformers: `head_dim ** -0.5`).
    public var scale: Float
    /// Keys with `queryPosition − keyPosition ≥ slidingWindow` are masked (Mistral). `nil`: none.
    public var slidingWindow: Int?

    public init(heads: Int, kvHeads: Int, headDim: Int, scale: Float? = nil, slidingWindow: Int? = nil) {
        precondition(heads % kvHeads == 0, "heads must be a multiple of kvHeads")
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.scale = scale ?? 1 / Float(headDim).squareRoot()
        self.slidingWindow = slidingWindow
    }

    public var groupSize: Int { heads / kvHeads }
}

/// Keys and values of one layer laid out head-major: head `h`'s key at position `p` is
/// `keys[(h · stride + p) · headDim ..< … + headDim]`; positions `0..<count` are valid.
public struct KeyValueView: @unchecked Sendable {
    public var keys: UnsafePointer<Float>
    public var values: UnsafePointer<Float>
    /// Positions per head slot (the cache capacity).
    public var stride: Int
    /// Keys `0..<count` are present.
    public var count: Int
    /// Absolute position of key index 0 (non-zero for a shard of a sequence in ring attention).
    public var firstPosition: Int

    public init(keys: UnsafePointer<Float>, values: UnsafePointer<Float>, stride: Int, count: Int, firstPosition: Int = 0) {
        self.keys = keys
        self.values = values
        self.stride = stride
        self.count = count
        self.firstPosition = firstPosition
    }
}

/// Blockwise causal attention with an online softmax (flash-attention style): memory is
/// O(block²) per worker, independent of sequence length.
///
/// For each (key/value head, tile of `queryBlock` query positions), the `groupSize` query heads that share the
/// key/value head are stacked into one `(queryBlock·groupSize) × headDim` matrix, then key blocks of `keyBlock`
/// positions are visited in order with a running max and sum per query row. Three kernels do this:
/// - decoding (calls of at most ``decodeQueries`` queries, every ``KernelPath``): `ck_attention_decode` reads the
///   cached key and value rows in place, no packing, each row once per four heads of the group (16 keys' dot
///   products per step and one horizontal-sum tree on AVX-512, 8 on AVX2); long caches are split across the
///   workers and merged by log-sum-exp (flash-decoding).
/// - fused (AVX2+FMA or AVX-512, chosen at run time by ``KernelPath``; `headDim` a multiple of 8, calls of ≥ 16
///   queries): `ck_attention_tile` keeps the score block transposed (`Sᵀ = K·Qᵀ`; 6 keys × 16 rows per register
///   tile on AVX2, 6 × 32 on AVX-512), so the softmax runs down the key axis with vertical vector operations in
///   base 2, then `O = O·corr + P·V` (6 rows × 16 channels per register tile on AVX2, 6 × 32 on AVX-512). Keys and
///   values are packed once per head per call and shared by all query tiles.
/// - BLAS: `S = Q·Kᵀ·scale` and `O = O·corr + P·V` as single-threaded GEMMs around `ck_softmax_block`.
/// Each way the result equals `softmax(QKᵀ·scale + mask)·V` as transformers' eager/sdpa attention computes it
/// (causal mask, optional sliding window), to f32 rounding.
public enum BlockwiseAttention {
    public static let defaultQueryBlock = 64
    /// Keys per block for the BLAS tiles.
    public static let defaultKeyBlock = 512
    /// Keys per block for the fused kernel (its score block stays in L2 beside the query tile).
    public static let defaultFusedKeyBlock = 96

    /// Computes attention outputs for `count` queries at absolute positions `firstPosition ..< firstPosition+count`.
    ///
    /// - `query`: `count × (heads·headDim)` row-major with row stride `queryStride` (head `h` at column `h·headDim`).
    /// - `kv`: the keys/values visible to these queries (causality is applied by position).
    /// - `output`: `count × (heads·headDim)`, row stride `outputStride`.
    /// - `documentStart`: optional per-query lower bound on visible key positions (`count` values, absolute
    ///   positions): query `i` sees no key before `documentStart[i]` — the document mask of packed sequences.
    /// - `logSumExp`: optional `count × heads` (row order, as the outputs) natural-log normaliser per (query, head),
    ///   for merging partial results with ``mergePartial(output:logSumExp:with:otherLogSumExp:rows:width:)``
    ///   (ring attention) and for the backward pass. A row with no visible key gets output 0 and log-sum-exp −∞.
    /// - `workers`: parallel workers; BLAS runs single-threaded inside them.
    /// - `queryBlock`/`keyBlock`: tile sizes (query positions per tile, keys per block; `nil`: the path's default).
    /// - `fused`: use the fused register-tiled kernel (`ck_attention_tile`, on ``KernelPath/active``) where the
    ///   CPU has AVX2+FMA or AVX-512 and `headDim` is a multiple of 8; otherwise, or when `false`, each block runs as two BLAS GEMMs around
    ///   `ck_softmax_block`. Both compute the same function to f32 rounding. Calls of at most ``decodeQueries``
    ///   queries run the decoding kernel either way (on the active path, or the portable one when `false`).
    /// - `compute`: `.bf16` runs calls of ≥ 16 queries on AMX tiles where ``ComputePrecision/amxAttention(headDim:)``
    ///   (Q, K, V and the probabilities rounded to bf16, f32 accumulation: ``amxAttend(shape:query:queryStride:count:firstPosition:kv:causal:documentStart:output:outputStride:logSumExp:workers:queryBlock:)``);
    ///   otherwise, and always for `.f32`, the f32 paths above (`fused`, `keyBlock` then apply).
    public static func attend(shape: AttentionShape, query: UnsafePointer<Float>, queryStride: Int,
                              count: Int, firstPosition: Int, kv: KeyValueView, causal: Bool = true,
                              documentStart: UnsafePointer<Int32>? = nil,
                              output: UnsafeMutablePointer<Float>, outputStride: Int,
                              logSumExp: UnsafeMutablePointer<Float>? = nil, workers: Int = 2,
                              queryBlock: Int = defaultQueryBlock, keyBlock: Int? = nil, fused: Bool = true,
                              compute: ComputePrecision = .f32) {
        if compute == .bf16 && count >= 16 && ComputePrecision.amxAttention(headDim: shape.headDim) {
            amxAttend(shape: shape, query: query, queryStride: queryStride, count: count, firstPosition: firstPosition,
                      kv: kv, causal: causal, documentStart: documentStart, output: output, outputStride: outputStride,
                      logSumExp: logSumExp, workers: workers, queryBlock: queryBlock)
            return
        }
        attend(shape: shape, query: query, queryStride: queryStride, count: count, firstPosition: firstPosition,
               kv: kv, causal: causal, documentStart: documentStart, output: output, outputStride: outputStride,
               logSumExp: logSumExp, workers: workers, queryBlock: queryBlock, keyBlock: keyBlock,
               kernel: fused ? KernelPath.active : .portable)
    }

    /// ``attend(shape:query:queryStride:count:firstPosition:kv:causal:documentStart:output:outputStride:logSumExp:workers:queryBlock:keyBlock:fused:)``
    /// on a given kernel path: `.avx2`/`.avx512` run the fused tile of that instruction set (when `headDim` is a
    /// multiple of 8 and the call has ≥ 16 queries), `.portable` the BLAS tiles around `ck_softmax_block` (on the
    /// active path); calls of at most ``decodeQueries`` queries run `ck_attention_decode` on that path. The path must
    /// be supported by the CPU.
    static func attend(shape: AttentionShape, query: UnsafePointer<Float>, queryStride: Int,
                       count: Int, firstPosition: Int, kv: KeyValueView, causal: Bool = true,
                       documentStart: UnsafePointer<Int32>? = nil,
                       output: UnsafeMutablePointer<Float>, outputStride: Int,
                       logSumExp: UnsafeMutablePointer<Float>? = nil, workers: Int = 2,
                       queryBlock: Int = defaultQueryBlock, keyBlock: Int? = nil, kernel: KernelPath) {
        guard count > 0 else { return }
        let g = shape.groupSize, hd = shape.headDim
        // Calls of under 16 queries do not pack: packing the keys/values would cost as much as using them once.
        let useFused = count >= 16 && ck_attention_fused_available_on(kernel.rawValue, hd) != 0
        let qb = max(1, queryBlock)
        let kb = max(1, keyBlock ?? (useFused ? defaultFusedKeyBlock : defaultKeyBlock))
        if useFused {
            fusedAttend(shape: shape, query: query, queryStride: queryStride, count: count,
                        firstPosition: firstPosition, kv: kv, causal: causal, documentStart: documentStart,
                        output: output,
                        outputStride: outputStride, logSumExp: logSumExp, workers: max(1, workers), queryBlock: qb,
                        keyBlock: kb, kernel: kernel)
            return
        }
        if count < 8 && workers > 1 && kv.count >= 2 * splitKeysMinimum {
            splitKeys(shape: shape, query: query, queryStride: queryStride, count: count, firstPosition: firstPosition,
                      kv: kv, causal: causal, documentStart: documentStart, output: output, outputStride: outputStride,
                      logSumExp: logSumExp, workers: workers, queryBlock: qb, keyBlock: kb, kernel: kernel)
            return
        }
        if count <= decodeQueries {
            decodeAttend(shape: shape, query: query, queryStride: queryStride, count: count,
                         firstPosition: firstPosition, kv: kv, causal: causal, documentStart: documentStart,
                         output: output, outputStride: outputStride, logSumExp: logSumExp, kernel: kernel)
            return
        }
        let tiles = (count + qb - 1) / qb
        // Tasks ordered so the costliest (latest) tiles start first; worker w takes tasks w, w+W, …
        var tasks: [(head: Int, tile: Int)] = []
        for tile in stride(from: tiles - 1, through: 0, by: -1) {
            for h in 0..<shape.kvHeads { tasks.append((h, tile)) }
        }
        // Short query runs (decoding) stay on the calling thread: switching BLAS threading costs more than it saves.
        let nWorkers = count < 8 ? 1 : max(1, min(workers, tasks.count))
        let savedThreads = BLAS.threads
        if nWorkers > 1 { BLAS.threads = 1 }
        defer { if nWorkers > 1 { BLAS.threads = savedThreads } }
        nonisolated(unsafe) let q = query
        nonisolated(unsafe) let out = output
        nonisolated(unsafe) let lse = logSumExp
        nonisolated(unsafe) let docStart = documentStart
        let taskList = tasks
        Parallel.forEach(nWorkers, threads: nWorkers) { w in
            let maxRows = qb * g
            let qTile = UnsafeMutablePointer<Float>.allocate(capacity: maxRows * hd)
            let oTile = UnsafeMutablePointer<Float>.allocate(capacity: maxRows * hd)
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: maxRows * kb)
            let m = UnsafeMutablePointer<Float>.allocate(capacity: maxRows)
            let l = UnsafeMutablePointer<Float>.allocate(capacity: maxRows)
            let corr = UnsafeMutablePointer<Float>.allocate(capacity: maxRows)
            let lo = UnsafeMutablePointer<Int32>.allocate(capacity: maxRows)
            let hi = UnsafeMutablePointer<Int32>.allocate(capacity: maxRows)
            defer {
                qTile.deallocate(); oTile.deallocate(); scores.deallocate()
                m.deallocate(); l.deallocate(); corr.deallocate(); lo.deallocate(); hi.deallocate()
            }
            var t = w
            while t < taskList.count {
                let (kvh, tile) = taskList[t]
                t += nWorkers
                let t0 = tile * qb, tn = min(qb, count - t0)
                let rows = tn * g
                // Pack the group's queries: row (i, j) = query i of the tile, head kvh·g + j.
                for i in 0..<tn {
                    for j in 0..<g {
                        let src = q + (t0 + i) * queryStride + (kvh * g + j) * hd
                        (qTile + (i * g + j) * hd).update(from: src, count: hd)
                    }
                }
                oTile.update(repeating: 0, count: rows * hd)
                m.update(repeating: -Float.infinity, count: rows)
                l.update(repeating: 0, count: rows)
                // Visible key range for the whole tile.
                let lastQueryPos = firstPosition + t0 + tn - 1
                let firstQueryPos = firstPosition + t0
                var keyEnd = kv.count  // exclusive, in key indices
                if causal { keyEnd = min(keyEnd, lastQueryPos - kv.firstPosition + 1) }
                var keyStart = 0
                if let win = shape.slidingWindow { keyStart = max(0, firstQueryPos - win + 1 - kv.firstPosition) }
                if let docStart {
                    var floor = Int.max
                    for i in 0..<tn { floor = min(floor, Int(docStart[t0 + i])) }
                    keyStart = max(keyStart, floor - kv.firstPosition)
                }
                let kBase = kv.keys + kvh * kv.stride * hd
                let vBase = kv.values + kvh * kv.stride * hd
                var k0 = keyStart
                while k0 < keyEnd {
                    let nb = min(kb, keyEnd - k0)
                    BLAS.sgemm(transB: true, m: rows, n: nb, k: hd, alpha: shape.scale,
                               a: qTile, lda: hd, b: kBase + k0 * hd, ldb: hd, beta: 0, c: scores, ldc: nb)
                    let keyPos0 = kv.firstPosition + k0
                    for i in 0..<tn {
                        let qpos = firstPosition + t0 + i
                        var h = Int32(clamping: nb)
                        if causal { h = Int32(clamping: min(nb, qpos - keyPos0 + 1)) }
                        var lw: Int32 = 0
                        if let win = shape.slidingWindow { lw = Int32(clamping: max(0, qpos - win + 1 - keyPos0)) }
                        if let docStart { lw = max(lw, Int32(clamping: Int(docStart[t0 + i]) - keyPos0)) }
                        for j in 0..<g { lo[i * g + j] = lw; hi[i * g + j] = h }
                    }
                    ck_softmax_block(scores, rows, nb, nb, lo, hi, m, l, corr)
                    for r in 0..<rows where corr[r] != 1 {
                        let c = corr[r], row = oTile + r * hd
                        for e in 0..<hd { row[e] *= c }
                    }
                    BLAS.sgemm(m: rows, n: hd, k: nb, a: scores, lda: nb, b: vBase + k0 * hd, ldb: hd,
                               beta: 1, c: oTile, ldc: hd)
                    k0 += nb
                }
                for i in 0..<tn {
                    for j in 0..<g {
                        let r = i * g + j
                        let head = kvh * g + j
                        let dst = out + (t0 + i) * outputStride + head * hd
                        let inv: Float = l[r] > 0 ? 1 / l[r] : 0
                        let src = oTile + r * hd
                        for e in 0..<hd { dst[e] = src[e] * inv }
                        if let lse {
                            lse[(t0 + i) * shape.heads + head] = l[r] > 0 ? m[r] + Foundation.log(l[r]) : -Float.infinity
                        }
                    }
                }
            }
        }
    }

    /// Keys per worker below which decoding-sized calls are not split.
    static let splitKeysMinimum = 512

    /// Calls of at most this many queries read the keys and values straight from the cache
    /// (``decodeAttend(shape:query:queryStride:count:firstPosition:kv:causal:documentStart:output:outputStride:logSumExp:kernel:)``):
    /// each query reads every visible key once, which beats packing or BLAS tiles only for a few queries.
    static let decodeQueries = 4

    /// A few queries (decoding) on the calling thread, one `ck_attention_decode_on` call per (query, key/value
    /// head): the group's query heads scored against the cached key rows in place, online softmax, probability-
    /// weighted value rows accumulated, log-sum-exp in `logSumExp`'s `count × heads` layout.
    private static func decodeAttend(shape: AttentionShape, query: UnsafePointer<Float>, queryStride: Int, count: Int,
                                     firstPosition: Int, kv: KeyValueView, causal: Bool,
                                     documentStart: UnsafePointer<Int32>?, output: UnsafeMutablePointer<Float>,
                                     outputStride: Int, logSumExp: UnsafeMutablePointer<Float>?, kernel: KernelPath) {
        let g = shape.groupSize, hd = shape.headDim
        let (lo, hi, _, _) = visibleKeys(shape: shape, count: count, firstPosition: firstPosition, kv: kv,
                                         causal: causal, documentStart: documentStart)
        for i in 0..<count {
            for kvh in 0..<shape.kvHeads {
                let head0 = kvh * g
                ck_attention_decode_on(kernel.rawValue, query + i * queryStride + head0 * hd, g, hd, shape.scale,
                                       kv.keys + kvh * kv.stride * hd, kv.values + kvh * kv.stride * hd,
                                       Int(lo[i]), Int(hi[i]), output + i * outputStride + head0 * hd,
                                       logSumExp.map { $0 + i * shape.heads + head0 })
            }
        }
    }

    /// Decoding-sized calls over long caches (flash-decoding): the keys are cut into one contiguous range per worker,
    /// each range's attention runs single-threaded with its log-sum-exp, and the partial results are merged
    /// (``mergePartial(output:logSumExp:with:otherLogSumExp:rows:width:)``), so both cores read the KV cache.
    private static func splitKeys(shape: AttentionShape, query: UnsafePointer<Float>, queryStride: Int, count: Int,
                                  firstPosition: Int, kv: KeyValueView, causal: Bool,
                                  documentStart: UnsafePointer<Int32>?, output: UnsafeMutablePointer<Float>,
                                  outputStride: Int, logSumExp: UnsafeMutablePointer<Float>?, workers: Int,
                                  queryBlock: Int, keyBlock: Int, kernel: KernelPath) {
        let parts = min(workers, kv.count / splitKeysMinimum), hd = shape.headDim
        let width = shape.heads * hd, rows = count * shape.heads
        let outs = UnsafeMutablePointer<Float>.allocate(capacity: parts * count * width)
        let lses = UnsafeMutablePointer<Float>.allocate(capacity: parts * rows)
        defer { outs.deallocate(); lses.deallocate() }
        nonisolated(unsafe) let q = query, docStart = documentStart, o = outs, l = lses
        let savedThreads = BLAS.threads
        if savedThreads != 1 { BLAS.threads = 1 }
        defer { if savedThreads != 1 { BLAS.threads = savedThreads } }
        Parallel.forEach(parts, threads: workers) { p in
            let a = kv.count * p / parts, b = kv.count * (p + 1) / parts
            let part = KeyValueView(keys: kv.keys + a * hd, values: kv.values + a * hd, stride: kv.stride, count: b - a,
                                    firstPosition: kv.firstPosition + a)
            attend(shape: shape, query: q, queryStride: queryStride, count: count, firstPosition: firstPosition,
                   kv: part, causal: causal, documentStart: docStart, output: o + p * count * width,
                   outputStride: width, logSumExp: l + p * rows, workers: 1, queryBlock: queryBlock,
                   keyBlock: keyBlock, kernel: kernel)
        }
        for p in 1..<parts {
            mergePartial(output: outs, logSumExp: lses, with: outs + p * count * width, otherLogSumExp: lses + p * rows,
                         rows: rows, width: hd)
        }
        for i in 0..<count { (output + i * outputStride).update(from: outs + i * width, count: width) }
        logSumExp?.update(from: lses, count: rows)
    }

    /// The keys each of `count` queries (at `firstPosition …`) may see, in key indices of `kv`: `lo[i] ..< hi[i]`
    /// (causal limit, sliding window, document start; empty ranges have `lo == hi`), and the union's bounds
    /// `kmin ..< kmax` (`kmin == .max` when no query sees a key).
    private static func visibleKeys(shape: AttentionShape, count: Int, firstPosition: Int, kv: KeyValueView,
                                    causal: Bool, documentStart: UnsafePointer<Int32>?)
        -> (lo: [Int32], hi: [Int32], kmin: Int, kmax: Int) {
        var lo = [Int32](repeating: 0, count: count), hi = [Int32](repeating: 0, count: count)
        var kmin = Int.max, kmax = 0
        for i in 0..<count {
            let qpos = firstPosition + i
            var end = kv.count
            if causal { end = min(end, qpos - kv.firstPosition + 1) }
            end = max(0, end)
            var begin = 0
            if let win = shape.slidingWindow { begin = max(0, qpos - win + 1 - kv.firstPosition) }
            if let documentStart { begin = max(begin, Int(documentStart[i]) - kv.firstPosition) }
            begin = min(end, begin)
            lo[i] = Int32(clamping: begin)
            hi[i] = Int32(clamping: end)
            if end > begin { kmin = min(kmin, begin); kmax = max(kmax, end) }
        }
        return (lo, hi, kmin, kmax)
    }

    /// The bf16 AMX path (``ComputePrecision/bf16`` prefill, `ck_attention_amx_tile`): per key/value head, its
    /// visible keys/values are rounded to bf16 and packed once as AMX B operands (`ck_attention_amx_pack`, blocks of
    /// 64 keys, split across the workers), then the workers run the kernel on the head's tiles of `queryBlock`
    /// queries, latest first (worker `w` takes tiles `T−1−w, T−1−w−W, …`).
    static func amxAttend(shape: AttentionShape, query: UnsafePointer<Float>, queryStride: Int, count: Int,
                          firstPosition: Int, kv: KeyValueView, causal: Bool = true,
                          documentStart: UnsafePointer<Int32>? = nil, output: UnsafeMutablePointer<Float>,
                          outputStride: Int, logSumExp: UnsafeMutablePointer<Float>? = nil, workers: Int = 2,
                          queryBlock qb: Int = defaultQueryBlock) {
        let g = shape.groupSize, hd = shape.headDim, kb = Int(CK_ATTENTION_AMX_KEY_BLOCK), workers = max(1, workers)
        let (lo, hi, kmin, kmax) = visibleKeys(shape: shape, count: count, firstPosition: firstPosition, kv: kv,
                                               causal: causal, documentStart: documentStart)
        let b0 = kmin == .max ? 0 : kmin / kb, b1 = kmin == .max ? 0 : (kmax + kb - 1) / kb
        let blockCount = ck_attention_amx_packed_count(1, hd)
        let packed = UnsafeMutablePointer<UInt16>.allocate(capacity: max(1, (b1 - b0) * blockCount))
        defer { packed.deallocate() }
        let qb = max(1, qb), tiles = (count + qb - 1) / qb
        nonisolated(unsafe) let q = query, out = output, lse = logSumExp, pk = packed
        let ranges = (lo, hi)
        for kvh in 0..<shape.kvHeads {
            nonisolated(unsafe) let kp = kv.keys + kvh * kv.stride * hd, vp = kv.values + kvh * kv.stride * hd
            let blocks = b1 - b0, parts = min(workers, max(1, blocks)), keyCount = kmax
            Parallel.forEach(parts, threads: workers) { w in
                let a = b0 + blocks * w / parts, b = b0 + blocks * (w + 1) / parts
                if b > a { ck_attention_amx_pack(kp, vp, keyCount, hd, a, b, pk + (a - b0) * blockCount) }
            }
            Parallel.forEach(min(workers, tiles), threads: workers) { w in
                let scratch = UnsafeMutableRawPointer.allocate(byteCount: ck_attention_amx_scratch(qb * g, hd),
                                                               alignment: 64)
                defer { scratch.deallocate() }
                ranges.0.withUnsafeBufferPointer { lo in ranges.1.withUnsafeBufferPointer { hi in
                    var t = tiles - 1 - w
                    while t >= 0 {
                        let t0 = t * qb, tn = min(qb, count - t0), head0 = kvh * g
                        let rc = ck_attention_amx_tile(q + t0 * queryStride + head0 * hd, queryStride, tn, g, hd,
                                                       shape.scale, pk, b0, lo.baseAddress! + t0, hi.baseAddress! + t0,
                                                       out + t0 * outputStride + head0 * hd, outputStride,
                                                       lse.map { $0 + t0 * shape.heads + head0 }, shape.heads, scratch)
                        precondition(rc == 0, "ck_attention_amx_tile: AMX not usable for head dim \(hd)")
                        t -= workers
                    }
                }}
            }
        }
    }

    /// The fused path: per key/value head, its visible keys/values are packed once (`ck_attention_pack`, split
    /// across the workers), then the workers run `ck_attention_tile` on the head's query tiles, latest first.
    private static func fusedAttend(shape: AttentionShape, query: UnsafePointer<Float>, queryStride: Int, count: Int,
                                    firstPosition: Int, kv: KeyValueView, causal: Bool,
                                    documentStart: UnsafePointer<Int32>?,
                                    output: UnsafeMutablePointer<Float>, outputStride: Int,
                                    logSumExp: UnsafeMutablePointer<Float>?, workers: Int, queryBlock qb: Int,
                                    keyBlock kb: Int, kernel: KernelPath) {
        let g = shape.groupSize, hd = shape.headDim
        let (lo, hi, kmin, kmax) = visibleKeys(shape: shape, count: count, firstPosition: firstPosition, kv: kv,
                                               causal: causal, documentStart: documentStart)
        let b0 = kmin == .max ? 0 : kmin / kb, b1 = kmin == .max ? 0 : (kmax + kb - 1) / kb
        let blockFloats = ck_attention_packed_size(1, hd, kb)
        let packed = UnsafeMutablePointer<Float>.allocate(capacity: max(1, (b1 - b0) * blockFloats))
        defer { packed.deallocate() }
        let tiles = (count + qb - 1) / qb
        nonisolated(unsafe) let q = query, out = output, lse = logSumExp, pk = packed
        let ranges = (lo, hi)
        for kvh in 0..<shape.kvHeads {
            let keys = kv.keys + kvh * kv.stride * hd, values = kv.values + kvh * kv.stride * hd
            nonisolated(unsafe) let kp = keys, vp = values
            let blocks = b1 - b0, parts = min(workers, max(1, blocks)), keyCount = kmax
            Parallel.forEach(parts, threads: workers) { w in
                let lo = b0 + blocks * w / parts, hi = b0 + blocks * (w + 1) / parts
                if hi > lo { ck_attention_pack(kp, vp, keyCount, hd, kb, lo, hi, pk + (lo - b0) * blockFloats) }
            }
            Parallel.forEach(min(workers, tiles), threads: workers) { w in
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: ck_attention_scratch(qb * g, hd, kb))
                defer { scratch.deallocate() }
                ranges.0.withUnsafeBufferPointer { lo in ranges.1.withUnsafeBufferPointer { hi in
                    var t = tiles - 1 - w
                    while t >= 0 {
                        let t0 = t * qb, tn = min(qb, count - t0), head0 = kvh * g
                        ck_attention_tile_on(kernel.rawValue, q + t0 * queryStride + head0 * hd, queryStride, tn, g, hd, shape.scale,
                                          pk, b0, lo.baseAddress! + t0, hi.baseAddress! + t0, kb,
                                          out + t0 * outputStride + head0 * hd, outputStride,
                                          lse.map { $0 + t0 * shape.heads + head0 }, shape.heads, scratch)
                        t -= workers
                    }
                }}
            }
        }
    }

    /// Merges two partial attention results over disjoint key sets into the first (the block-merge step of
    /// blockwise and ring attention): with `L = logaddexp(L₁, L₂)`, `O = O₁·e^{L₁−L} + O₂·e^{L₂−L}`.
    ///
    /// - `output`/`other`: `rows × width` row-major (one row per (query, head) pair, `width = headDim`).
    /// - `logSumExp`/`otherLogSumExp`: `rows` values; −∞ marks a row that saw no key.
    public static func mergePartial(output: UnsafeMutablePointer<Float>, logSumExp: UnsafeMutablePointer<Float>,
                                    with other: UnsafePointer<Float>, otherLogSumExp: UnsafePointer<Float>,
                                    rows: Int, width: Int) {
        for r in 0..<rows {
            let a = logSumExp[r], b = otherLogSumExp[r]
            if b == -Float.infinity { continue }
            let o = output + r * width, p = other + r * width
            if a == -Float.infinity {
                o.update(from: p, count: width)
                logSumExp[r] = b
                continue
            }
            let mx = max(a, b)
            let ea = Foundation.exp(a - mx), eb = Foundation.exp(b - mx)
            let s = ea + eb
            let wa = ea / s, wb = eb / s
            for e in 0..<width { o[e] = o[e] * wa + p[e] * wb }
            logSumExp[r] = mx + Foundation.log(s)
        }
    }

    /// Reference attention that materialises the full score matrix in Double (for tests): same arguments as
    /// ``attend(shape:query:queryStride:count:firstPosition:kv:causal:output:outputStride:logSumExp:workers:)``.
    public static func naive(shape: AttentionShape, query: UnsafePointer<Float>, queryStride: Int, count: Int,
                             firstPosition: Int, kv: KeyValueView, causal: Bool = true,
                             documentStart: UnsafePointer<Int32>? = nil,
                             output: UnsafeMutablePointer<Float>, outputStride: Int) {
        let g = shape.groupSize, hd = shape.headDim
        var scores = [Double](repeating: 0, count: kv.count)
        for i in 0..<count {
            let qpos = firstPosition + i
            for h in 0..<shape.heads {
                let kvh = h / g
                let qv = query + i * queryStride + h * hd
                var mx = -Double.infinity
                for k in 0..<kv.count {
                    let kpos = kv.firstPosition + k
                    var visible = !causal || kpos <= qpos
                    if let win = shape.slidingWindow, qpos - kpos >= win { visible = false }
                    if let documentStart, kpos < Int(documentStart[i]) { visible = false }
                    if !visible { scores[k] = -.infinity; continue }
                    let kvec = kv.keys + (kvh * kv.stride + k) * hd
                    var s = 0.0
                    for e in 0..<hd { s += Double(qv[e]) * Double(kvec[e]) }
                    scores[k] = s * Double(shape.scale)
                    mx = max(mx, scores[k])
                }
                let dst = output + i * outputStride + h * hd
                var acc = [Double](repeating: 0, count: hd)
                var sum = 0.0
                if mx > -.infinity {
                    for k in 0..<kv.count where scores[k] > -.infinity {
                        let p = Foundation.exp(scores[k] - mx)
                        sum += p
                        let vvec = kv.values + (kvh * kv.stride + k) * hd
                        for e in 0..<hd { acc[e] += p * Double(vvec[e]) }
                    }
                }
                for e in 0..<hd { dst[e] = sum > 0 ? Float(acc[e] / sum) : 0 }
            }
        }
    }
}
