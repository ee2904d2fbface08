import Basics
import Foundation
import ModelIO
import TensorCore
import Transformer

/// What one rank of a cluster offers, for ``TrainingEstimate``: sustained rates of the two kinds of work a training
/// step is made of, the rank's memory, and the link between ranks.
public struct RankCapacity: Sendable, Equatable, Codable {
    /// Sustained FLOP/s of the linear layers' matrix products (forward and backward).
    public var matmulFLOPs: Double
    /// Sustained FLOP/s of blockwise attention, forward and backward, where a rank's keys are few (measured on
    /// 1,024 rows, whose keys and values stay in the core's cache) or given.
    public var attentionFLOPs: Double
    public var attentionBackwardFLOPs: Double
    /// Attention rates measured over longer key blocks, ascending by `keys` (empty when the rates are given): a rank
    /// holding `seq_len / P` tokens streams that many keys per query tile from further out in the memory hierarchy.
    public var attentionOverKeys: [AttentionRate] = []
    /// Memory of the rank in bytes (`nil`: not checked).
    public var memoryBytes: Double?
    /// Bytes per second one rank sends to its ring neighbour (and receives), each way.
    public var linkBytesPerSecond: Double
    /// Bytes per second of the rank's own memory (AdamW's update is bound by it).
    public var memoryBytesPerSecond: Double
    /// Resident bytes of a rank's process before any model or sequence is allocated (code, libraries, runtime,
    /// thread stacks).
    public var runtimeBytes: Double
    /// Where the figures come from, for the table (e.g. "measured on this machine, 2 threads").
    public var source: String

    public init(matmulFLOPs: Double, attentionFLOPs: Double, attentionBackwardFLOPs: Double, memoryBytes: Double? = nil,
                linkBytesPerSecond: Double, memoryBytesPerSecond: Double,
                runtimeBytes: Double = TrainingEstimate.runtimeBytes, source: String) {
        self.memoryBytesPerSecond = memoryBytesPerSecond
        self.runtimeBytes = runtimeBytes
        self.matmulFLOPs = matmulFLOPs; self.attentionFLOPs = attentionFLOPs
        self.attentionBackwardFLOPs = attentionBackwardFLOPs; self.memoryBytes = memoryBytes
        self.linkBytesPerSecond = linkBytesPerSecond; self.source = source
    }
}

/// Attention forward and backward FLOP/s of queries against a block of `keys` keys.
public struct AttentionRate: Sendable, Equatable, Codable {
    public var keys: Int
    public var forwardFLOPs: Double
    public var backwardFLOPs: Double

    public init(keys: Int, forwardFLOPs: Double, backwardFLOPs: Double) {
        self.keys = keys; self.forwardFLOPs = forwardFLOPs; self.backwardFLOPs = backwardFLOPs
    }
}

extension RankCapacity {
    /// The attention rates for a rank whose queries see blocks of `keys` keys: the slower of the short-block rates
    /// (causal, cached: what small and masked calls reach) and those measured over the longest key block not longer
    /// than `keys` (what streaming that many keys from further out in the memory hierarchy allows; a rate is never
    /// borrowed from a block that fits a faster cache level).
    public func attentionRates(keys: Int) -> (forward: Double, backward: Double) {
        guard let rate = attentionOverKeys.last(where: { $0.keys <= keys }) else {
            return (attentionFLOPs, attentionBackwardFLOPs)
        }
        return (min(attentionFLOPs, rate.forwardFLOPs), min(attentionBackwardFLOPs, rate.backwardFLOPs))
    }
}

/// The estimate for one stage: work, memory and traffic per rank of one optimizer step, and its expected time.
public struct StageEstimate: Sendable, Equatable, Codable {
    public var stage: String
    public var seqLen: Int
    public var ring: Int
    public var sequencesPerStep: Int
    /// Tokens of one sequence held by one rank (`seq_len / ring`, rounded up).
    public var tokensPerRank: Int
    /// FLOPs of one optimizer step, all ranks together: linear layers and LM head, and attention.
    public var matmulFLOPsPerStep: Double
    public var attentionFLOPsPerStep: Double
    /// Bytes per rank: weights, gradients and AdamW moments (f32, replicated on every rank); activations of one
    /// sequence (layer inputs, the kept or shared activation set, backward scratch, ring buffers); the K/V of one
    /// layer held at once (own block plus the blocks in flight).
    public var stateBytes: Double
    public var activationBytes: Double
    public var kvBytes: Double
    public var peakBytes: Double
    /// Bytes one rank sends per step: K/V blocks around the ring (forward, backward, and the forward again when
    /// recomputing), dK/dV partial sums home, and the gradient all-reduce.
    public var bytesSentPerRank: Double
    /// Seconds per step: compute per rank (AdamW included), communication not hidden behind attention, and the total.
    public var computeSeconds: Double
    public var exposedCommunicationSeconds: Double
    public var stepSeconds: Double
    /// Whether `peakBytes` fits the rank's memory (`nil` when the memory is not given).
    public var fits: Bool?
}

/// Per-stage planning of a training run beyond this machine (`longctx train --estimate`): for a model
/// configuration and a ring of `P` ranks holding `1/P` of each sequence, the FLOPs per step, activation and K/V memory
/// per rank, bytes sent per rank and the expected step time from each rank's sustained rates.
///
/// The counts follow this trainer's implementation, so that they can be checked against what it measures:
/// - linear FLOPs per token and pass: `2·(d·(q + 2kv) + q·d + 3·d·I)` per layer plus `2·d·V` for the LM head;
///   backward twice the forward; recomputation adds one forward of every layer.
/// - attention FLOPs per layer and pass: `4·q·Σ visible keys` (QKᵀ and PV; `Σ visible = n(n+1)/2` causal, fewer
///   with a sliding window); the FlashAttention-2 backward does five products where the forward does two (2.5×).
/// - activation floats per local token: the layer inputs `(L+1)·d`, the activation set `2 + (q+2kv) + q + h + d + 2I`
///   (once with recomputation, per layer without), the forward and backward scratch `2d + 4I + 3q + 6kv + 3d`, and
///   for `P > 1` the ring's double buffers `6·kv` (K and V in flight, dK/dV partial sums).
public enum TrainingEstimate {
    /// A rank's process itself (runtime, BLAS, thread stacks) when the figures are given rather than measured
    /// (measured figures use this process's own resident bytes, ``RankCapacity/measure(configuration:workers:rows:keyLengths:memoryBytes:)``).
    public static let runtimeBytes = 128.0 * 1_048_576

    /// The estimates of every stage of a stages file for a model directory (only `config.json` is read, so a
    /// directory holding just the configuration of a model too large for this machine will do). `ring`: ranks per
    /// sequence for every stage. `capacity` gets the configuration and the key-block lengths of the stages
    /// (``keysPerRank(configuration:seqLen:ring:)``), so that measured attention rates can cover them.
    public static func plan(modelDirectory: String, stagesPath: String, ring: Int,
                            capacity: (TransformerConfiguration, _ keyLengths: [Int]) -> RankCapacity) throws -> (rows: [StageEstimate], capacity: RankCapacity) {
        let configuration = try TransformerConfiguration(directory: try ModelDirectory(path: modelDirectory))
        let stages = try TrainingStages.load(path: stagesPath)
        guard ring >= 1 else { throw TrainingInputError("--ring", "must be at least 1, got \(ring)") }
        let keyLengths = Set(stages.stages.map { keysPerRank(configuration: configuration, seqLen: $0.seqLen, ring: ring) })
        let cap = capacity(configuration, keyLengths.sorted())
        let rows = stages.stages.map {
            estimate(configuration: configuration, stage: $0, ring: ring, recompute: stages.recompute, capacity: cap)
        }
        return (rows, cap)
    }

    /// Floats per local token of everything that grows with the sequence (see the type's doc).
    static func activationFloatsPerToken(_ c: TransformerConfiguration, recompute: Bool, ring: Int) -> Double {
        let d = Double(c.hiddenSize), i = Double(c.intermediateSize), q = Double(c.heads * c.headDim)
        let kv = Double(c.kvHeads * c.headDim), h = Double(c.heads), l = Double(c.layers)
        let inputs = (l + 1) * d
        let set = 2 + (q + 2 * kv) + q + h + d + 2 * i
        let scratch = 2 * d + 4 * i + 3 * q + 6 * kv + 3 * d
        let ringBuffers = ring > 1 ? 6 * kv : 0
        return inputs + (recompute ? set : l * set) + scratch + ringBuffers
    }

    /// Trainable parameters of the configuration (embedding, layers with their biases, final norm, LM head unless
    /// tied).
    public static func parameterCount(_ c: TransformerConfiguration) -> Double {
        let d = Double(c.hiddenSize), i = Double(c.intermediateSize), q = Double(c.heads * c.headDim)
        let kv = Double(c.kvHeads * c.headDim), v = Double(c.vocabSize)
        var layer = d * (q + 2 * kv) + q * d + 3 * d * i + 2 * d
        if c.qkvBias { layer += q + 2 * kv }
        if c.outputBias { layer += d }
        if c.mlpBias { layer += 2 * i + d }
        return v * d + Double(c.layers) * layer + d + (c.tieWordEmbeddings ? 0 : v * d)
    }

    /// Keys one rank's queries see per block in a stage of `seqLen` tokens over `ring` ranks: its own
    /// `seq_len / P` tokens' worth (each block of the ring is that long), capped by a sliding window.
    public static func keysPerRank(configuration c: TransformerConfiguration, seqLen: Int, ring: Int) -> Int {
        let local = (seqLen + max(1, ring) - 1) / max(1, ring)
        return min(local, c.slidingWindow ?? local)
    }

    /// Keys visible to the queries of an `n`-token causal sequence, summed (a sliding window of `w` keys caps each).
    static func visibleKeys(_ n: Int, window: Int?) -> Double {
        let n = Double(n)
        guard let w = window.map(Double.init), w < n else { return n * (n + 1) / 2 }
        return w * (w + 1) / 2 + (n - w) * w
    }

    public static func estimate(configuration c: TransformerConfiguration, stage: StageSpec, ring: Int,
                                recompute: Bool, capacity: RankCapacity) -> StageEstimate {
        let p = max(1, ring)
        let n = stage.seqLen, local = (n + p - 1) / p
        let sequences = max(1, stage.sequencesPerStep)
        let d = Double(c.hiddenSize), i = Double(c.intermediateSize), q = Double(c.heads * c.headDim)
        let kv = Double(c.kvHeads * c.headDim), l = Double(c.layers), v = Double(c.vocabSize)
        // Work per sequence, all ranks together.
        let layerLinear = 2 * (d * (q + 2 * kv) + q * d + 3 * d * i)
        let passes = recompute ? 4.0 : 3.0
        let matmul = Double(n) * (l * layerLinear * passes + 2 * d * v * 3)
        let attentionForward = l * 4 * q * visibleKeys(n, window: c.slidingWindow)
        let forwards = recompute ? 2.0 : 1.0
        let attention = attentionForward * (forwards + 2.5)
        // Memory per rank.
        let params = parameterCount(c)
        let state = params * 4 * 4
        let activation = Double(local) * activationFloatsPerToken(c, recompute: recompute, ring: p) * 4
        let kvBytes = Double(local) * 2 * kv * 4 * (p > 1 ? 3 : 1)
        // Traffic per rank: each of the P−1 ring hops sends the local K/V block (2·kv floats per token) per layer,
        // in the forward (twice with recomputation) and the backward, plus dK/dV in the backward.
        let block = Double(local) * 2 * kv * 4
        let hops = Double(p - 1)
        let ringBytes = hops * block * l * ((recompute ? 2 : 1) + 2) * Double(sequences)
        let allReduce = p > 1 ? 2 * hops / Double(p) * params * 4 : 0
        // Time per rank: compute split evenly (zigzag balances the causal work); ring traffic overlaps attention.
        let rates = capacity.attentionRates(keys: keysPerRank(configuration: c, seqLen: n, ring: p))
        let attentionSeconds = Double(sequences) / Double(p)
            * (attentionForward * forwards / rates.forward + attentionForward * 2.5 / rates.backward)
        // AdamW reads weights, gradients and both moments and writes three of them: 28 bytes per parameter.
        let optimizerSeconds = params * 28 / capacity.memoryBytesPerSecond
        let compute = Double(sequences) * matmul / capacity.matmulFLOPs / Double(p) + attentionSeconds + optimizerSeconds
        let ringSeconds = ringBytes / capacity.linkBytesPerSecond
        let exposed = max(0, ringSeconds - attentionSeconds) + allReduce / capacity.linkBytesPerSecond
        let peak = capacity.runtimeBytes + state + activation + kvBytes
        return StageEstimate(
            stage: stage.name, seqLen: n, ring: p, sequencesPerStep: sequences, tokensPerRank: local,
            matmulFLOPsPerStep: matmul * Double(sequences), attentionFLOPsPerStep: attention * Double(sequences),
            stateBytes: state, activationBytes: activation, kvBytes: kvBytes, peakBytes: peak,
            bytesSentPerRank: ringBytes + allReduce, computeSeconds: compute, exposedCommunicationSeconds: exposed,
            stepSeconds: compute + exposed, fits: capacity.memoryBytes.map { peak <= $0 })
    }

    /// A plain-text table of the estimates, one row per stage.
    public static func table(_ rows: [StageEstimate], capacity: RankCapacity) -> String {
        func bytes(_ x: Double) -> String {
            x >= 1_073_741_824 ? String(format: "%.1f GiB", x / Double(1 << 30)) : String(format: "%.0f MiB", x / Double(1 << 20))
        }
        func flops(_ x: Double) -> String {
            let units: [(Double, String)] = [(1e18, "EF"), (1e15, "PF"), (1e12, "TF"), (1e9, "GF")]
            let (scale, unit) = units.first { x >= $0.0 } ?? (1e6, "MF")
            return String(format: "%.3g %@", x / scale, unit)
        }
        func seconds(_ x: Double) -> String { x >= 100 ? String(format: "%.0f s", x) : String(format: "%.2f s", x) }
        var out = "per rank: \(flops(capacity.matmulFLOPs))LOP/s matmul, "
            + "\(flops(capacity.attentionFLOPs))LOP/s / \(flops(capacity.attentionBackwardFLOPs))LOP/s attention forward / backward, "
            + "link \(bytes(capacity.linkBytesPerSecond))/s, memory \(bytes(capacity.memoryBytesPerSecond))/s"
            + (capacity.memoryBytes.map { ", \(bytes($0)) each" } ?? "") + " (\(capacity.source))\n"
        for rate in capacity.attentionOverKeys {
            out += "  attention over \(formatLength(rate.keys)) keys: \(flops(rate.forwardFLOPs))LOP/s / \(flops(rate.backwardFLOPs))LOP/s\n"
        }
        let header = ["stage", "seq_len", "ring", "tok/rank", "FLOPs/step", "state/rank", "activ./rank", "K/V/rank",
                      "peak/rank", "sent/rank/step", "compute", "comm exposed", "step", "fits"]
        var lines = [header]
        for r in rows {
            lines.append([r.stage, formatLength(r.seqLen), "\(r.ring)", formatLength(r.tokensPerRank),
                          flops(r.matmulFLOPsPerStep + r.attentionFLOPsPerStep), bytes(r.stateBytes),
                          bytes(r.activationBytes), bytes(r.kvBytes), bytes(r.peakBytes), bytes(r.bytesSentPerRank),
                          seconds(r.computeSeconds), seconds(r.exposedCommunicationSeconds), seconds(r.stepSeconds),
                          r.fits.map { $0 ? "yes" : "NO" } ?? "–"])
        }
        let widths = (0..<header.count).map { col in lines.map { $0[col].count }.max()! }
        for line in lines {
            out += zip(line, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .trimmingCharacters(in: .whitespaces) + "\n"
        }
        return out
    }
}

extension RankCapacity {
    /// Measures this machine with the model's shapes and `workers` threads: a linear layer's product
    /// (`rows × d` by `d × min(I, 8192)`, on the trainer's ``GemmEngine/training``), causal blockwise attention of `rows` queries over themselves forward
    /// (``BlockwiseAttention``) and backward (``AttentionBackward``), the same over each of `keyLengths` keys longer
    /// than `rows` (``attentionOverKeys``: 512 queries, a few query tiles per worker, against the whole block, capped at
    /// ``longestMeasuredKeys``), memory copy bandwidth (the link between ranks on one host), and this process's
    /// resident bytes before it allocates anything for the measurement (what a rank holds besides its model and
    /// sequence). Each rate is the median of the runs that fit in one second after a warm-up run (at least three);
    /// takes a few seconds, plus about half a minute per 64K keys of a SmolLM-sized model.
    public static func measure(configuration c: TransformerConfiguration, workers: Int, rows: Int = 1024,
                               keyLengths: [Int] = [], memoryBytes: Double? = nil) -> RankCapacity {
        let runtime = Double(ProcessMemory.residentBytes())
        let d = c.hiddenSize, cols = min(c.intermediateSize, 8192)
        var rng = SeededRandom(seed: 1)
        let x = randomBuffer(rows * d, &rng), w = randomBuffer(d * cols, &rng)
        var y = [Float](repeating: 0, count: rows * cols)
        let savedThreads = BLAS.threads
        BLAS.threads = 1
        defer { BLAS.threads = savedThreads }
        let matmul = sustained {
            LayerOps.gemm(m: rows, n: cols, k: d, a: x, lda: d, b: w, ldb: cols, c: &y, ldc: cols, workers: workers,
                          engine: .training)
        }
        let short = attentionRate(c, queries: rows, keys: rows, causal: true, workers: workers, rng: &rng)
        let long = Set(keyLengths.filter { $0 > rows }.map { min($0, longestMeasuredKeys) }).sorted().map {
            attentionRate(c, queries: 512, keys: $0, causal: false, workers: workers, rng: &rng)
        }
        var source = [Float](repeating: 1, count: 1 << 24), target = source
        let copy = sustained { target.withUnsafeMutableBufferPointer { t in source.withUnsafeBufferPointer { t.baseAddress!.update(from: $0.baseAddress!, count: $0.count) } } }
        source[0] = target[1]
        var capacity = RankCapacity(matmulFLOPs: 2 * Double(rows * cols * d) / matmul, attentionFLOPs: short.forwardFLOPs,
                                    attentionBackwardFLOPs: short.backwardFLOPs, memoryBytes: memoryBytes,
                                    linkBytesPerSecond: Double(4 << 24) / copy, memoryBytesPerSecond: 2 * Double(4 << 24) / copy,
                                    runtimeBytes: runtime > 0 ? runtime : TrainingEstimate.runtimeBytes,
                                    source: "measured on this machine, \(workers) thread\(workers == 1 ? "" : "s") per rank")
        capacity.attentionOverKeys = long
        return capacity
    }

    /// The longest key block ``measure(configuration:workers:rows:keyLengths:memoryBytes:)`` times (its keys,
    /// values and their gradients take `4 · 4 · kv` bytes per key: 400 MiB for SmolLM2, 2 GiB for Llama-3-8B);
    /// longer blocks take its rates.
    public static let longestMeasuredKeys = 131_072

    /// `count` values uniform in [−0.5, 0.5) for the measurement's operands.
    static func randomBuffer(_ count: Int, _ rng: inout SeededRandom) -> [Float] {
        (0..<count).map { _ in Float(rng.uniform() - 0.5) }
    }

    /// One untimed run (first touch of the buffers, the vector units' frequency step), then the median of as many
    /// runs as fit in one second (at least three). A single short run caught by another process's time slice made
    /// the 128K estimate 2.4× the measured step; the fastest of many runs, on the other hand, swung by ±30 % between
    /// processes on a shared host, while a step of minutes sees the sustained rate.
    static func sustained(_ body: () -> Void) -> Double {
        body()
        var times: [Double] = []
        let start = Date()
        repeat {
            let t = Date(); body(); times.append(Date().timeIntervalSince(t))
        } while times.count < 3 || Date().timeIntervalSince(start) < 1
        return times.sorted()[times.count / 2]
    }

    /// Attention forward and backward FLOP/s of `queries` query rows against `keys` keys with the model's heads:
    /// causal over themselves (`causal`, `queries == keys`) or every query seeing the whole block (a block of
    /// another rank in the ring). FLOPs: `4·q·Σ visible keys` forward, 2.5× that backward.
    static func attentionRate(_ c: TransformerConfiguration, queries: Int, keys: Int, causal: Bool, workers: Int,
                              rng: inout SeededRandom) -> AttentionRate {
        let shape = AttentionShape(heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, slidingWindow: nil)
        let q = c.heads * c.headDim, kvw = c.kvHeads * c.headDim
        let query = randomBuffer(queries * q, &rng), keyBlock = randomBuffer(kvw * keys, &rng)
        let valueBlock = randomBuffer(kvw * keys, &rng), dOut = randomBuffer(queries * q, &rng)
        var out = [Float](repeating: 0, count: queries * q), lse = [Float](repeating: 0, count: queries * c.heads)
        var dq = out, dk = keyBlock, dv = valueBlock
        // Queries placed after the block when it is not causal, so that every key is visible.
        let first = causal ? 0 : keys
        let flops = 4 * Double(q) * (causal ? TrainingEstimate.visibleKeys(keys, window: nil) : Double(queries) * Double(keys))
        let forward = sustained {
            keyBlock.withUnsafeBufferPointer { k in
                valueBlock.withUnsafeBufferPointer { v in
                    let view = KeyValueView(keys: k.baseAddress!, values: v.baseAddress!, stride: keys, count: keys)
                    BlockwiseAttention.attend(shape: shape, query: query, queryStride: q, count: queries, firstPosition: first,
                                              kv: view, causal: causal, output: &out, outputStride: q, logSumExp: &lse, workers: workers)
                }
            }
        }
        let backward = sustained {
            keyBlock.withUnsafeBufferPointer { k in
                valueBlock.withUnsafeBufferPointer { v in
                    let view = KeyValueView(keys: k.baseAddress!, values: v.baseAddress!, stride: keys, count: keys)
                    AttentionBackward.accumulate(shape: shape, query: query, queryStride: q, count: queries, firstPosition: first,
                                                 kv: view, causal: causal, output: out, outputStride: q, outputGradient: dOut,
                                                 outputGradientStride: q, logSumExp: lse, queryGradient: &dq,
                                                 queryGradientStride: q, keyGradient: &dk, valueGradient: &dv, workers: workers)
                }
            }
        }
        return AttentionRate(keys: keys, forwardFLOPs: flops / forward, backwardFLOPs: 2.5 * flops / backward)
    }
}
