import Foundation

/// The project's one deterministic pseudo-random source: SplitMix64 (Steele, Lea & Flood 2014; reference
/// outputs for seed 0: `0xe220a8397b1dcdaf`, `0x6e789e6aa1b965f4`, `0x06c45d188009454f`), with uniform doubles,
/// unbiased integers, normal samples (Box–Muller) and the helpers the task generators need.
///
/// Random models, test data, evaluation samples and sampling streams are identical on every machine for a given
/// seed. The whole state (`state` and the Box–Muller `spare`) is public and `Codable`, so a checkpoint can
/// save and restore a generator exactly.
public struct SeededRandom: Sendable, Codable, Equatable {
    /// The SplitMix64 counter.
    public var state: UInt64
    /// The second Box–Muller sample, returned by the next `normal()` call.
    public var spare: Float?

    public init(seed: UInt64) { state = seed }

    /// A generator seeded from several components (FNV-1a over their bytes, each part followed by `0xff`).
    public init(_ parts: [String]) {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for p in parts {
            for b in p.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
            h = (h ^ 0xff) &* 0x0000_0100_0000_01b3
        }
        state = h
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform double in [0, 1): the top 53 bits of `next()` times 2⁻⁵³.
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Standard normal sample (Box–Muller on two `uniform()` draws; the sine half is kept for the next call).
    public mutating func normal() -> Float {
        if let s = spare { spare = nil; return s }
        let u1 = max(uniform(), 1e-300), u2 = uniform()
        let r = (-2 * log(u1)).squareRoot()
        spare = Float(r * sin(2 * .pi * u2))
        return Float(r * cos(2 * .pi * u2))
    }

    /// Uniform integer in `range` (inclusive), unbiased (rejection sampling).
    public mutating func int(_ range: ClosedRange<Int>) -> Int {
        let span = UInt64(range.upperBound - range.lowerBound) &+ 1
        if span == 0 { return Int(truncatingIfNeeded: next()) }
        let limit = UInt64.max - (UInt64.max % span)
        var x = next()
        while x >= limit { x = next() }
        return range.lowerBound + Int(x % span)
    }

    public mutating func choice<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }

    /// Fisher–Yates shuffle from the last element down.
    public mutating func shuffle<T>(_ items: inout [T]) {
        guard items.count > 1 else { return }
        for i in stride(from: items.count - 1, to: 0, by: -1) { items.swapAt(i, int(0...i)) }
    }

    /// `k` distinct elements of `0..<n` in random order (Floyd's algorithm, then shuffled).
    public mutating func sample(_ n: Int, _ k: Int) -> [Int] {
        precondition(k <= n, "cannot sample \(k) of \(n)")
        var chosen = Set<Int>(), order: [Int] = []
        for j in (n - k)..<n {
            let t = int(0...j)
            if chosen.contains(t) { chosen.insert(j); order.append(j) } else { chosen.insert(t); order.append(t) }
        }
        shuffle(&order)
        return order
    }

    /// A version-4 UUID string, lower-case (as Python's `str(uuid.UUID(int=…, version=4))`).
    public mutating func uuid() -> String {
        var bytes = [UInt8](repeating: 0, count: 16)
        let a = next(), b = next()
        for i in 0..<8 { bytes[i] = UInt8(truncatingIfNeeded: a >> (8 * UInt64(i))) }
        for i in 0..<8 { bytes[8 + i] = UInt8(truncatingIfNeeded: b >> (8 * UInt64(i))) }
        bytes[6] = (bytes[6] & 0x0f) | 0x40
        bytes[8] = (bytes[8] & 0x3f) | 0x80
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(36)
        for (i, b) in bytes.enumerated() {
            if i == 4 || i == 6 || i == 8 || i == 10 { out.append(UInt8(ascii: "-")) }
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `count` random letters from `alphabet`.
    public mutating func letters(_ count: Int, from alphabet: [Character]) -> String {
        String((0..<count).map { _ in alphabet[int(0...(alphabet.count - 1))] })
    }
}
