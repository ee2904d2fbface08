import Foundation
import ModelIO
import TensorCore

/// How well an adapter (ours or anyone's, in PEFT format) reproduces a fine-tune's deltas.
public struct AdapterError: Codable, Sendable {
    /// `√(Σₘ‖Δₘ − sₘBₘAₘ‖² / Σₘ‖Δₘ‖²)` over the adapter's LoRA modules.
    public var globalRelativeError: Double
    /// Mean over modules of `‖Δₘ − sₘBₘAₘ‖/‖Δₘ‖`.
    public var meanRelativeError: Double
    public var modules: [String: Double]
    enum CodingKeys: String, CodingKey {
        case globalRelativeError = "global_relative_error", meanRelativeError = "mean_relative_error", modules
    }
}

public enum LoRAEvaluation {
    /// Compares `adapter`'s `s·B·A` with `Δ = tuned − base` (f32) for every LoRA module, streaming one
    /// module at a time.
    public static func error(base: String, tuned: String, adapter: String) throws -> AdapterError {
        let bw = try Checkpoint(directory: base), tw = try Checkpoint(directory: tuned)
        let ad = try Adapter(path: adapter)
        var num = 0.0, den = 0.0, sum = 0.0
        var per = [String: Double]()
        for m in ad.modules {
            let w = m.module + ".weight"
            guard let info = tw.info(w) else { throw ModelIOError(adapter, "module '\(m.module)' has no weight in \(tuned)") }
            var d = try LoRAExtractor.delta(w, bw, tw, roundToDType: false)
            let total = d.withUnsafeBufferPointer { LowRank.sumOfSquares($0) }
            let f = try ad.factors(m)
            let rows = info.shape[0], cols = info.shape[1]
            let alpha = Float(-m.scaling)
            if m.kind == .linear {
                BLAS.sgemm(m: rows, n: cols, k: f.rank, alpha: alpha, a: f.b, lda: f.rank, b: f.a, ldb: cols, beta: 1, c: &d, ldc: cols)
            } else {
                BLAS.sgemm(transA: true, transB: true, m: rows, n: cols, k: f.rank, alpha: alpha, a: f.a, lda: rows, b: f.b, ldb: f.rank,
                           beta: 1, c: &d, ldc: cols)
            }
            let res = d.withUnsafeBufferPointer { LowRank.sumOfSquares($0) }
            num += res; den += total
            let e = total > 0 ? (res / total).squareRoot() : 0
            per[m.module] = e
            sum += e
        }
        return AdapterError(globalRelativeError: den > 0 ? (num / den).squareRoot() : 0,
                            meanRelativeError: ad.modules.isEmpty ? 0 : sum / Double(ad.modules.count), modules: per)
    }
}
