import Foundation
import TensorCore

/// Dequantisation of ggml block formats to f32.
///
/// Each kernel reproduces `gguf.quants.dequantize` (gguf-py 0.19, numpy float32 arithmetic) bit for bit:
/// the same operations in the same order, each rounded to f32, never fused (Swift does not contract
/// `a * b + c` into an FMA). Block layouts are ggml's (`ggml-common.h`); within a block the element
/// order is the one the reference produces. Input is `count / blockElements` whole blocks, output is
/// `count` contiguous floats.
public enum GGUFQuants {
    public struct Unsupported: Error, CustomStringConvertible {
        public let type: GGMLType
        public var description: String {
            "dequantisation of \(type) is not supported (supported: \(GGUFQuants.supported.map(\.description).joined(separator: ", ")))"
        }
    }

    public static let supported: [GGMLType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q4_K, .q5_K, .q6_K]

    /// Dequantises `count` elements of `type` from `src` into `dst`.
    /// `src` must hold exactly `count / blockElements × blockBytes` bytes.
    public static func dequantize(_ src: UnsafeRawBufferPointer, type: GGMLType, count: Int,
                                  into dst: UnsafeMutablePointer<Float>) throws {
        let (be, bb) = type.blockGeometry
        precondition(count % be == 0 && src.count == count / be * bb, "GGUFQuants: byte count does not match element count")
        let nb = count / be
        guard let p = src.baseAddress else { return }
        switch type {
        case .f32: Convert.toFloat(p, dtype: .f32, count: count, into: dst)
        case .f16: Convert.toFloat(p, dtype: .f16, count: count, into: dst)
        case .bf16: Convert.toFloat(p, dtype: .bf16, count: count, into: dst)
        case .q8_0: q8_0(p, nb, dst)
        case .q4_0: q4_0(p, nb, dst)
        case .q4_1: q4_1(p, nb, dst)
        case .q5_0: q5_0(p, nb, dst)
        case .q4_K: q4_K(p, nb, dst)
        case .q5_K: q5_K(p, nb, dst)
        case .q6_K: q6_K(p, nb, dst)
        default: throw Unsupported(type: type)
        }
    }

    @inline(__always) static func half(_ p: UnsafeRawPointer, _ o: Int) -> Float {
        Convert.f16ToFloat(p.loadUnaligned(fromByteOffset: o, as: UInt16.self).littleEndian)
    }

    /// Q8_0: 34-byte blocks of 32 — f16 `d`, 32 × int8 `q`; `y = q · d`.
    static func q8_0(_ p: UnsafeRawPointer, _ nb: Int, _ y: UnsafeMutablePointer<Float>) {
        let q = p.assumingMemoryBound(to: Int8.self)
        for b in 0..<nb {
            let o = b &* 34
            let d = half(p, o)
            let out = y + b &* 32
            for j in 0..<32 { out[j] = Float(q[o &+ 2 &+ j]) * d }
        }
    }

    /// Q4_0: 18-byte blocks of 32 — f16 `d`, 16 bytes of nibbles; element `j` is the low nibble of
    /// byte `j`, element `j+16` the high nibble; `y = d · (q − 8)`.
    static func q4_0(_ p: UnsafeRawPointer, _ nb: Int, _ y: UnsafeMutablePointer<Float>) {
        let u = p.assumingMemoryBound(to: UInt8.self)
        for b in 0..<nb {
            let o = b &* 18
            let d = half(p, o)
            let out = y + b &* 32
            for j in 0..<16 {
                let v = u[o &+ 2 &+ j]
                out[j] = d * Float(Int(v & 0x0F) &- 8)
                out[j &+ 16] = d * Float(Int(v >> 4) &- 8)
            }
        }
    }

    /// Q4_1: 20-byte blocks of 32 — f16 `d`, f16 `m`, 16 bytes of nibbles (order as Q4_0); `y = d · q + m`.
    static func q4_1(_ p: UnsafeRawPointer, _ nb: Int, _ y: UnsafeMutablePointer<Float>) {
        let u = p.assumingMemoryBound(to: UInt8.self)
        for b in 0..<nb {
            let o = b &* 20
            let d = half(p, o), m = half(p, o &+ 2)
            let out = y + b &* 32
            for j in 0..<16 {
                let v = u[o &+ 4 &+ j]
                out[j] = d * Float(v & 0x0F) + m
                out[j &+ 16] = d * Float(v >> 4) + m
            }
        }
    }

    /// Q5_0: 22-byte blocks of 32 — f16 `d`, 32 high bits `qh` (u32), 16 bytes of nibbles; element `j` is the low
    /// nibble of byte `j` plus bit `j` of `qh` as its fifth bit, element `j+16` the high nibble plus bit `j+16`;
    /// `y = d · (q − 16)`.
    static func q5_0(_ p: UnsafeRawPointer, _ nb: Int, _ y: UnsafeMutablePointer<Float>) {
        let u = p.assumingMemoryBound(to: UInt8.self)
        for b in 0..<nb {
            let o = b &* 22
            let d = half(p, o)
            let qh = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: o &+ 2, as: UInt32.self))
            let out = y + b &* 32
            for j in 0..<16 {
                let v = u[o &+ 6 &+ j]
                let lo = Int(v & 0x0F) | Int((qh >> UInt32(j)) & 1) << 4
                let hi = Int(v >> 4) | Int((qh >> UInt32(j &+ 16)) & 1) << 4
                out[j] = d * Float(lo &- 16)
                out[j &+ 16] = d * Float(hi &- 16)
            }
        }
    }

    /// The eight 6-bit (scale, min) pairs of a Q4_K/Q5_K block from its 12 packed bytes (`get_scale_min_k4`).
    @inline(__always) static func scaleMin(_ s: UnsafePointer<UInt8>, _ i: Int) -> (Float, Float) {
        if i < 4 { return (Float(s[i] & 0x3F), Float(s[i &+ 4] & 0x3F)) }
        let sc = (s[i &+ 4] & 0x0F) | ((s[i &- 4] >> 2) & 0x30)
        let mn = (s[i &+ 4] >> 4) | ((s[i] >> 2) & 0x30)
        return (Float(sc), Float(mn))
    }

    /// Q4_K: 144-byte super-blocks of 256 — f16 `d`, f16 `dmin`, 12 bytes of 6-bit scales/mins,
    /// 128 bytes of nibbles. Sub-block `i` (32 elements) has scale `d·sc_i` and offset `dmin·m_i`;
    /// element `64j + 32s + l` is nibble `s` of byte `32j + l`; `y = (d·sc)·q − dmin·m`.
    static func q4_K(_ p: UnsafeRawPointer, _ nb: Int, _ y: UnsafeMutablePointer<Float>) {
        let u = p.assumingMemoryBound(to: UInt8.self)
        for b in 0..<nb {
            let o = b &* 144
            let d = half(p, o), dmin = half(p, o &+ 2)
            let sc = u + (o &+ 4), qs = u + (o &+ 16)
            let out = y + b &* 256
            for i in 0..<8 {
                let (s, m) = scaleMin(sc, i)
                let ds = d * s, dm = dmin * m
                let j = i >> 1, shift = UInt8((i & 1) &* 4)
                for l in 0..<32 {
                    let q = (qs[j &* 32 &+ l] >> shift) & 0x0F
                    out[i &* 32 &+ l] = ds * Float(q) - dm
                }
            }
        }
    }

    /// Q5_K: 176-byte super-blocks of 256 — f16 `d`, f16 `dmin`, 12 bytes of scales/mins, 32 bytes of
    /// high bits (`qh`), 128 bytes of nibbles. Element `32i + l` has low nibble as in Q4_K and high
    /// bit `i` of `qh[l]`; `y = (d·sc)·q − dmin·m`.
    static func q5_K(_ p: UnsafeRawPointer, _ nb: Int, _ y: UnsafeMutablePointer<Float>) {
        let u = p.assumingMemoryBound(to: UInt8.self)
        for b in 0..<nb {
            let o = b &* 176
            let d = half(p, o), dmin = half(p, o &+ 2)
            let sc = u + (o &+ 4), qh = u + (o &+ 16), qs = u + (o &+ 48)
            let out = y + b &* 256
            for i in 0..<8 {
                let (s, m) = scaleMin(sc, i)
                let ds = d * s, dm = dmin * m
                let j = i >> 1, shift = UInt8((i & 1) &* 4)
                for l in 0..<32 {
                    let lo = (qs[j &* 32 &+ l] >> shift) & 0x0F
                    let hi = (qh[l] >> UInt8(i)) & 1
                    out[i &* 32 &+ l] = ds * Float(lo | (hi << 4)) - dm
                }
            }
        }
    }

    /// Q6_K: 210-byte super-blocks of 256 — 128 bytes `ql` (low nibbles), 64 bytes `qh` (2 high bits),
    /// 16 int8 scales, f16 `d`. In half `h` (128 elements), element `r` takes nibble `r/64` of
    /// `ql[64h + r%64]` and bits `2·(r/32)` of `qh[32h + r%32]`; `q` is that 6-bit value − 32;
    /// `y = (d·scale[e/16])·q`.
    static func q6_K(_ p: UnsafeRawPointer, _ nb: Int, _ y: UnsafeMutablePointer<Float>) {
        let u = p.assumingMemoryBound(to: UInt8.self)
        let s8 = p.assumingMemoryBound(to: Int8.self)
        for b in 0..<nb {
            let o = b &* 210
            let ql = u + o, qh = u + (o &+ 128), sc = s8 + (o &+ 192)
            let d = half(p, o &+ 208)
            let out = y + b &* 256
            for g in 0..<16 {
                let ds = d * Float(sc[g])
                for k in 0..<16 {
                    let e = g &* 16 &+ k
                    let h = e >> 7, r = e & 127
                    let lo = (ql[h &* 64 &+ (r & 63)] >> UInt8((r >> 6) &* 4)) & 0x0F
                    let hi = (qh[h &* 32 &+ (r & 31)] >> UInt8((r >> 5) &* 2)) & 0x03
                    out[e] = ds * Float(Int(lo | (hi << 4)) &- 32)
                }
            }
        }
    }
}
