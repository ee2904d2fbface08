import Foundation

/// Character classes used by the split patterns (bit flags over one Unicode scalar).
/// `letter` is general category L*, `number` N* (Rust `char::is_numeric`, regex `\p{N}`),
/// `space` the White_Space property (regex `\s`, Rust `char::is_whitespace`), `newline` `\r` or `\n`.
enum CharClass {
    static let letter: UInt8 = 1
    static let number: UInt8 = 2
    static let space: UInt8 = 4
    static let newline: UInt8 = 8

    static let ascii: [UInt8] = (0..<128).map { classify(slow: UInt32($0)) }

    @inline(__always) static func of(_ s: UInt32) -> UInt8 {
        s < 128 ? ascii[Int(s)] : classify(slow: s)
    }

    static func classify(slow s: UInt32) -> UInt8 {
        guard let u = Unicode.Scalar(s) else { return 0 }
        var c: UInt8 = 0
        let p = u.properties
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: c |= letter
        case .decimalNumber, .letterNumber, .otherNumber: c |= number
        default: break
        }
        if p.isWhitespace { c |= space }
        if s == 0x0A || s == 0x0D { c |= newline }
        return c
    }
}

/// GPT-2's reversible byte ↔ printable-character table (`bytes_to_unicode`).
enum ByteLevelTable {
    static let byteToScalar: [UInt32] = {
        var bs = [Int]()
        bs += Array(33...126); bs += Array(161...172); bs += Array(174...255)
        var table = [UInt32](repeating: 0, count: 256)
        for b in bs { table[b] = UInt32(b) }
        var n = 0
        for b in 0..<256 where !bs.contains(b) { table[b] = UInt32(256 + n); n += 1 }
        return table
    }()
    static let scalarToByte: [UInt32: UInt8] = {
        var d = [UInt32: UInt8]()
        for (b, s) in byteToScalar.enumerated() { d[s] = UInt8(b) }
        return d
    }()
}

extension Array where Element == UInt32 {
    init(scalarsOf s: String) {
        self.init()
        reserveCapacity(s.utf8.count)
        for u in s.unicodeScalars { append(u.value) }
    }
    var string: String {
        var s = String.UnicodeScalarView()
        for v in self { if let u = Unicode.Scalar(v) { s.append(u) } }
        return String(s)
    }
    /// UTF-8 bytes of these scalars.
    func utf8Bytes() -> [UInt8] {
        var out = [UInt8](); out.reserveCapacity(count)
        for v in self { appendUTF8(v, to: &out) }
        return out
    }
}

@inline(__always) func appendUTF8(_ v: UInt32, to out: inout [UInt8]) {
    if v < 0x80 { out.append(UInt8(v)) }
    else if v < 0x800 { out.append(UInt8(0xC0 | (v >> 6))); out.append(UInt8(0x80 | (v & 0x3F))) }
    else if v < 0x10000 {
        out.append(UInt8(0xE0 | (v >> 12))); out.append(UInt8(0x80 | ((v >> 6) & 0x3F))); out.append(UInt8(0x80 | (v & 0x3F)))
    } else {
        out.append(UInt8(0xF0 | (v >> 18))); out.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
        out.append(UInt8(0x80 | ((v >> 6) & 0x3F))); out.append(UInt8(0x80 | (v & 0x3F)))
    }
}
