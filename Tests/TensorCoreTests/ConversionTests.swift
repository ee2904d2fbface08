import Foundation
import Testing
import TestSupport
@testable import TensorCore

@Suite("dtype conversions")
struct ConversionTests {
    /// Reference rounding written independently of the library: exact rational arithmetic in
    /// Double (every Float and every bf16 value is a Double, so the midpoint test is exact).
    static func referenceBF16(_ x: Float) -> UInt16 {
        if x.isNaN { return 0xFFFF }  // torch's vectorised CPU cast
        let u = x.bitPattern
        let lo = UInt16(truncatingIfNeeded: u >> 16)  // truncation toward zero in magnitude
        // bf16 patterns read as exact Doubles; the pattern after the largest finite one reads as
        // ±2^128 (where IEEE rounding to infinity happens), not as infinity.
        func value(_ p: UInt16) -> Double {
            let sign: Double = p & 0x8000 != 0 ? -1 : 1
            let e = Int((p >> 7) & 0xFF), m = Double(p & 0x7F)
            return e == 0 ? sign * m * 0x1p-133 : sign * (1 + m / 128) * Double(sign: .plus, exponent: e - 127, significand: 1)
        }
        let a = value(lo), b = value(lo &+ 1)
        let v = Double(x)
        if v == a { return lo }
        let da = abs(v - a), db = abs(b - v)
        if da < db { return lo }
        if db < da { return lo &+ 1 }
        return lo & 1 == 0 ? lo : lo &+ 1
    }

    @Test func bf16KnownValues() {
        #expect(Convert.floatToBF16(1.0) == 0x3F80)
        #expect(Convert.floatToBF16(Float.pi) == 0x4049)
        #expect(Convert.floatToBF16(65504) == 0x4780)
        #expect(Convert.floatToBF16(.infinity) == 0x7F80)
        #expect(Convert.floatToBF16(-.infinity) == 0xFF80)
        #expect(Convert.floatToBF16(Float.greatestFiniteMagnitude) == 0x7F80)  // rounds up to inf, as torch does
        #expect(Convert.floatToBF16(-0.0) == 0x8000)
        #expect(Convert.floatToBF16(Float(bitPattern: 0x3F80_8000)) == 0x3F80)  // tie → even
        #expect(Convert.floatToBF16(Float(bitPattern: 0x3F81_8000)) == 0x3F82)  // tie → even (up)
        #expect(Convert.floatToBF16(Float(bitPattern: 0x0000_8001)) == 0x0001)  // subnormal above the tie
        #expect(Convert.bf16ToFloat(Convert.floatToBF16(.nan)).isNaN)
        #expect(Convert.floatToBF16(Float(bitPattern: 0x7F80_0001)) == 0xFFFF)  // signalling NaN stays NaN
    }

    @Test func bf16BulkMatchesScalarAndReference() {
        var rng = SplitMix(seed: 7)
        let n = 100_003
        var xs = [Float](repeating: 0, count: n)
        for i in 0..<n { xs[i] = Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) }
        xs[0] = .nan; xs[1] = -.infinity; xs[2] = Float(bitPattern: 0x0000_8000); xs[3] = Float(bitPattern: 0x7F7F_FFFF)
        var bulk = [UInt16](repeating: 0, count: n)
        xs.withUnsafeBufferPointer { s in bulk.withUnsafeMutableBufferPointer { d in
            Convert.floatToBF16(s.baseAddress!, d.baseAddress!, count: n) } }
        var mismatches = 0
        for i in 0..<n where bulk[i] != Self.referenceBF16(xs[i]) || Convert.floatToBF16(xs[i]) != bulk[i] { mismatches += 1 }
        #expect(mismatches == 0)
        var back = [Float](repeating: 0, count: n)
        bulk.withUnsafeBufferPointer { s in back.withUnsafeMutableBufferPointer { d in
            Convert.bf16ToFloat(s.baseAddress!, d.baseAddress!, count: n) } }
        for i in 0..<n { #expect(back[i].bitPattern == UInt32(bulk[i]) << 16) }
    }

    @Test func f16MatchesSwiftFloat16Everywhere() {
        // Swift's Float16 conversion is IEEE round-to-nearest-even: an independent reference.
        for h in 0...0xFFFF {
            let f = Convert.f16ToFloat(UInt16(h))
            let ref = Float(Float16(bitPattern: UInt16(h)))
            if ref.isNaN { #expect(f.isNaN) } else { #expect(f.bitPattern == ref.bitPattern) }
        }
        var rng = SplitMix(seed: 11)
        let n = 200_000
        var xs = [Float](repeating: 0, count: n)
        for i in 0..<n {
            // Concentrate on the half range, including subnormals and overflow boundaries.
            let e = Int(rng.next() % 44) - 28
            xs[i] = Float(sign: rng.next() & 1 == 0 ? .plus : .minus, exponent: e, significand: 1 + Float(rng.next() % (1 << 23)) / Float(1 << 23))
        }
        xs += [65504, 65519.99, 65520, 1e-8, 2.9802322e-08, 5.9604645e-08, .infinity, 0]
        var bulk = [UInt16](repeating: 0, count: xs.count)
        xs.withUnsafeBufferPointer { s in bulk.withUnsafeMutableBufferPointer { d in
            Convert.floatToF16(s.baseAddress!, d.baseAddress!, count: xs.count) } }
        for (i, x) in xs.enumerated() {
            let ref = Float16(x).bitPattern
            #expect(bulk[i] == ref, "f32→f16 of \(x)")
        }
        #expect(Convert.f16ToFloat(Convert.floatToF16(.nan)).isNaN)
    }

    @Test func tensorRoundTripsThroughDtypes() {
        let v: [Float] = [0, 1, -2.5, 3.140625, 1e-3, -65504]
        let t = Tensor(shape: [2, 3], floats: v)
        #expect(t.converted(to: .bf16).converted(to: .f32).floats() == v.map { Convert.bf16ToFloat(Convert.floatToBF16($0)) })
        #expect(t.converted(to: .f16).floats() == v.map { Float(Float16($0)) })
        #expect(t.converted(to: .i64).floats() == v.map { Float(Int64($0)) })
        #expect(t.strides == [3, 1])
        #expect(t.reshaped([3, 2]).shape == [3, 2])
    }
}

/// Test-local generator (independent of the library's own).
struct SplitMix {
    var s: UInt64
    init(seed: UInt64) { s = seed }
    mutating func next() -> UInt64 {
        s &+= 0x9E37_79B9_7F4A_7C15
        var z = s
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func float() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }
}
