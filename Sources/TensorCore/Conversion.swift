import CKernels

/// Element conversions between storage types and `Float`.
///
/// Rounding matches torch's CPU casts bit for bit: `f32 → bf16` and `f32 → f16` round to nearest,
/// ties to even (overflowing to ±inf); NaN stays NaN — as `0xFFFF` for bf16, the pattern torch's
/// vectorised cast writes, and with sign and top payload bits kept for f16 (F16C's rule);
/// `bf16/f16 → f32` are exact. Bulk routines dispatch to
/// AVX2/F16C kernels at run time (see `CKernels`).
public enum Convert {
    /// Exact widening of bf16 bit patterns.
    @inlinable
    public static func bf16ToFloat(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

    /// Round-to-nearest-even narrowing to bf16 bits; every NaN becomes `0xFFFF` (torch's choice).
    @inlinable
    public static func floatToBF16(_ x: Float) -> UInt16 {
        let u = x.bitPattern
        if u & 0x7FFF_FFFF > 0x7F80_0000 { return 0xFFFF }
        return UInt16(truncatingIfNeeded: (u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
    }

    public static func f16ToFloat(_ h: UInt16) -> Float { ck_f16_to_f32_scalar(h) }
    public static func floatToF16(_ x: Float) -> UInt16 { ck_f32_to_f16_scalar(x) }

    public static func bf16ToFloat(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        ck_bf16_to_f32(src, dst, count)
    }
    public static func floatToBF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
        ck_f32_to_bf16(src, dst, count)
    }
    public static func f16ToFloat(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        ck_f16_to_f32(src, dst, count)
    }
    public static func floatToF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
        ck_f32_to_f16(src, dst, count)
    }

    /// Decodes `count` elements of `dtype` at `src` (any alignment) into `dst` as `Float`.
    /// Integers convert exactly where representable (as torch's `.float()` does); `BOOL` gives 0/1.
    public static func toFloat(_ src: UnsafeRawPointer, dtype: DType, count: Int, into dst: UnsafeMutablePointer<Float>) {
        switch dtype {
        case .f32:
            dst.update(from: src.assumingMemoryBound(to: Float.self), count: count)  // memcpy; alignment-agnostic
        case .bf16:
            if Int(bitPattern: src) % 2 == 0 {
                bf16ToFloat(src.assumingMemoryBound(to: UInt16.self), dst, count: count)
            } else {
                for i in 0..<count { dst[i] = bf16ToFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
            }
        case .f16:
            if Int(bitPattern: src) % 2 == 0 {
                f16ToFloat(src.assumingMemoryBound(to: UInt16.self), dst, count: count)
            } else {
                for i in 0..<count { dst[i] = f16ToFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
            }
        case .f64: for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        case .i64: for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
        case .i32: for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
        case .i16: for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)) }
        case .i8: for i in 0..<count { dst[i] = Float(src.load(fromByteOffset: i, as: Int8.self)) }
        case .u64: for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)) }
        case .u32: for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }
        case .u16: for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .u8: for i in 0..<count { dst[i] = Float(src.load(fromByteOffset: i, as: UInt8.self)) }
        case .bool: for i in 0..<count { dst[i] = src.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0 }
        case .f8e4m3: for i in 0..<count { dst[i] = fp8E4M3ToFloat(src.load(fromByteOffset: i, as: UInt8.self)) }
        case .f8e5m2:  // the top byte of an IEEE half
            for i in 0..<count { dst[i] = f16ToFloat(UInt16(src.load(fromByteOffset: i, as: UInt8.self)) << 8) }
        }
    }

    /// Encodes `count` floats as `dtype` at `dst`. Floating types round to nearest even; integer
    /// types truncate toward zero (torch's `.to(int)`); `BOOL` stores `x != 0`.
    public static func fromFloat(_ src: UnsafePointer<Float>, count: Int, dtype: DType, into dst: UnsafeMutableRawPointer) {
        switch dtype {
        case .f32: dst.copyMemory(from: src, byteCount: 4 * count)
        case .bf16:
            if Int(bitPattern: dst) % 2 == 0 { floatToBF16(src, dst.assumingMemoryBound(to: UInt16.self), count: count) }
            else { for i in 0..<count { dst.storeBytes(of: floatToBF16(src[i]), toByteOffset: 2 * i, as: UInt16.self) } }
        case .f16:
            if Int(bitPattern: dst) % 2 == 0 { floatToF16(src, dst.assumingMemoryBound(to: UInt16.self), count: count) }
            else { for i in 0..<count { dst.storeBytes(of: floatToF16(src[i]), toByteOffset: 2 * i, as: UInt16.self) } }
        case .f64: for i in 0..<count { dst.storeBytes(of: Double(src[i]), toByteOffset: 8 * i, as: Double.self) }
        case .i64: for i in 0..<count { dst.storeBytes(of: Int64(src[i]), toByteOffset: 8 * i, as: Int64.self) }
        case .i32: for i in 0..<count { dst.storeBytes(of: Int32(src[i]), toByteOffset: 4 * i, as: Int32.self) }
        case .i16: for i in 0..<count { dst.storeBytes(of: Int16(src[i]), toByteOffset: 2 * i, as: Int16.self) }
        case .i8: for i in 0..<count { dst.storeBytes(of: Int8(src[i]), toByteOffset: i, as: Int8.self) }
        case .u64: for i in 0..<count { dst.storeBytes(of: UInt64(src[i]), toByteOffset: 8 * i, as: UInt64.self) }
        case .u32: for i in 0..<count { dst.storeBytes(of: UInt32(src[i]), toByteOffset: 4 * i, as: UInt32.self) }
        case .u16: for i in 0..<count { dst.storeBytes(of: UInt16(src[i]), toByteOffset: 2 * i, as: UInt16.self) }
        case .u8: for i in 0..<count { dst.storeBytes(of: UInt8(src[i]), toByteOffset: i, as: UInt8.self) }
        case .bool: for i in 0..<count { dst.storeBytes(of: UInt8(src[i] != 0 ? 1 : 0), toByteOffset: i, as: UInt8.self) }
        case .f8e4m3, .f8e5m2:
            preconditionFailure("writing \(dtype.rawValue) is not supported")
        }
    }

    /// f8 E4M3 (fn variant: no infinities, 0x7F/0xFF are NaN), exact.
    public static func fp8E4M3ToFloat(_ b: UInt8) -> Float {
        let sign: Float = b & 0x80 != 0 ? -1 : 1
        let e = Int((b >> 3) & 0xF), m = Int(b & 0x7)
        if e == 0xF && m == 0x7 { return .nan }
        if e == 0 { return sign * Float(m) * 0x1p-9 }
        return sign * (1 + Float(m) / 8) * Float(sign: .plus, exponent: e - 7, significand: 1)
    }
}
