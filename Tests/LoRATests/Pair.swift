import Foundation
import LoRA
import ModelIO
import TensorCore
import TestSupport

/// A tiny sharded Llama-shaped pair: base from `RandomModelSpec`, fine-tune = base + known low-rank
/// update + noise (`SyntheticFineTune`), with some modules of lower rank than the rest.
enum Pair {
    static func make(_ root: String, dtype: DType = .f32, layers: Int = 2, noise: Float = 1e-4, vocab: Int = 96) throws -> (base: String, tuned: String) {
        var spec = RandomModelSpec()
        spec.layers = layers; spec.hiddenSize = 32; spec.intermediateSize = 64; spec.heads = 4; spec.kvHeads = 2
        spec.vocabSize = vocab; spec.dtype = dtype; spec.seed = 7; spec.maxShardBytes = 40_000
        let base = root + "/base", tuned = root + "/tuned"
        try spec.write(to: base)
        var ft = SyntheticFineTune()
        ft.defaultRank = 6
        ft.rankOverrides = [("layers.1.self_attn.k_proj", 2), ("layers.0.mlp.down_proj", 3), ("embed_tokens", 4), ("lm_head", 4)]
        ft.noise = noise
        ft.decay = 0.6
        try ft.write(base: base, out: tuned)
        return (base, tuned)
    }

    static func floats(_ ck: Checkpoint, _ name: String) throws -> [Float] { try ck.tensor(name).floats() }

    static func relDiff(_ a: [Float], _ b: [Float]) -> Double {
        var num = 0.0, den = 0.0
        for i in a.indices { let d = Double(a[i]) - Double(b[i]); num += d * d; den += Double(b[i]) * Double(b[i]) }
        return den > 0 ? (num / den).squareRoot() : num.squareRoot()
    }
}
