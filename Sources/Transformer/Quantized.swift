import CKernels
import Dispatch
import Foundation

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

    /// 4-bit nibbles (Q4_0, Q4_1) rather than int8 (Q8_0).
    var isFourBit: Bool { self == .q4_0 || self == .q4_1 }
}

/// A `[rows, cols]` weight matrix in blocks of 32 along `cols` (layout: `ck_q8_matvec` / `ck_q4_matvec` in
/// CKernels.h). Matrix–vector products (decoding) run on integer dot products of the quantized weights and the
/// activations quantized to Q8_0; larger products widen the quantized weights to f32 for BLAS, so prefill and
/// decoding compute with the same weights.
final class QuantizedMatrix: @unchecked Sendable {
    let format: WeightFormat
    let rows: Int
    let cols: Int
    /// Q8_0: `rows·cols` int8; Q4_0/Q4_1: `rows·cols/2` bytes.
    let quants: UnsafeMutableRawPointer
    /// `rows · cols/32` block scales.
    let scales: UnsafeMutablePointer<Float>
    /// Q4_1: `rows · cols/32` block minimums; nil otherwise.
    let mins: UnsafeMutablePointer<Float>?

    var blocksPerRow: Int { cols / 32 }
    var bytesPerRow: Int { format.isFourBit ? cols / 2 : cols }
    /// Bytes read by one matrix–vector product.
    var byteCount: Int { rows * (bytesPerRow + blocksPerRow * (mins == nil ? 4 : 8)) }

    /// Quantizes `rows` rows given by `row(r, into:)` (each `cols` f32 values). `cols` must be a multiple of 32.
    init(format: WeightFormat, rows: Int, cols: Int, row: (Int, UnsafeMutablePointer<Float>) -> Void) {
        precondition(format != .stored && cols % 32 == 0)
        self.format = format
        self.rows = rows
        self.cols = cols
        let perRow = format.isFourBit ? cols / 2 : cols, nb = cols / 32
        quants = UnsafeMutableRawPointer.allocate(byteCount: max(1, rows * perRow), alignment: 64)
        scales = UnsafeMutablePointer<Float>.allocate(capacity: max(1, rows * nb))
        mins = format == .q4_1 ? UnsafeMutablePointer<Float>.allocate(capacity: max(1, rows * nb)) : nil
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: cols)
        defer { buffer.deallocate() }
        for r in 0..<rows {
            row(r, buffer)
            let d = scales + r * nb, q = quants + r * perRow
            switch format {
            case .q8_0: ck_q8_quantize(buffer, cols, q.assumingMemoryBound(to: Int8.self), d)
            case .q4_0: ck_q4_quantize(buffer, cols, q.assumingMemoryBound(to: UInt8.self), d)
            case .q4_1: ck_q4_1_quantize(buffer, cols, q.assumingMemoryBound(to: UInt8.self), d, mins! + r * nb)
            case .stored: break
            }
        }
    }

    deinit {
        quants.deallocate()
        scales.deallocate()
        mins?.deallocate()
    }

    /// Rows `0..<n` widened to f32 into `dst` (`n × cols`), exactly the values the integer kernels use.
    func dequantize(rows n: Int, into dst: UnsafeMutablePointer<Float>) {
        let nb = blocksPerRow, perRow = bytesPerRow
        for r in 0..<n {
            let out = dst + r &* cols, d = scales + r &* nb
            if format == .q8_0 {
                let q = (quants + r &* perRow).assumingMemoryBound(to: Int8.self)
                for i in 0..<cols { out[i] = Float(q[i]) * d[i >> 5] }
            } else {
                let q = (quants + r &* perRow).assumingMemoryBound(to: UInt8.self)
                let m = mins.map { $0 + r &* nb }
                for b in 0..<nb {
                    for i in 0..<16 {
                        let byte = q[b &* 16 &+ i]
                        if let m {
                            out[b &* 32 &+ i] = Float(byte & 15) * d[b] + m[b]
                            out[b &* 32 &+ 16 &+ i] = Float(byte >> 4) * d[b] + m[b]
                        } else {
                            out[b &* 32 &+ i] = Float(Int(byte & 15) &- 8) * d[b]
                            out[b &* 32 &+ 16 &+ i] = Float(Int(byte >> 4) &- 8) * d[b]
                        }
                    }
                }
            }
        }
    }

    /// `y[0..<rows] = W · x` for one activation vector already quantized (`xq`: `cols` int8, `xd`: `cols/32`
    /// scales), rows split across `workers` threads in static ranges (so the result does not depend on timing).
    func multiply(xq: UnsafePointer<Int8>, xd: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                  workers: Int) {
        let parts = max(1, min(workers, rows / 256))
        let size = (rows + parts - 1) / parts
        nonisolated(unsafe) let out = y, xqp = xq, xdp = xd
        let body: @Sendable (Int) -> Void = { p in
            let lo = p * size, n = min(self.rows, lo + size) - lo
            guard n > 0 else { return }
            let d = self.scales + lo * self.blocksPerRow
            if self.format == .q8_0 {
                let w = (self.quants + lo * self.bytesPerRow).assumingMemoryBound(to: Int8.self)
                ck_q8_matvec(w, d, n, self.cols, xqp, xdp, out + lo)
            } else {
                let w = (self.quants + lo * self.bytesPerRow).assumingMemoryBound(to: UInt8.self)
                ck_q4_matvec(w, d, self.mins.map { $0 + lo * self.blocksPerRow }, n, self.cols, xqp, xdp, out + lo)
            }
        }
        if parts == 1 { body(0) } else { DispatchQueue.concurrentPerform(iterations: parts, execute: body) }
    }
}
