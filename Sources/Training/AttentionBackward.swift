import CKernels
import Foundation
import TensorCore
import Transformer

/// The backward pass of blockwise attention, FlashAttention-2 style: probabilities are recomputed block by block
/// from the forward's saved log-sum-exp, so no `count × keys` matrix ever exists.
///
/// For one query row `q` (head `h`, key/value head `h / group`) with final log-sum-exp `L`, output `o` and output
/// gradient `dO`, and a key block `K`, `V`:
/// `P = exp(q·Kᵀ·scale − L)` (0 where masked), `D = dO·o`, `dP = dO·Vᵀ`, `dS = P ⊙ (dP − D)`,
/// `dq += dS·K·scale`, `dK += dSᵀ·q·scale`, `dV += Pᵀ·dO` — the gradient of `softmax(QKᵀ·scale + mask)·V` as torch
/// autograd computes it for transformers' eager/sdpa attention. Because each key block's contribution is exact given
/// the *final* `L`, the call can cover any subset of the keys (one ring-attention block) and the results add up.
///
/// Kernels (a ``KernelPath``), chosen at run time:
/// - fused (AVX2+FMA or AVX-512, `headDim` a multiple of 8): `ck_attention_backward_tile` per (key/value head, query
///   tile) with the head's keys/values packed once per call — `Sᵀ = K·Qᵀ`, `dPᵀ = V·dOᵀ` and `dQ += dS·K` on the
///   forward attention's register tiles, `dV`/`dK` in 6 keys × 16 (AVX-512: × 64) channels tiles, probabilities in
///   base 2.
/// - portable: five single-threaded BLAS GEMMs per (query tile, key block) around `ck_exp`.
/// All compute the same gradients to f32 rounding.
public enum AttentionBackward {
    public static let queryBlock = 64
    public static let keyBlock = 256
    /// Query positions per tile and keys per block of the fused kernel.
    public static let fusedQueryBlock = 64
    public static let fusedKeyBlock = 96

    /// The kernel path the process uses for heads of `headDim`: the fastest this CPU runs (the fused kernels need
    /// `headDim` % 8 == 0), at most the engine's ``KernelPath/active`` (`LONGCTX_KERNELS`). On `.portable` the
    /// backward runs on BLAS tiles, as the forward does.
    public static func kernel(headDim: Int) -> KernelPath {
        KernelPath(rawValue: min(ck_attention_backward_level(headDim), KernelPath.active.rawValue))!
    }

    /// Whether this CPU runs the backward's fused kernel of `path` for heads of `headDim` (`.portable` always).
    public static func runs(_ path: KernelPath, headDim: Int) -> Bool {
        path.rawValue <= ck_attention_backward_level(headDim)
    }

    /// Accumulates the gradients of attention for `count` queries at positions `firstPosition ..< firstPosition+count`
    /// against the keys/values in `kv` (positions `kv.firstPosition ..< kv.firstPosition + kv.count`).
    ///
    /// - `query`: `count × (heads·headDim)` (row stride `queryStride`), after RoPE, as given to the forward.
    /// - `output`, `outputGradient`: the forward's output and the loss gradient with respect to it, same layout
    ///   (row strides `outputStride`, `outputGradientStride`).
    /// - `logSumExp`: `count × heads`, the forward's *final* (merged over every key block) log-sum-exp, natural log.
    /// - `causal`, `documentStart` and `shape.slidingWindow`: the same mask as the forward
    ///   (``BlockwiseAttention/attend(shape:query:queryStride:count:firstPosition:kv:causal:documentStart:output:outputStride:logSumExp:workers:queryBlock:keyBlock:fused:)``).
    /// - `queryGradient`: `count × (heads·headDim)` (row stride `queryGradientStride`), added to.
    /// - `keyGradient`, `valueGradient`: head-major like the keys (`[kvHeads][kv.stride][headDim]`), added to for
    ///   key indices `0 ..< kv.count`.
    /// - `workers`: parallel workers (query tiles are split statically; each keeps private key/value gradients that
    ///   are summed in worker order, so results do not depend on timing).
    /// - `kernel`: the implementation (`nil`: ``kernel(headDim:)``; one the CPU cannot run falls back to the
    ///   fastest it can).
    public static func accumulate(shape: AttentionShape, query: UnsafePointer<Float>, queryStride: Int, count: Int,
                                  firstPosition: Int, kv: KeyValueView, causal: Bool = true,
                                  documentStart: UnsafePointer<Int32>? = nil,
                                  output: UnsafePointer<Float>, outputStride: Int,
                                  outputGradient: UnsafePointer<Float>, outputGradientStride: Int,
                                  logSumExp: UnsafePointer<Float>,
                                  queryGradient: UnsafeMutablePointer<Float>, queryGradientStride: Int,
                                  keyGradient: UnsafeMutablePointer<Float>, valueGradient: UnsafeMutablePointer<Float>,
                                  workers: Int, kernel: KernelPath? = nil) {
        guard count > 0, kv.count > 0 else { return }
        let args = Args(shape: shape, query: query, queryStride: queryStride, count: count,
                        firstPosition: firstPosition, kv: kv, causal: causal, documentStart: documentStart,
                        output: output, outputStride: outputStride, dOut: outputGradient,
                        dOutStride: outputGradientStride, lse: logSumExp, dq: queryGradient,
                        dqStride: queryGradientStride)
        let level = Int((kernel.map { min($0.rawValue, ck_attention_backward_level(shape.headDim)) }
            ?? Self.kernel(headDim: shape.headDim).rawValue))
        if level > 0 {
            args.fused(keyGradient: keyGradient, valueGradient: valueGradient, workers: max(1, workers), level: level)
            return
        }
        let tiles = (count + queryBlock - 1) / queryBlock
        var tasks: [(head: Int, tile: Int)] = []
        for tile in stride(from: tiles - 1, through: 0, by: -1) {
            for h in 0..<shape.kvHeads { tasks.append((h, tile)) }
        }
        let nWorkers = max(1, min(workers, tasks.count))
        let kvFloats = shape.kvHeads * kv.stride * shape.headDim
        // Worker 0 accumulates straight into the caller's buffers; the others into private ones summed afterwards.
        let extra = (1..<nWorkers).map { _ -> (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) in
            let k = UnsafeMutablePointer<Float>.allocate(capacity: kvFloats)
            let v = UnsafeMutablePointer<Float>.allocate(capacity: kvFloats)
            k.initialize(repeating: 0, count: kvFloats)
            v.initialize(repeating: 0, count: kvFloats)
            return (k, v)
        }
        defer { extra.forEach { $0.0.deallocate(); $0.1.deallocate() } }
        nonisolated(unsafe) let dk = keyGradient, dv = valueGradient, buffers = extra
        let taskList = tasks
        Parallel.forEach(nWorkers, threads: nWorkers) { w in
            let dkw = w == 0 ? dk : buffers[w - 1].0, dvw = w == 0 ? dv : buffers[w - 1].1
            var scratch = Scratch(rows: AttentionBackward.queryBlock * shape.groupSize, headDim: shape.headDim,
                                  keyBlock: AttentionBackward.keyBlock)
            defer { scratch.free() }
            var t = w
            while t < taskList.count {
                args.run(head: taskList[t].head, tile: taskList[t].tile, dk: dkw, dv: dvw, scratch: &scratch)
                t += nWorkers
            }
        }
        // Only key indices 0..<kv.count of each head are summed: the caller's buffers may be a window of a larger one.
        for (k, v) in extra {
            for h in 0..<shape.kvHeads {
                let base = h * kv.stride * shape.headDim
                for i in base..<(base + kv.count * shape.headDim) { dk[i] += k[i]; dv[i] += v[i] }
            }
        }
    }

    /// Per-worker tile buffers.
    struct Scratch {
        let q, dO, dQ, s, dP: UnsafeMutablePointer<Float>
        let lse, delta: UnsafeMutablePointer<Float>
        let lo, hi: UnsafeMutablePointer<Int>
        init(rows: Int, headDim hd: Int, keyBlock kb: Int) {
            q = .allocate(capacity: rows * hd); dO = .allocate(capacity: rows * hd); dQ = .allocate(capacity: rows * hd)
            s = .allocate(capacity: rows * kb); dP = .allocate(capacity: rows * kb)
            lse = .allocate(capacity: rows); delta = .allocate(capacity: rows)
            lo = .allocate(capacity: rows); hi = .allocate(capacity: rows)
        }
        func free() {
            [q, dO, dQ, s, dP, lse, delta].forEach { $0.deallocate() }
            lo.deallocate(); hi.deallocate()
        }
    }

    /// The arguments of one call, shared by the workers.
    struct Args: @unchecked Sendable {
        let shape: AttentionShape
        let query: UnsafePointer<Float>, queryStride: Int, count: Int, firstPosition: Int
        let kv: KeyValueView, causal: Bool, documentStart: UnsafePointer<Int32>?
        let output: UnsafePointer<Float>, outputStride: Int
        let dOut: UnsafePointer<Float>, dOutStride: Int
        let lse: UnsafePointer<Float>
        let dq: UnsafeMutablePointer<Float>, dqStride: Int

        /// One (key/value head, query tile) task: rows are (query i, head j of the group) = i·group + j.
        func run(head kvh: Int, tile: Int, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
                 scratch sc: inout Scratch) {
            let g = shape.groupSize, hd = shape.headDim, qb = AttentionBackward.queryBlock
            let kb = AttentionBackward.keyBlock
            let t0 = tile * qb, tn = min(qb, count - t0), rows = tn * g
            var kmin = Int.max, kmax = 0
            for i in 0..<tn {
                let qpos = firstPosition + t0 + i
                var end = kv.count
                if causal { end = min(end, qpos - kv.firstPosition + 1) }
                end = max(0, end)
                var begin = 0
                if let win = shape.slidingWindow { begin = max(0, qpos - win + 1 - kv.firstPosition) }
                if let documentStart { begin = max(begin, Int(documentStart[t0 + i]) - kv.firstPosition) }
                begin = min(begin, end)
                for j in 0..<g {
                    let r = i * g + j, head = kvh * g + j
                    sc.lo[r] = begin; sc.hi[r] = end
                    (sc.q + r * hd).update(from: query + (t0 + i) * queryStride + head * hd, count: hd)
                    let go = dOut + (t0 + i) * dOutStride + head * hd, o = output + (t0 + i) * outputStride + head * hd
                    (sc.dO + r * hd).update(from: go, count: hd)
                    var d: Float = 0
                    for e in 0..<hd { d += go[e] * o[e] }
                    sc.delta[r] = d
                    sc.lse[r] = lse[(t0 + i) * shape.heads + head]
                }
                if end > begin { kmin = min(kmin, begin); kmax = max(kmax, end) }
            }
            guard kmin < kmax else { return }
            sc.dQ.update(repeating: 0, count: rows * hd)
            let kBase = kv.keys + kvh * kv.stride * hd, vBase = kv.values + kvh * kv.stride * hd
            let dkBase = dk + kvh * kv.stride * hd, dvBase = dv + kvh * kv.stride * hd
            var k0 = kmin
            while k0 < kmax {
                let nb = min(kb, kmax - k0)
                // S = Q·Kᵀ·scale, then P = exp(S − L) inside each row's visible range, 0 elsewhere.
                BLAS.sgemm(transB: true, m: rows, n: nb, k: hd, alpha: shape.scale, a: sc.q, lda: hd,
                           b: kBase + k0 * hd, ldb: hd, beta: 0, c: sc.s, ldc: nb)
                for r in 0..<rows {
                    let row = sc.s + r * nb
                    let a = min(nb, max(0, sc.lo[r] - k0)), b = max(a, min(nb, sc.hi[r] - k0))
                    let l = sc.lse[r]
                    if b > a && l > -Float.infinity {
                        for j in a..<b { row[j] -= l }
                        ck_exp(row + a, row + a, b - a)
                    } else {
                        row.update(repeating: 0, count: nb)
                        continue
                    }
                    if a > 0 { row.update(repeating: 0, count: a) }
                    if b < nb { (row + b).update(repeating: 0, count: nb - b) }
                }
                // dV += Pᵀ·dO
                BLAS.sgemm(transA: true, m: nb, n: hd, k: rows, a: sc.s, lda: nb, b: sc.dO, ldb: hd,
                           beta: 1, c: dvBase + k0 * hd, ldc: hd)
                // dP = dO·Vᵀ; dS = P ⊙ (dP − D)
                BLAS.sgemm(transB: true, m: rows, n: nb, k: hd, a: sc.dO, lda: hd, b: vBase + k0 * hd, ldb: hd,
                           beta: 0, c: sc.dP, ldc: nb)
                for r in 0..<rows {
                    let p = sc.s + r * nb, dp = sc.dP + r * nb, d = sc.delta[r]
                    for j in 0..<nb { dp[j] = p[j] * (dp[j] - d) }
                }
                // dQ += dS·K·scale; dK += dSᵀ·Q·scale
                BLAS.sgemm(m: rows, n: hd, k: nb, alpha: shape.scale, a: sc.dP, lda: nb, b: kBase + k0 * hd, ldb: hd,
                           beta: 1, c: sc.dQ, ldc: hd)
                BLAS.sgemm(transA: true, m: nb, n: hd, k: rows, alpha: shape.scale, a: sc.dP, lda: nb, b: sc.q,
                           ldb: hd, beta: 1, c: dkBase + k0 * hd, ldc: hd)
                k0 += nb
            }
            for i in 0..<tn {
                for j in 0..<g {
                    let src = sc.dQ + (i * g + j) * hd
                    let dst = dq + (t0 + i) * dqStride + (kvh * g + j) * hd
                    for e in 0..<hd { dst[e] += src[e] }
                }
            }
        }
    }

    /// Per query, the key indices it sees: `lo[i] ..< hi[i]` (causal limit, sliding window, document start), and
    /// the union `kmin ..< kmax` over all queries (empty: `kmin ≥ kmax`).
    static func keyRanges(_ a: Args) -> (lo: [Int32], hi: [Int32], kmin: Int, kmax: Int) {
        var lo = [Int32](repeating: 0, count: a.count), hi = [Int32](repeating: 0, count: a.count)
        var kmin = Int.max, kmax = 0
        for i in 0..<a.count {
            let qpos = a.firstPosition + i
            var end = a.kv.count
            if a.causal { end = min(end, qpos - a.kv.firstPosition + 1) }
            end = max(0, end)
            var begin = 0
            if let win = a.shape.slidingWindow { begin = max(0, qpos - win + 1 - a.kv.firstPosition) }
            if let starts = a.documentStart { begin = max(begin, Int(starts[i]) - a.kv.firstPosition) }
            begin = min(begin, end)
            lo[i] = Int32(clamping: begin)
            hi[i] = Int32(clamping: end)
            if end > begin { kmin = min(kmin, begin); kmax = max(kmax, end) }
        }
        return (lo, hi, kmin, kmax)
    }
}

extension AttentionBackward.Args {
    /// The fused path: per key/value head, the visible keys/values are packed once (split across the workers), then
    /// worker `w` runs query tiles `T−1−w, T−1−w−W, …` (latest, costliest first). Worker 0 adds its key/value
    /// gradients straight into the caller's buffers, the others into private ones added afterwards in worker order.
    func fused(keyGradient: UnsafeMutablePointer<Float>, valueGradient: UnsafeMutablePointer<Float>, workers: Int,
               level: Int) {
        let g = shape.groupSize, hd = shape.headDim
        let qb = AttentionBackward.fusedQueryBlock, kb = AttentionBackward.fusedKeyBlock
        let (lo, hi, kmin, kmax) = AttentionBackward.keyRanges(self)
        guard kmin < kmax else { return }
        let b0 = kmin / kb, b1 = (kmax + kb - 1) / kb, blockFloats = ck_attention_backward_packed_size(1, hd, kb)
        let tiles = (count + qb - 1) / qb, nWorkers = min(workers, tiles)
        let headFloats = kmax * hd, scratchFloats = ck_attention_backward_scratch(qb * g, hd, kb)
        let packed = UnsafeMutablePointer<Float>.allocate(capacity: (b1 - b0) * blockFloats)
        let privateGradients = UnsafeMutablePointer<Float>.allocate(capacity: max(1, (nWorkers - 1) * 2 * headFloats))
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: nWorkers * scratchFloats)
        defer { packed.deallocate(); privateGradients.deallocate(); scratch.deallocate() }
        nonisolated(unsafe) let pk = packed, priv = privateGradients, sc = scratch
        nonisolated(unsafe) let dkAll = keyGradient, dvAll = valueGradient
        let a = self
        lo.withUnsafeBufferPointer { loBuffer in hi.withUnsafeBufferPointer { hiBuffer in
            nonisolated(unsafe) let lo = loBuffer.baseAddress!, hi = hiBuffer.baseAddress!
            for kvh in 0..<shape.kvHeads {
                let headOffset = kvh * kv.stride * hd
                nonisolated(unsafe) let keys = kv.keys + headOffset, values = kv.values + headOffset
                let blocks = b1 - b0, parts = min(workers, blocks)
                Parallel.forEach(parts, threads: parts) { w in
                    let first = b0 + blocks * w / parts, last = b0 + blocks * (w + 1) / parts
                    if last > first {
                        ck_attention_backward_pack(keys, values, kmax, hd, kb, first, last, pk + (first - b0) * blockFloats)
                    }
                }
                priv.update(repeating: 0, count: (nWorkers - 1) * 2 * headFloats)
                Parallel.forEach(nWorkers, threads: nWorkers) { w in
                    let dk = w == 0 ? dkAll + headOffset : priv + (w - 1) * 2 * headFloats
                    let dv = w == 0 ? dvAll + headOffset : dk + headFloats
                    var t = tiles - 1 - w
                    while t >= 0 {
                        let t0 = t * qb, tn = min(qb, a.count - t0), head0 = kvh * g
                        ck_attention_backward_tile(a.query + t0 * a.queryStride + head0 * hd, a.queryStride,
                                                   a.output + t0 * a.outputStride + head0 * hd, a.outputStride,
                                                   a.dOut + t0 * a.dOutStride + head0 * hd, a.dOutStride,
                                                   a.lse + t0 * a.shape.heads + head0, a.shape.heads, tn, g, hd,
                                                   a.shape.scale, pk, b0, lo + t0, hi + t0, kb,
                                                   a.dq + t0 * a.dqStride + head0 * hd, a.dqStride, dk, dv,
                                                   sc + w * scratchFloats, Int32(level))
                        t -= nWorkers
                    }
                }
                for w in 1..<max(1, nWorkers) {
                    let dk = priv + (w - 1) * 2 * headFloats, dv = dk + headFloats
                    let dkHead = dkAll + headOffset, dvHead = dvAll + headOffset
                    for i in 0..<headFloats { dkHead[i] += dk[i] }
                    for i in 0..<headFloats { dvHead[i] += dv[i] }
                }
            }
        }}
    }
}
