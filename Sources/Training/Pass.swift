import CKernels
import Foundation
import RoPE
import TensorCore
import Transformer

/// The layer computations of one forward/backward pass over one sequence, with its scratch buffers.
///
/// Layer `l` (transformers' `LlamaDecoderLayer`): `h₁ = rmsnorm(x)·w₁`, `qkv = h₁·W_qkvᵀ + b`, RoPE on q and k,
/// `a = attention(q, k, v)`, `x₂ = x + a·W_oᵀ (+ b_o)`, `h₂ = rmsnorm(x₂)·w₂`, `[g | u] = h₂·W_guᵀ (+ b)`,
/// `y = x₂ + (silu(g) ⊙ u)·W_downᵀ (+ b_down)`. Row-major `[tokens × features]` throughout.
final class Pass {
    let model: TrainableModel
    let p: ParameterStore
    let c: TransformerConfiguration
    let n: Int
    let table: RopeTable
    let documentStart: [Int32]?
    let targets: [Int]
    let workers: Int
    /// Computes each layer's attention (the whole sequence here, or a ring of workers).
    let attention: AttentionStrategy
    // Scratch, reused by every layer (the backward's gradient buffers are allocated on first use).
    let h: Floats, act: Floats, keys: Floats, values: Floats
    lazy var dAct = Floats(n * c.intermediateSize)
    lazy var dGateUp = Floats(n * 2 * c.intermediateSize)
    lazy var dh = Floats(n * c.hiddenSize)
    lazy var dAttn = Floats(n * c.queryWidth)
    lazy var dqkv = Floats(n * fused)
    lazy var dKeys = Floats(c.kvHeads * n * c.headDim)
    lazy var dValues = Floats(c.kvHeads * n * c.headDim)

    init(model: TrainableModel, sequence s: TrainingSequence, attention: AttentionStrategy) {
        self.model = model
        self.attention = attention
        p = model.parameters
        c = model.configuration
        n = s.count
        table = model.rope.current.table(positions: s.positions)
        documentStart = s.documentStart
        targets = s.targets
        workers = model.workers
        h = Floats(n * c.hiddenSize)
        act = Floats(n * c.intermediateSize)
        keys = Floats(c.kvHeads * n * c.headDim)
        values = Floats(c.kvHeads * n * c.headDim)
    }

    var fused: Int { c.queryWidth + 2 * c.kvWidth }

    // MARK: Forward

    /// Fills `tape`'s activations from its input; writes the layer output to `output` when given.
    func forwardLayer(_ l: Int, tape: LayerTape, output: UnsafeMutablePointer<Float>?) throws {
        let d = c.hiddenSize, qw = c.queryWidth, kvw = c.kvWidth, inter = c.intermediateSize, f = fused
        let x = tape.input.pointer
        rmsNorm(x, weight: p.value("\(l).input_norm")!, r: tape.r1.pointer, out: h.pointer)
        LayerOps.linear(h.pointer, rows: n, lda: d, weight: p.value("\(l).qkv")!, outFeatures: f, inFeatures: d,
                        bias: p.value("\(l).qkv_bias"), out: tape.qkv.pointer, ldc: f, workers: workers,
                        engine: .training)
        LayerOps.rotate(tape.qkv.pointer, rows: n, stride: f, heads: c.heads, headDim: c.headDim, table: table)
        LayerOps.rotate(tape.qkv.pointer + qw, rows: n, stride: f, heads: c.kvHeads, headDim: c.headDim, table: table)
        gatherKeysValues(tape.qkv.pointer)
        try withDocumentStart { starts in
            try attention.forward(shape: model.shape, query: tape.qkv.pointer, queryStride: f, count: n,
                                  keys: keys.pointer, values: values.pointer, documentStart: starts,
                                  output: tape.attn.pointer, logSumExp: tape.lse.pointer, workers: workers)
        }
        tape.x2.pointer.update(from: x, count: n * d)
        LayerOps.linear(tape.attn.pointer, rows: n, lda: qw, weight: p.value("\(l).o")!, outFeatures: d,
                        inFeatures: qw, bias: p.value("\(l).o_bias"), out: tape.x2.pointer, ldc: d, accumulate: true,
                        workers: workers, engine: .training)
        rmsNorm(tape.x2.pointer, weight: p.value("\(l).post_norm")!, r: tape.r2.pointer, out: h.pointer)
        LayerOps.linear(h.pointer, rows: n, lda: d, weight: p.value("\(l).gate_up")!, outFeatures: 2 * inter,
                        inFeatures: d, bias: p.value("\(l).gate_up_bias"), out: tape.gateUp.pointer, ldc: 2 * inter,
                        workers: workers, engine: .training)
        _ = kvw
        guard let output else { return }
        swiGLU(tape.gateUp.pointer, into: act.pointer)
        output.update(from: tape.x2.pointer, count: n * d)
        LayerOps.linear(act.pointer, rows: n, lda: inter, weight: p.value("\(l).down")!, outFeatures: d,
                        inFeatures: inter, bias: p.value("\(l).down_bias"), out: output, ldc: d, accumulate: true,
                        workers: workers, engine: .training)
    }

    /// `r[t] = 1/sqrt(mean(x[t]²) + eps)`, `out[t] = w ⊙ (x[t]·r[t])` (transformers' `LlamaRMSNorm`, f32).
    func rmsNorm(_ x: UnsafePointer<Float>, weight w: UnsafePointer<Float>, r: UnsafeMutablePointer<Float>,
                 out: UnsafeMutablePointer<Float>) {
        let d = c.hiddenSize, eps = c.rmsNormEps
        LayerOps.parallelRows(n, workers: workers) { rows in
            for t in rows {
                let row = x + t &* d, o = out + t &* d
                var ss: Float = 0
                for j in 0..<d { ss += row[j] * row[j] }
                let rt = 1 / (ss / Float(d) + eps).squareRoot()
                r[t] = rt
                for j in 0..<d { o[j] = w[j] * (row[j] * rt) }
            }
        }
    }

    /// `act = silu(gate) ⊙ up` for every row of `[gate | up]`.
    func swiGLU(_ gateUp: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        let inter = c.intermediateSize
        LayerOps.parallelRows(n, workers: workers) { rows in
            for t in rows {
                let g = gateUp + t &* 2 &* inter, o = out + t &* inter
                o.update(from: g, count: inter)
                ck_silu_mul(o, g + inter, inter)
            }
        }
    }

    /// Copies k and v out of the `qkv` rows into head-major `[kvHeads][n][headDim]` buffers (the layout
    /// ``KeyValueView`` takes).
    func gatherKeysValues(_ qkv: UnsafePointer<Float>) {
        let hd: Int = c.headDim, qw: Int = c.queryWidth, kvw: Int = c.kvWidth, f: Int = fused, kvHeads: Int = c.kvHeads
        let count: Int = n
        let keys: UnsafeMutablePointer<Float> = keys.pointer, values: UnsafeMutablePointer<Float> = values.pointer
        LayerOps.parallelRows(count, workers: workers) { rows in
            for t in rows {
                let row: UnsafePointer<Float> = qkv + t * f + qw
                for kh in 0..<kvHeads {
                    (keys + (kh * count + t) * hd).update(from: row + kh * hd, count: hd)
                    (values + (kh * count + t) * hd).update(from: row + kvw + kh * hd, count: hd)
                }
            }
        }
    }

    func withDocumentStart<R>(_ body: (UnsafePointer<Int32>?) throws -> R) rethrows -> R {
        guard let documentStart else { return try body(nil) }
        return try documentStart.withUnsafeBufferPointer { try body($0.baseAddress) }
    }

    // MARK: Loss head

    /// Final norm, LM head and cross-entropy over the positions with a target, in chunks of rows. With `dInput`,
    /// writes `∂(lossScale·Σ CE)/∂x` for the last layer's output `x` and adds the LM head's and final norm's
    /// weight gradients.
    func lossHead(_ x: UnsafePointer<Float>, lossScale: Float, dInput: UnsafeMutablePointer<Float>?) -> (loss: Double, tokens: Int) {
        let d = c.hiddenSize, v = c.vocabSize
        let r = Floats(n), hf = Floats(n * d)
        rmsNorm(x, weight: p.value("final_norm")!, r: r.pointer, out: hf.pointer)
        let rows = (0..<n).filter { targets[$0] >= 0 }
        let chunk = max(1, min(rows.count, model.logitBudget / v))
        let logits = Floats(chunk * v), hChunk = Floats(chunk * d), dhChunk = Floats(chunk * d)
        let rowLoss = UnsafeMutablePointer<Double>.allocate(capacity: chunk)
        defer { rowLoss.deallocate() }
        let dhf = Floats(dInput == nil ? 1 : n * d)
        let head = p.value(p.lmHeadName)!, dHead = p.gradient(p.lmHeadName)!
        var total = 0.0
        var start = 0
        while start < rows.count {
            let m = min(chunk, rows.count - start)
            for i in 0..<m { (hChunk.pointer + i * d).update(from: hf.pointer + rows[start + i] * d, count: d) }
            LayerOps.gemm(transB: true, m: m, n: v, k: d, a: hChunk.pointer, lda: d, b: head, ldb: d,
                          c: logits.pointer, ldc: v, workers: workers, engine: .training)
            let first = start
            LayerOps.parallelRows(m, workers: workers) { part in
                for i in part {
                    rowLoss[i] = crossEntropyRow(logits.pointer + i * v, target: targets[rows[first + i]], scale: lossScale)
                }
            }
            for i in 0..<m { total += rowLoss[i] }
            if dInput != nil {
                // dh = P·W_head; dW_head += Pᵀ·h.
                LayerOps.gemm(m: m, n: d, k: v, a: logits.pointer, lda: v, b: head, ldb: d, c: dhChunk.pointer,
                              ldc: d, workers: workers, engine: .training)
                LayerOps.gemm(transA: true, m: v, n: d, k: m, a: logits.pointer, lda: v, b: hChunk.pointer, ldb: d,
                              beta: 1, c: dHead, ldc: d, workers: workers, engine: .training)
                for i in 0..<m { (dhf.pointer + rows[start + i] * d).update(from: dhChunk.pointer + i * d, count: d) }
            }
            start += m
        }
        if let dInput {
            dInput.update(repeating: 0, count: n * d)
            rmsNormBackward(x, r: r.pointer, weight: p.value("final_norm")!, dOut: dhf.pointer, dInput: dInput,
                            dWeight: p.gradient("final_norm")!)
        }
        return (total, rows.count)
    }

    /// Cross-entropy of one logit row against `target` (`logsumexp(z) − z[target]`, in f32 with the max
    /// subtracted, as torch's `cross_entropy`); replaces the row with `scale·(softmax(z) − onehot(target))`.
    func crossEntropyRow(_ z: UnsafeMutablePointer<Float>, target: Int, scale: Float) -> Double {
        let v = c.vocabSize
        var mx = -Float.infinity
        for j in 0..<v { mx = max(mx, z[j]) }
        let picked = z[target]
        for j in 0..<v { z[j] -= mx }
        ck_exp(z, z, v)
        var sum: Float = 0
        for j in 0..<v { sum += z[j] }
        let lse = mx + Foundation.log(sum)
        let k = scale / sum
        for j in 0..<v { z[j] *= k }
        z[target] -= scale
        return Double(lse - picked)
    }

    // MARK: Backward

    /// Given `gradient = ∂L/∂y` for the layer's output, replaces it with `∂L/∂x` for its input and adds the layer's
    /// weight gradients.
    func backwardLayer(_ l: Int, tape: LayerTape, gradient dy: UnsafeMutablePointer<Float>) throws {
        let d = c.hiddenSize, qw = c.queryWidth, inter = c.intermediateSize, f = fused
        let hd = c.headDim, w = workers
        // MLP: y = x₂ + act·W_downᵀ.
        swiGLU(tape.gateUp.pointer, into: act.pointer)
        weightGradient(dy, outFeatures: d, input: act.pointer, inFeatures: inter, slot: "\(l).down")
        LayerOps.gemm(m: n, n: inter, k: d, a: dy, lda: d, b: p.value("\(l).down")!, ldb: inter, c: dAct.pointer,
                      ldc: inter, workers: w, engine: .training)
        swiGLUBackward(tape.gateUp.pointer, dAct: dAct.pointer, into: dGateUp.pointer)
        rmsNormOutput(tape.x2.pointer, r: tape.r2.pointer, weight: p.value("\(l).post_norm")!)
        weightGradient(dGateUp.pointer, outFeatures: 2 * inter, input: h.pointer, inFeatures: d, slot: "\(l).gate_up")
        LayerOps.gemm(m: n, n: d, k: 2 * inter, a: dGateUp.pointer, lda: 2 * inter, b: p.value("\(l).gate_up")!,
                      ldb: d, c: dh.pointer, ldc: d, workers: w, engine: .training)
        // dy now accumulates ∂L/∂x₂ (residual + post-attention norm).
        rmsNormBackward(tape.x2.pointer, r: tape.r2.pointer, weight: p.value("\(l).post_norm")!, dOut: dh.pointer,
                        dInput: dy, dWeight: p.gradient("\(l).post_norm")!)
        // Attention output projection: x₂ = x + attn·W_oᵀ.
        weightGradient(dy, outFeatures: d, input: tape.attn.pointer, inFeatures: qw, slot: "\(l).o")
        LayerOps.gemm(m: n, n: qw, k: d, a: dy, lda: d, b: p.value("\(l).o")!, ldb: qw, c: dAttn.pointer, ldc: qw,
                      workers: w, engine: .training)
        // Attention.
        gatherKeysValues(tape.qkv.pointer)
        // The attention backward adds to its gradients.
        dqkv.zero(); dKeys.zero(); dValues.zero()
        try withDocumentStart { starts in
            try attention.backward(shape: model.shape, query: tape.qkv.pointer, queryStride: f, count: n,
                                   keys: keys.pointer, values: values.pointer, documentStart: starts,
                                   output: tape.attn.pointer, outputGradient: dAttn.pointer,
                                   logSumExp: tape.lse.pointer, queryGradient: dqkv.pointer, queryGradientStride: f,
                                   keyGradient: dKeys.pointer, valueGradient: dValues.pointer, workers: w)
        }
        scatterKeyValueGradients(into: dqkv.pointer)
        // RoPE's transpose on dq and dk.
        LayerOps.rotateTransposed(dqkv.pointer, rows: n, stride: f, heads: c.heads, headDim: hd, table: table)
        LayerOps.rotateTransposed(dqkv.pointer + qw, rows: n, stride: f, heads: c.kvHeads, headDim: hd, table: table)
        // qkv projection and input norm.
        rmsNormOutput(tape.input.pointer, r: tape.r1.pointer, weight: p.value("\(l).input_norm")!)
        weightGradient(dqkv.pointer, outFeatures: f, input: h.pointer, inFeatures: d, slot: "\(l).qkv")
        LayerOps.gemm(m: n, n: d, k: f, a: dqkv.pointer, lda: f, b: p.value("\(l).qkv")!, ldb: d, c: dh.pointer,
                      ldc: d, workers: w, engine: .training)
        rmsNormBackward(tape.input.pointer, r: tape.r1.pointer, weight: p.value("\(l).input_norm")!, dOut: dh.pointer,
                        dInput: dy, dWeight: p.gradient("\(l).input_norm")!)
    }

    /// Copies the head-major key/value gradients (`dKeys`, `dValues`) into the k and v columns of `qkv`-shaped rows.
    func scatterKeyValueGradients(into dqkv: UnsafeMutablePointer<Float>) {
        let hd: Int = c.headDim, qw: Int = c.queryWidth, kvw: Int = c.kvWidth, f: Int = fused, kvHeads: Int = c.kvHeads
        let count: Int = n
        let dk: UnsafePointer<Float> = UnsafePointer(dKeys.pointer), dv: UnsafePointer<Float> = UnsafePointer(dValues.pointer)
        LayerOps.parallelRows(count, workers: workers) { rows in
            for t in rows {
                let row: UnsafeMutablePointer<Float> = dqkv + t * f + qw
                for kh in 0..<kvHeads {
                    (row + kh * hd).update(from: dk + (kh * count + t) * hd, count: hd)
                    (row + kvw + kh * hd).update(from: dv + (kh * count + t) * hd, count: hd)
                }
            }
        }
    }

    /// Recomputes `h = w ⊙ (x·r)` into the shared scratch.
    func rmsNormOutput(_ x: UnsafePointer<Float>, r: UnsafePointer<Float>, weight w: UnsafePointer<Float>) {
        let d = c.hiddenSize, h = h.pointer
        LayerOps.parallelRows(n, workers: workers) { rows in
            for t in rows {
                let row = x + t &* d, o = h + t &* d, rt = r[t]
                for j in 0..<d { o[j] = w[j] * (row[j] * rt) }
            }
        }
    }

    /// For `y = w ⊙ x·r`, `r = (mean(x²) + eps)^(−1/2)`: adds `∂L/∂x = r·g − x·r³·(g·x)/d` (with `g = dy ⊙ w`) to
    /// `dInput` and `Σ_t dy ⊙ x·r` to `dWeight`.
    func rmsNormBackward(_ x: UnsafePointer<Float>, r: UnsafePointer<Float>, weight w: UnsafePointer<Float>,
                         dOut dy: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>,
                         dWeight: UnsafeMutablePointer<Float>) {
        let d = c.hiddenSize, count = n
        // ∂L/∂x, rows split across workers.
        LayerOps.parallelRows(count, workers: workers) { rows in
            for t in rows {
                let row = x + t &* d, g = dy + t &* d, dst = dInput + t &* d, rt = r[t]
                var dot: Float = 0
                for j in 0..<d { dot += g[j] * w[j] * row[j] }
                let k = rt * rt * rt * dot / Float(d)
                for j in 0..<d { dst[j] += rt * (g[j] * w[j]) - row[j] * k }
            }
        }
        // ∂L/∂w, columns split across workers, each summed over the rows in order.
        LayerOps.parallelRows(d, workers: workers, grain: 16) { cols in
            for t in 0..<count {
                let row = x + t &* d, g = dy + t &* d, rt = r[t]
                for j in cols { dWeight[j] += g[j] * (row[j] * rt) }
            }
        }
    }

    /// `act = silu(g)·u`: `∂/∂g = dAct·u·σ(g)·(1 + g·(1 − σ(g)))`, `∂/∂u = dAct·silu(g)`, written as `[dg | du]`.
    func swiGLUBackward(_ gateUp: UnsafePointer<Float>, dAct: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        let inter = c.intermediateSize
        LayerOps.parallelRows(n, workers: workers) { rows in
            for t in rows {
                let g = gateUp + t &* 2 &* inter, u = g + inter, da = dAct + t &* inter
                let dg = out + t &* 2 &* inter, du = dg + inter
                // σ(g) = 1/(1 + exp(−g)), the exponentials vectorised (written to dg first).
                for j in 0..<inter { dg[j] = -g[j] }
                ck_exp(dg, dg, inter)
                for j in 0..<inter {
                    let s = 1 / (1 + dg[j])
                    du[j] = da[j] * g[j] * s
                    dg[j] = da[j] * u[j] * s * (1 + g[j] * (1 - s))
                }
            }
        }
    }

    /// For `y = x·Wᵀ + b` (`dy`: `n × outFeatures`, `x`: `n × inFeatures`): `dW += dyᵀ·x`, `db += Σ_t dy[t]`.
    func weightGradient(_ dy: UnsafePointer<Float>, outFeatures: Int, input: UnsafePointer<Float>, inFeatures: Int,
                        slot: String) {
        LayerOps.gemm(transA: true, m: outFeatures, n: inFeatures, k: n, a: dy, lda: outFeatures, b: input,
                      ldb: inFeatures, beta: 1, c: p.gradient(slot)!, ldc: inFeatures, workers: workers,
                      engine: .training)
        guard let db = p.gradient(slot + "_bias") else { return }
        for t in 0..<n {
            let row = dy + t &* outFeatures
            for j in 0..<outFeatures { db[j] += row[j] }
        }
    }
}
