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
public enum AttentionBackward {
    public static let queryBlock = 64
    public static let keyBlock = 256

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
    public static func accumulate(shape: AttentionShape, query: UnsafePointer<Float>, queryStride: Int, count: Int,
                                  firstPosition: Int, kv: KeyValueView, causal: Bool = true,
                                  documentStart: UnsafePointer<Int32>? = nil,
                                  output: UnsafePointer<Float>, outputStride: Int,
                                  outputGradient: UnsafePointer<Float>, outputGradientStride: Int,
                                  logSumExp: UnsafePointer<Float>,
                                  queryGradient: UnsafeMutablePointer<Float>, queryGradientStride: Int,
                                  keyGradient: UnsafeMutablePointer<Float>, valueGradient: UnsafeMutablePointer<Float>,
                                  workers: Int) {
        guard count > 0, kv.count > 0 else { return }
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
        let args = Args(shape: shape, query: query, queryStride: queryStride, count: count,
                        firstPosition: firstPosition, kv: kv, causal: causal, documentStart: documentStart,
                        output: output, outputStride: outputStride, dOut: outputGradient,
                        dOutStride: outputGradientStride, lse: logSumExp, dq: queryGradient,
                        dqStride: queryGradientStride)
        let taskList = tasks
        DispatchQueue.concurrentPerform(iterations: nWorkers) { w in
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
}
