import CKernels
import Foundation
import TensorCore

// AdamW, global-norm gradient clipping and learning-rate schedules over flat f32 buffers.
//
// The trainer keeps every trainable parameter in one contiguous f32 buffer split into `ParameterSlice`s (one per
// torch parameter tensor, e.g. `model.layers.0.self_attn.q_proj.weight`), and the gradients in a buffer of the same
// layout. The routines here reproduce PyTorch's CPU arithmetic operation by operation (see each doc comment), so
// that a run agrees with `torch.optim.AdamW` + `clip_grad_norm_` + `LambdaLR` to a few f32 ulps per step.

/// One parameter tensor inside the flat parameter buffer: elements `offset ..< offset + count`.
public struct ParameterSlice: Sendable, Hashable, Codable {
    /// The Hugging Face parameter name (`model.norm.weight`).
    public var name: String
    public var offset: Int
    public var count: Int
    /// Whether AdamW's weight decay applies to this tensor (false: a parameter group with `weight_decay = 0`).
    public var decays: Bool

    public init(name: String, offset: Int, count: Int, decays: Bool) {
        self.name = name
        self.offset = offset
        self.count = count
        self.decays = decays
    }

    public var range: Range<Int> { offset ..< offset + count }

    /// Consecutive slices for tensors of `counts` elements, in order, starting at offset 0. `decays` decides per name;
    /// the default is Hugging Face Trainer's rule (`AdamW.huggingFaceDecays`): no decay for biases and norm weights.
    public static func contiguous(_ tensors: [(name: String, count: Int)],
                                  decays: (String) -> Bool = AdamW.huggingFaceDecays) -> [ParameterSlice] {
        var offset = 0
        return tensors.map { t in
            defer { offset += t.count }
            return ParameterSlice(name: t.name, offset: offset, count: t.count, decays: decays(t.name))
        }
    }

    /// Checks that `slices` tile `0 ..< total` in order without gaps or overlaps.
    static func checkTiling(_ slices: [ParameterSlice], total: Int) {
        var next = 0
        for s in slices {
            precondition(s.offset == next && s.count >= 0,
                         "parameter slice \(s.name) starts at \(s.offset), expected \(next) (slices must tile the buffer in order)")
            next = s.range.upperBound
        }
        precondition(next == total, "parameter slices cover \(next) elements, the buffer has \(total)")
    }
}

/// AdamW's hyper-parameters, with `torch.optim.AdamW`'s defaults.
public struct AdamWOptions: Sendable, Equatable, Codable {
    /// The peak learning rate (`lr`); the schedule multiplies it per step.
    public var learningRate: Double
    public var beta1: Double
    public var beta2: Double
    public var eps: Double
    public var weightDecay: Double

    public init(learningRate: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8,
                weightDecay: Double = 1e-2) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
    }
}

/// AdamW exactly as `torch.optim.AdamW` (torch 2.13, CPU, default single-tensor path, `amsgrad=False`,
/// `maximize=False`), over a flat f32 parameter buffer split into `ParameterSlice`s.
///
/// Per element, for step `t` (1-based, after the increment) and learning rate `lr` (Python-float arithmetic in
/// Double, then every tensor operation in f32 as torch does it):
/// ```
/// p ← p · f32(1 − lr·wd)                      (only slices with `decays`; torch skips groups with wd = 0)
/// m ← lerp(m, g, f32(1 − β1))                 (torch's lerp: fma(w, g − m, m) for |w| < 0.5, else fma(w − 1, g − m, g))
/// v ← fma(f32(1 − β2)·g, g, v · f32(β2))      (mul_ then addcmul_)
/// denom ← sqrt(v) / f32(sqrt(1 − β2^t)) + f32(eps)
/// p ← p + (f32(−lr / (1 − β1^t)) · m) / denom (addcdiv_)
/// ```
/// The loop is `ck_adamw_update` (CKernels: AVX2+FMA or portable C, identical results), one pass over p, g, m, v,
/// with the fused multiply-adds torch's CPU kernels use (checked bit for bit against torch's `lerp_` and `addcmul_`).
/// torch's vectorised `sqrt` is not always correctly rounded (1 ulp off for ~0.7% of inputs on AVX-512), ours is,
/// so results agree with torch to about 1 ulp per step rather than bit for bit.
public struct AdamW: Sendable {
    public var options: AdamWOptions
    /// The parameter layout; slices tile `0 ..< parameterCount`.
    public let slices: [ParameterSlice]
    /// Optimizer steps taken (torch's `state["step"]`).
    public private(set) var step: Int
    /// First moments (`exp_avg`), same layout as the parameters.
    public private(set) var m: [Float]
    /// Second moments (`exp_avg_sq`), same layout as the parameters.
    public private(set) var v: [Float]

    public var parameterCount: Int { m.count }

    /// A fresh optimizer (zero moments, step 0) for parameters laid out as `slices`.
    public init(slices: [ParameterSlice], options: AdamWOptions = AdamWOptions()) {
        let total = slices.last.map { $0.range.upperBound } ?? 0
        ParameterSlice.checkTiling(slices, total: total)
        self.options = options
        self.slices = slices
        step = 0
        m = [Float](repeating: 0, count: total)
        v = [Float](repeating: 0, count: total)
    }

    /// An optimizer restored from a checkpoint: `step` steps taken, moments `m` and `v`.
    public init(slices: [ParameterSlice], options: AdamWOptions, step: Int, m: [Float], v: [Float]) {
        self.init(slices: slices, options: options)
        precondition(m.count == parameterCount && v.count == parameterCount,
                     "AdamW moments have \(m.count)/\(v.count) elements, the parameters \(parameterCount)")
        precondition(step >= 0, "AdamW step must be ≥ 0")
        self.step = step
        self.m = m
        self.v = v
    }

    /// Hugging Face Trainer's default weight-decay rule (`Trainer.get_decay_parameter_names`): a parameter decays
    /// unless its lower-cased name contains `bias`, `layernorm` or `rmsnorm`, has a dotted component `norm`, or a
    /// component ending in `_norm` (`model.norm.weight`, `input_layernorm.weight`, `q_norm.weight`, `q_proj.bias`).
    public static func huggingFaceDecays(_ name: String) -> Bool {
        let lower = name.lowercased()
        if lower.contains("bias") || lower.contains("layernorm") || lower.contains("rmsnorm") { return false }
        return !lower.split(separator: ".", omittingEmptySubsequences: false)
            .contains { $0 == "norm" || $0.hasSuffix("_norm") }
    }

    /// One optimizer step (`optimizer.step()`) at learning rate `learningRate` (the scheduled value,
    /// `LearningRateSchedule.learningRate(at:)`). `parameters` and `gradients` have the slices' layout.
    /// `threads` > 1 splits the buffer across that many threads (results are identical for any count).
    public mutating func update(parameters: UnsafeMutableBufferPointer<Float>, gradients: UnsafeBufferPointer<Float>,
                                learningRate: Double, threads: Int = 1) {
        precondition(parameters.count == parameterCount && gradients.count == parameterCount,
                     "AdamW.update: \(parameters.count) parameters and \(gradients.count) gradients, expected \(parameterCount)")
        step += 1
        let k = Self.constants(options, step: step, learningRate: learningRate)
        let pieces = Self.pieces(slices, threads: threads)
        let p = parameters.baseAddress, g = gradients.baseAddress
        m.withUnsafeMutableBufferPointer { mb in
            v.withUnsafeMutableBufferPointer { vb in
                nonisolated(unsafe) let mp = mb.baseAddress, vp = vb.baseAddress, p = p, g = g
                let body: @Sendable (Int) -> Void = { part in
                    var k = k
                    for (range, decays) in pieces[part] where !range.isEmpty {
                        let o = range.lowerBound
                        ck_adamw_update(p! + o, g! + o, mp! + o, vp! + o, range.count, &k, decays && k.decay != 1 ? 1 : 0)
                    }
                }
                Parallel.forEach(pieces.count, threads: pieces.count, body)
            }
        }
    }

    /// `update` over Swift arrays.
    public mutating func update(parameters: inout [Float], gradients: [Float], learningRate: Double, threads: Int = 1) {
        parameters.withUnsafeMutableBufferPointer { p in
            gradients.withUnsafeBufferPointer { g in
                update(parameters: p, gradients: g, learningRate: learningRate, threads: threads)
            }
        }
    }

    /// The scalars of step `step` at learning rate `lr`, each rounded to f32 where torch passes a Python float to an
    /// f32 tensor op (Python's own arithmetic in f64 before that, glibc `pow` as Python's `**`).
    static func constants(_ o: AdamWOptions, step: Int, learningRate lr: Double) -> ck_adamw_step {
        let t = Double(step)
        let w = Float(1 - o.beta1)
        // torch's lerp: coefficient w from the start when |w| < 0.5, else w − 1 from the end.
        let fromEnd = !(abs(w) < 0.5)
        return ck_adamw_step(decay: Float(1 - lr * o.weightDecay), lerp_weight: fromEnd ? w - 1 : w,
                             lerp_from_end: fromEnd ? 1 : 0, beta2: Float(o.beta2), one_minus_beta2: Float(1 - o.beta2),
                             bias_correction2_sqrt: Float(pow(1 - pow(o.beta2, t), 0.5)), eps: Float(o.eps),
                             negative_step_size: Float(-(lr / (1 - pow(o.beta1, t)))))
    }

    /// The slices' ranges (with their decay flag) split into `threads` groups of about equal element count.
    static func pieces(_ slices: [ParameterSlice], threads: Int) -> [[(Range<Int>, Bool)]] {
        let total = slices.last.map { $0.range.upperBound } ?? 0
        let parts = max(1, min(threads, total / 65536))
        if parts == 1 { return [slices.map { ($0.range, $0.decays) }] }
        var out = [[(Range<Int>, Bool)]](repeating: [], count: parts)
        for s in slices {
            var lo = s.offset
            while lo < s.range.upperBound {
                let part = min(parts - 1, lo * parts / total)
                let partEnd = (part + 1) * total / parts
                let hi = min(s.range.upperBound, max(partEnd, lo + 1))
                out[part].append((lo ..< hi, s.decays))
                lo = hi
            }
        }
        return out
    }
}

/// Gradient clipping by global norm, as `torch.nn.utils.clip_grad_norm_(params, maxNorm)` (norm type 2).
public enum GradientClipping {
    /// Scales `gradients` in place so that their global L2 norm is at most `maxNorm`, and returns the norm before
    /// clipping (torch's return value). The layout is `slices` (one per torch parameter tensor).
    ///
    /// As torch: the norm of each tensor, then the norm of those norms, each rounded to f32; then
    /// `coef = f32(1 / (total + f32(1e-6))) · f32(maxNorm)` (torch's `max_norm / tensor` is `reciprocal() * max_norm`),
    /// clamped to at most 1 and always multiplied in (so a norm below `maxNorm` scales by a coefficient just under 1,
    /// as in torch). Sums of squares accumulate in f64 where torch accumulates in f32 lanes, so the returned norm
    /// agrees with torch's to about 1e-6 relative for tensors of up to millions of elements (ours is the more
    /// accurate); a NaN or infinite norm is returned and propagates into the gradients, as torch's default does.
    @discardableResult
    public static func clipGradientNorm(_ gradients: UnsafeMutableBufferPointer<Float>, slices: [ParameterSlice],
                                        maxNorm: Double) -> Float {
        let total = globalNorm(UnsafeBufferPointer(gradients), slices: slices)
        let reciprocal: Float = 1 / (total + Float(1e-6))
        var coef = reciprocal * Float(maxNorm)
        if coef > 1 { coef = 1 }
        var i = 0
        while i < gradients.count { gradients[i] *= coef; i &+= 1 }
        return total
    }

    /// `clipGradientNorm` over a Swift array.
    @discardableResult
    public static func clipGradientNorm(_ gradients: inout [Float], slices: [ParameterSlice], maxNorm: Double) -> Float {
        gradients.withUnsafeMutableBufferPointer { clipGradientNorm($0, slices: slices, maxNorm: maxNorm) }
    }

    /// The global L2 norm of `gradients` (torch's `get_total_norm`): each slice's norm rounded to f32, then the
    /// norm of those rounded to f32.
    public static func globalNorm(_ gradients: UnsafeBufferPointer<Float>, slices: [ParameterSlice]) -> Float {
        ParameterSlice.checkTiling(slices, total: gradients.count)
        var sum = 0.0
        for s in slices {
            let norm = Float(sumOfSquares(gradients.baseAddress! + s.offset, count: s.count).squareRoot())
            sum += Double(norm) * Double(norm)
        }
        return Float(sum.squareRoot())
    }

    /// Σ x² in f64 (`ck_sum_squares`: sixteen lanes in a fixed order, the same on every CPU).
    static func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Double { ck_sum_squares(x, count) }
}

/// The shape of a learning-rate schedule after its linear warmup.
public enum ScheduleKind: String, Sendable, Codable, CaseIterable {
    /// Half-cosine decay from the peak (to `minRatio` of it): `get_cosine_schedule_with_warmup`, or with a floor
    /// `get_cosine_with_min_lr_schedule_with_warmup(min_lr_rate:)`.
    case cosine
    /// Linear decay from the peak to 0 at `totalSteps` (`get_linear_schedule_with_warmup`); with `minRatio` r the
    /// factor is rescaled to `f·(1 − r) + r`, as transformers does for its cosine-with-min-lr and WSD schedules.
    case linear
    /// The peak after warmup (`get_constant_schedule_with_warmup`); `minRatio` does not apply.
    case constant
}

/// Warmup + cosine / linear / constant learning rates, as Hugging Face transformers' schedule functions used through
/// `torch.optim.lr_scheduler.LambdaLR`: the learning rate of optimizer step `s` (0-based: the first `optimizer.step()`
/// uses `s = 0`, so warmup starts from a learning rate of 0) is `peak · factor(s)`, all in f64 as Python computes it.
public struct LearningRateSchedule: Sendable, Equatable, Codable {
    public var kind: ScheduleKind
    /// The peak learning rate (the optimizer's `lr`).
    public var peak: Double
    public var warmupSteps: Int
    /// `num_training_steps`: where linear decay reaches its end and the half-cosine its minimum.
    public var totalSteps: Int
    /// The floor as a fraction of `peak` the decay ends at (`min_lr_rate`); 0 for transformers' plain schedules.
    public var minRatio: Double
    /// Cosine waves over the decay (`num_cycles`; 0.5 = one half-cosine from peak to floor).
    public var cycles: Double

    public init(kind: ScheduleKind, peak: Double, warmupSteps: Int, totalSteps: Int, minRatio: Double = 0,
                cycles: Double = 0.5) {
        self.kind = kind
        self.peak = peak
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.minRatio = minRatio
        self.cycles = cycles
    }

    /// The learning rate of 0-based optimizer step `step`: `peak · factor(step)`.
    public func learningRate(at step: Int) -> Double { peak * factor(at: step) }

    /// The multiplier of the peak at 0-based step `step` (transformers' `lr_lambda`).
    public func factor(at step: Int) -> Double {
        if step < warmupSteps { return Double(step) / Double(max(1, warmupSteps)) }
        let decaySteps = Double(max(1, totalSteps - warmupSteps))
        switch kind {
        case .constant:
            return 1
        case .linear:
            let f = max(0.0, Double(totalSteps - step) / decaySteps)
            return minRatio == 0 ? f : max(0.0, f * (1 - minRatio) + minRatio)
        case .cosine:
            let progress = Double(step - warmupSteps) / decaySteps
            let f = 0.5 * (1.0 + cos(Double.pi * cycles * 2.0 * progress))
            return max(0.0, f * (1 - minRatio) + minRatio)
        }
    }
}

extension ParameterStore {
    /// The store's layout as optimizer slices: one per transformers tensor (the parts of a stacked slot, e.g. q, k
    /// and v of `qkv`, are separate tensors, so clipping takes their norms one by one as torch does), in buffer
    /// order, each with its slot's decay flag.
    public var parameterSlices: [ParameterSlice] {
        slots.flatMap { slot in
            slot.parts.map { part in
                ParameterSlice(name: part.name, offset: slot.offset + part.firstRow * slot.cols,
                               count: part.rows * slot.cols, decays: slot.decays)
            }
        }
    }
}

extension AdamW {
    /// A fresh optimizer for a store's parameters (`store.parameterSlices`).
    public init(store: ParameterStore, options: AdamWOptions = AdamWOptions()) {
        self.init(slices: store.parameterSlices, options: options)
    }

    /// One step on the store's master weights with its gradients.
    public mutating func update(_ store: ParameterStore, learningRate: Double, threads: Int = 1) {
        update(parameters: UnsafeMutableBufferPointer(start: store.values, count: store.count),
               gradients: UnsafeBufferPointer(start: store.gradients, count: store.count),
               learningRate: learningRate, threads: threads)
    }
}

extension GradientClipping {
    /// `clipGradientNorm` on a store's gradients, tensor by tensor as transformers names them.
    @discardableResult
    public static func clipGradientNorm(_ store: ParameterStore, maxNorm: Double) -> Float {
        clipGradientNorm(UnsafeMutableBufferPointer(start: store.gradients, count: store.count),
                         slices: store.parameterSlices, maxNorm: maxNorm)
    }
}
