import Basics
import Foundation
import ModelIO
import TensorCore

/// A synthetic "fine-tune" of a model with a known answer, for tests and benchmarks: every Linear
/// weight gets `Σ_{i<r} σᵢ·uᵢvᵢᵀ` (random directions, `σᵢ = scale·decayⁱ`, so the spectrum is well
/// separated) plus i.i.d. noise `N(0, noise²)`; embeddings and lm_head get the same treatment; norms
/// are shifted by `N(0, normShift²)`. Ranks per module come from `rank(module)`.
public struct SyntheticFineTune: Sendable {
    public var defaultRank = 8
    /// Rank overrides by module-name suffix (first match wins), e.g. `["layers.1.self_attn.k_proj": 3]`.
    public var rankOverrides: [(String, Int)] = []
    public var scale: Float = 0.05
    public var decay: Float = 0.8
    public var noise: Float = 1e-4
    public var normShift: Float = 0.01
    public var seed: UInt64 = 1
    public init() {}

    public func rank(of module: String) -> Int {
        rankOverrides.first { module.hasSuffix($0.0) }?.1 ?? defaultRank
    }

    /// Writes `base` + the update to `out` (atomically), same tensors, dtypes and shard size, and a copy of
    /// config.json. Returns nothing; the update itself is reproducible from `seed`.
    public func write(base: String, out: String) throws {
        let dir = try ModelDirectory(path: base)
        let ck = try dir.weights()
        var maxShard = 0
        for s in ck.namesByShard { maxShard = max(maxShard, s.names.reduce(0) { $0 + (ck.info($1)?.byteCount ?? 0) }) }
        let specs = ck.infos.map { TensorSpec(name: $0.name, dtype: $0.dtype, shape: $0.shape) }
        try ModelDirectory.assemble(at: out) { tmp in
            let w = try CheckpointWriter(directory: tmp, specs: specs, maxShardBytes: ck.isSharded ? maxShard : Int.max)
            var rng = SeededRandom(seed: seed)
            for s in specs {
                var v = try ck.tensor(s.name).floats()
                let module = String(s.name.split(separator: ".").dropLast().joined(separator: "."))
                if s.shape.count == 2 {
                    let m = s.shape[0], n = s.shape[1], r = min(rank(of: module), m, n)
                    if r > 0 {
                        var u = (0..<(m * r)).map { _ in rng.normal() / Float(m).squareRoot() }
                        let vt = (0..<(r * n)).map { _ in rng.normal() / Float(n).squareRoot() }
                        for j in 0..<r {
                            let sigma = scale * pow(decay, Float(j)) * Float(m * n).squareRoot() / 8
                            for i in 0..<m { u[i * r + j] *= sigma }
                        }
                        BLAS.sgemm(m: m, n: n, k: r, a: u, lda: r, b: vt, ldb: n, beta: 1, c: &v, ldc: n)
                    }
                    if noise > 0 { for i in v.indices { v[i] += noise * rng.normal() } }
                } else if s.name.hasSuffix("norm.weight") {
                    for i in v.indices { v[i] += normShift * rng.normal() }
                }
                try w.append(name: s.name, tensor: Tensor(shape: s.shape, floats: v, dtype: s.dtype))
            }
            try w.finish()
            try FileOps.writeAtomically(try dir.configData(), to: (tmp as NSString).appendingPathComponent("config.json"))
        }
    }
}
