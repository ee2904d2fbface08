import CKernels
import Dispatch
import Foundation
import ModelIO
import TensorCore

/// How the engine holds its weight matrices (the projections and the LM head; embeddings and norms stay as stored).
public enum WeightFormat: String, CaseIterable, Sendable {
    /// As the checkpoint stores them (f32 in place, f16/bf16 widened per product): the reference.
    case stored
    /// Quantized at load to blocks of 32 with one f32 scale (GGUF Q8_0's rule: d = max|w|/127), 8.5 bits per weight.
    case q8_0 = "q8_0"
    /// Quantized at load to blocks of 32 4-bit values with one f32 scale (GGUF Q4_0's rule), 5 bits per weight.
    case q4_0 = "q4_0"
    /// Blocks of 32 4-bit values with an f32 scale and minimum (GGUF Q4_1's rule), 6 bits per weight. Weights
    /// imported from a Q4_1 GGUF (the embedded default) come back as the file's own blocks.
    case q4_1 = "q4_1"
    /// GGUF Q4_K's values: super-blocks of 256 (8 sub-blocks of 32 4-bit codes, 6-bit sub-block scales and offsets
    /// against an f16 `d` and `dmin`), 4.75 bits per weight in our layout (`ck_q4k_quantize` in CKernels.h, our
    /// quantizer: min/max fit refined by least squares). Rows whose length is not a multiple of 256 fall back to
    /// Q5_0's values (held as Q8_0 blocks), as llama.cpp's quantizer falls back to Q5_0. A directory imported from
    /// a GGUF with k-quants runs on the file's own blocks (``GGUFBlocks``): Q4_K, Q8_0, Q4_0 and Q4_1 as they
    /// are, Q5_0 as Q8_0 blocks with the same values, Q6_K (and any other type) dequantized and re-quantized to
    /// Q8_0 at load.
    case q4_k = "q4_k"
}

/// How one block-quantized matrix is stored (layouts: CKernels.h, quantized matrix–vector products).
enum BlockFormat: Sendable, Equatable {
    /// int8 codes, one scale per 32 (GGUF Q8_0's rule).
    case q8_0
    /// Q5_0's values (codes 0…31 less 16, one scale per 32) in Q8_0 storage, run by the Q8_0 kernels.
    case q5_0
    /// 4-bit codes less 8, one scale per 32.
    case q4_0
    /// 4-bit codes, a scale and a minimum per 32.
    case q4_1
    /// Q4_K: 4-bit codes in super-blocks of 256 with 6-bit sub-block scales and offsets.
    case q4_k

    /// int8 codes (Q8_0, Q5_0) rather than nibbles.
    var isEightBit: Bool { self == .q8_0 || self == .q5_0 }
    /// Elements per block of the row layout.
    var blockElements: Int { self == .q4_k ? 256 : 32 }
}

/// A `[rows, cols]` weight matrix in one ``BlockFormat`` (layouts: `ck_q8_matvec` / `ck_q4_matvec` /
/// `ck_q4k_matvec` in CKernels.h). Matrix–vector products (decoding) run on integer dot products of the quantized
/// weights and the activations quantized to Q8_0; larger products widen the quantized weights to f32 for BLAS, so
/// prefill and decoding compute with the same weights.
final class QuantizedMatrix: @unchecked Sendable {
    let format: BlockFormat
    let rows: Int
    let cols: Int
    /// Q8_0/Q5_0: `rows·cols` int8; Q4_0/Q4_1/Q4_K: `rows·cols/2` bytes.
    let quants: UnsafeMutableRawPointer
    /// `rows · cols/32` block scales; Q4_K: `rows · cols/256 · 2` (d, dmin).
    let scales: UnsafeMutablePointer<Float>
    /// Q4_1: `rows · cols/32` block minimums; nil otherwise.
    let mins: UnsafeMutablePointer<Float>?
    /// Q4_K: `rows · cols/256 · 16` 6-bit sub-block scales then offsets; nil otherwise.
    let subScales: UnsafeMutablePointer<UInt8>?

    var blocksPerRow: Int { cols / 32 }
    var bytesPerRow: Int { format.isEightBit ? cols : cols / 2 }
    /// f32 scale values per row.
    var scalesPerRow: Int { format == .q4_k ? cols / 256 * 2 : cols / 32 }
    /// Bytes read by one matrix–vector product.
    var byteCount: Int {
        rows * (bytesPerRow + scalesPerRow * 4 + (mins == nil ? 0 : blocksPerRow * 4) + (subScales == nil ? 0 : cols / 16))
    }

    /// Uninitialised storage for `rows × cols` in `format` (`cols` a multiple of the format's block).
    init(format: BlockFormat, rows: Int, cols: Int) {
        precondition(cols % format.blockElements == 0)
        self.format = format
        self.rows = rows
        self.cols = cols
        let perRow = format.isEightBit ? cols : cols / 2
        let nScales = format == .q4_k ? cols / 256 * 2 : cols / 32
        quants = UnsafeMutableRawPointer.allocate(byteCount: max(1, rows * perRow), alignment: 64)
        scales = UnsafeMutablePointer<Float>.allocate(capacity: max(1, rows * nScales))
        mins = format == .q4_1 ? UnsafeMutablePointer<Float>.allocate(capacity: max(1, rows * cols / 32)) : nil
        subScales = format == .q4_k ? UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, rows * cols / 16)) : nil
    }

    /// Quantizes `rows` rows given by `row(r, into:)` (each `cols` f32 values).
    convenience init(format: BlockFormat, rows: Int, cols: Int, row: (Int, UnsafeMutablePointer<Float>) -> Void) {
        self.init(format: format, rows: rows, cols: cols)
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: cols)
        defer { buffer.deallocate() }
        for r in 0..<rows {
            row(r, buffer)
            let d = scales + r * scalesPerRow, q = quants + r * bytesPerRow
            switch format {
            case .q8_0: ck_q8_quantize(buffer, cols, q.assumingMemoryBound(to: Int8.self), d)
            case .q5_0: ck_q5_0_quantize(buffer, cols, q.assumingMemoryBound(to: Int8.self), d)
            case .q4_0: ck_q4_quantize(buffer, cols, q.assumingMemoryBound(to: UInt8.self), d)
            case .q4_1: ck_q4_1_quantize(buffer, cols, q.assumingMemoryBound(to: UInt8.self), d, mins! + r * blocksPerRow)
            case .q4_k: ck_q4k_quantize(buffer, cols, q.assumingMemoryBound(to: UInt8.self), subScales! + r * cols / 16, d)
            }
        }
    }

    deinit {
        quants.deallocate()
        scales.deallocate()
        mins?.deallocate()
        subScales?.deallocate()
    }

    /// Row `r` widened to f32 into `out` (`cols` values), exactly the values the integer kernels use (for Q4_K
    /// the f32 products `(d·sc)·q − dmin·m`, as ggml and gguf-py dequantize).
    func dequantizeRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        let nb = blocksPerRow
        let d = scales + r &* scalesPerRow
        if format.isEightBit {
            let q = (quants + r &* bytesPerRow).assumingMemoryBound(to: Int8.self)
            for i in 0..<cols { out[i] = Float(q[i]) * d[i >> 5] }
            return
        }
        let q = (quants + r &* bytesPerRow).assumingMemoryBound(to: UInt8.self)
        for b in 0..<nb {
            let scale: Float, offset: Float
            switch format {
            case .q4_0: (scale, offset) = (d[b], .nan)
            case .q4_1: (scale, offset) = (d[b], mins![r &* nb &+ b])
            default:
                let sb: Int = b >> 3, j: Int = b & 7
                let sm: UnsafeMutablePointer<UInt8> = subScales! + (r &* (cols / 16) &+ sb &* 16)
                let sc = Float(sm[j]), mn = Float(sm[8 &+ j])
                scale = d[sb &* 2] * sc
                offset = -(d[sb &* 2 &+ 1] * mn)
            }
            for i in 0..<16 {
                let byte = q[b &* 16 &+ i]
                if format == .q4_0 {
                    out[b &* 32 &+ i] = Float(Int(byte & 15) &- 8) * scale
                    out[b &* 32 &+ 16 &+ i] = Float(Int(byte >> 4) &- 8) * scale
                } else {
                    out[b &* 32 &+ i] = Float(byte & 15) * scale + offset
                    out[b &* 32 &+ 16 &+ i] = Float(byte >> 4) * scale + offset
                }
            }
        }
    }

    /// `y[0..<n] = W[lo..<lo+n] · x` on one thread (`xq`, `xd`: the activations quantized by `ck_q8_quantize`).
    func multiply(rows lo: Int, _ n: Int, xq: UnsafePointer<Int8>, xd: UnsafePointer<Float>,
                  into y: UnsafeMutablePointer<Float>) {
        let d = scales + lo * scalesPerRow
        switch format {
        case .q8_0, .q5_0:
            let w = (quants + lo * bytesPerRow).assumingMemoryBound(to: Int8.self)
            ck_q8_matvec(w, d, n, cols, xq, xd, y)
        case .q4_0, .q4_1:
            let w = (quants + lo * bytesPerRow).assumingMemoryBound(to: UInt8.self)
            ck_q4_matvec(w, d, mins.map { $0 + lo * blocksPerRow }, n, cols, xq, xd, y)
        case .q4_k:
            let w = (quants + lo * bytesPerRow).assumingMemoryBound(to: UInt8.self)
            ck_q4k_matvec(w, subScales! + lo * cols / 16, d, n, cols, xq, xd, y)
        }
    }

    /// Several matrices of one format stacked along rows.
    static func concatenated(_ parts: [QuantizedMatrix]) -> QuantizedMatrix {
        if parts.count == 1 { return parts[0] }
        let f = parts[0].format, cols = parts[0].cols
        precondition(parts.allSatisfy { $0.format == f && $0.cols == cols })
        let out = QuantizedMatrix(format: f, rows: parts.reduce(0) { $0 + $1.rows }, cols: cols)
        var row = 0
        for p in parts {
            (out.quants + row * out.bytesPerRow).copyMemory(from: p.quants, byteCount: p.rows * p.bytesPerRow)
            (out.scales + row * out.scalesPerRow).update(from: p.scales, count: p.rows * p.scalesPerRow)
            if let m = out.mins { (m + row * out.blocksPerRow).update(from: p.mins!, count: p.rows * p.blocksPerRow) }
            if let s = out.subScales { (s + row * cols / 16).update(from: p.subScales!, count: p.rows * cols / 16) }
            row += p.rows
        }
        return out
    }
}

/// A weight matrix's rows in one or more ``QuantizedMatrix`` parts stacked along rows (a fused projection whose
/// parts a GGUF file stored in different types; adjacent parts of one format are merged).
struct QuantizedRows: @unchecked Sendable {
    let parts: [QuantizedMatrix]
    let rows: Int
    let cols: Int

    init(_ parts: [QuantizedMatrix]) {
        var merged: [[QuantizedMatrix]] = []
        for p in parts {
            if let last = merged.last?.last, last.format == p.format { merged[merged.count - 1].append(p) } else { merged.append([p]) }
        }
        self.parts = merged.map(QuantizedMatrix.concatenated)
        rows = parts.reduce(0) { $0 + $1.rows }
        cols = parts[0].cols
    }

    /// Bytes read by one matrix–vector product.
    var byteCount: Int { parts.reduce(0) { $0 + $1.byteCount } }

    /// Rows `0..<n` widened to f32 into `dst` (`n × cols`), exactly the values the integer kernels use.
    func dequantize(rows n: Int, into dst: UnsafeMutablePointer<Float>) {
        var base = 0
        for p in parts where base < n {
            for r in 0..<min(p.rows, n - base) { p.dequantizeRow(r, into: dst + (base + r) * cols) }
            base += p.rows
        }
    }

    /// `y[0..<rows] = W · x` for one activation vector already quantized (`xq`: `cols` int8, `xd`: `cols/32`
    /// scales), each part's rows split across `workers` threads in static ranges (so the result does not depend on
    /// timing).
    func multiply(xq: UnsafePointer<Int8>, xd: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                  workers: Int) {
        var base = 0
        for p in parts {
            let parts = max(1, min(workers, p.rows / 256))
            let size = (p.rows + parts - 1) / parts
            let out = y + base
            Parallel.forEach(parts, threads: workers) { i in
                let lo = i * size, n = min(p.rows, lo + size) - lo
                if n > 0 { p.multiply(rows: lo, n, xq: xq, xd: xd, into: out + lo) }
            }
            base += p.rows
        }
    }
}

extension QuantizedMatrix {
    /// A GGUF tensor's blocks in our layout: Q8_0, Q4_0, Q4_1 and Q4_K with their values unchanged, Q5_0 as Q8_0
    /// storage with the same values (code − 16, scale d); other types (Q6_K, Q5_K, …) dequantized
    /// (``GGUFQuants``) and re-quantized to Q8_0.
    static func fromGGUF(_ b: GGUFBlocks.Blocks) throws -> QuantizedMatrix {
        let rows = b.rows, cols = b.cols, src = b.bytes.baseAddress!
        func half(_ p: UnsafeRawPointer) -> Float { Convert.f16ToFloat(p.loadUnaligned(as: UInt16.self).littleEndian) }
        switch b.type {
        case .q4_K:
            let m = QuantizedMatrix(format: .q4_k, rows: rows, cols: cols)
            ck_q4k_from_ggml(src.assumingMemoryBound(to: UInt8.self), rows * cols / 256,
                             m.quants.assumingMemoryBound(to: UInt8.self), m.subScales!, m.scales)
            return m
        case .q8_0, .q5_0:
            let m = QuantizedMatrix(format: b.type == .q8_0 ? .q8_0 : .q5_0, rows: rows, cols: cols)
            let q = m.quants.assumingMemoryBound(to: Int8.self), size = b.type.blockGeometry.bytes
            for blk in 0..<(rows * cols / 32) {
                let p = src + blk * size
                m.scales[blk] = half(p)
                if b.type == .q8_0 {
                    for i in 0..<32 { q[blk * 32 + i] = Int8(bitPattern: p.load(fromByteOffset: 2 + i, as: UInt8.self)) }
                } else {
                    let qh = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
                    for i in 0..<16 {
                        let byte = p.load(fromByteOffset: 6 + i, as: UInt8.self)
                        let lo = Int(byte & 15) | Int((qh >> UInt32(i)) & 1) << 4
                        let hi = Int(byte >> 4) | Int((qh >> UInt32(i + 16)) & 1) << 4
                        q[blk * 32 + i] = Int8(lo - 16)
                        q[blk * 32 + 16 + i] = Int8(hi - 16)
                    }
                }
            }
            return m
        case .q4_0, .q4_1:
            let m = QuantizedMatrix(format: b.type == .q4_0 ? .q4_0 : .q4_1, rows: rows, cols: cols)
            let size = b.type.blockGeometry.bytes, off = b.type == .q4_0 ? 2 : 4
            for blk in 0..<(rows * cols / 32) {
                let p = src + blk * size
                m.scales[blk] = half(p)
                if let mins = m.mins { mins[blk] = half(p + 2) }
                (m.quants + blk * 16).copyMemory(from: p + off, byteCount: 16)
            }
            return m
        default:
            let f = UnsafeMutablePointer<Float>.allocate(capacity: rows * cols)
            defer { f.deallocate() }
            try GGUFQuants.dequantize(b.bytes, type: b.type, count: rows * cols, into: f)
            return QuantizedMatrix(format: .q8_0, rows: rows, cols: cols) { r, dst in dst.update(from: f + r * cols, count: cols) }
        }
    }
}
