import Foundation

/// cos/sin tables for a list of positions, Float32, row-major `[positions.count × rotaryDim]`.
public struct RopeTable: Sendable, Hashable {
    public var positions: [Int]
    public var rotaryDim: Int
    public var layout: RopePairLayout
    /// `cos[p * rotaryDim + c]` for position index `p` and channel `c`.
    public var cos: [Float]
    /// `sin[p * rotaryDim + c]`.
    public var sin: [Float]

    /// The cos row of position index `p` (`rotaryDim` values).
    public func cosRow(_ p: Int) -> ArraySlice<Float> { cos[(p * rotaryDim)..<((p + 1) * rotaryDim)] }
    /// The sin row of position index `p`.
    public func sinRow(_ p: Int) -> ArraySlice<Float> { sin[(p * rotaryDim)..<((p + 1) * rotaryDim)] }
}

extension RopeFrequencies {
    /// cos/sin for `positions`, as transformers 5.23 `LlamaRotaryEmbedding.forward` builds them in Float32:
    /// `freqs = position.float() * inv_freq`, `emb = cat(freqs, freqs)` (``RopePairLayout/halfSplit``) or each
    /// frequency repeated for channels `2j, 2j+1` (``RopePairLayout/interleaved``), then
    /// `cos = emb.cos() * attention_factor`, `sin = emb.sin() * attention_factor` (the factor, rounded to Float32,
    /// multiplies both). Shape `[positions.count × rotaryDim]`, row-major.
    ///
    /// The angles are bit-identical to torch; `cos`/`sin` use the C library's `cosf`/`sinf`, which may differ
    /// from torch's vectorised kernels by 1 ULP.
    public func table(positions: [Int], layout: RopePairLayout = .halfSplit) -> RopeTable {
        let d = rotaryDim, half = d / 2
        let scale = Float(attentionFactor)
        var cosValues = [Float](repeating: 0, count: positions.count * d)
        var sinValues = [Float](repeating: 0, count: positions.count * d)
        for (row, position) in positions.enumerated() {
            let p = Float(position)
            for j in 0..<half {
                let angle = p * invFreq[j]
                let c = Foundation.cos(angle) * scale
                let s = Foundation.sin(angle) * scale
                let (first, second) = layout == .halfSplit ? (j, j + half) : (2 * j, 2 * j + 1)
                cosValues[row * d + first] = c
                cosValues[row * d + second] = c
                sinValues[row * d + first] = s
                sinValues[row * d + second] = s
            }
        }
        return RopeTable(positions: positions, rotaryDim: d, layout: layout, cos: cosValues, sin: sinValues)
    }

    /// cos/sin for positions `0 ..< count`.
    public func table(count: Int, layout: RopePairLayout = .halfSplit) -> RopeTable {
        table(positions: Array(0..<Swift.max(count, 0)), layout: layout)
    }
}

extension RopeTable {
    /// Rotates one head vector in place at position index `p`: the first `rotaryDim` channels are rotated,
    /// the rest (partial rotary) pass through. Half-split is transformers' `q*cos + rotate_half(q)*sin` with
    /// `rotate_half(x) = cat(−x2, x1)`; interleaved is DeepSeek's / GPT-J's pairing `(2j, 2j+1)`.
    public func rotate(_ vector: inout [Float], at p: Int) {
        precondition(vector.count >= rotaryDim, "vector shorter than rotary dimension")
        let base = p * rotaryDim, half = rotaryDim / 2
        for j in 0..<half {
            let (a, b) = layout == .halfSplit ? (j, j + half) : (2 * j, 2 * j + 1)
            let x1 = vector[a], x2 = vector[b]
            vector[a] = x1 * cos[base + a] + (-x2) * sin[base + a]
            vector[b] = x2 * cos[base + b] + x1 * sin[base + b]
        }
    }
}
