import Basics
import Foundation
import ModelIO

/// A tokenizer file error: names the file and what is wrong.
public struct TokenizerError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let message: String
    public init(_ path: String, _ message: String) { self.path = path; self.message = message }
    public var description: String { "\(path): \(message)" }
}

extension JSONValue {
    /// The array at `key` of this object: empty when the key is absent or null, an error naming `field` when the
    /// value is of another JSON type (a string or object where a list belongs would silently change the ids).
    func list(_ key: String, field: String, path: String) throws -> [JSONValue] {
        guard let v = self[key], !v.isNull else { return [] }
        guard let a = v.arrayValue else { throw TokenizerError(path, "\(field) must be a JSON array") }
        return a
    }
}

/// A piece of text moving through the pipeline: its scalars and whether it starts at offset 0 of
/// the input (Metaspace's `prepend_scheme: first` looks at that).
struct Piece {
    var s: [UInt32]
    var atStart: Bool
}

// MARK: - Normalizers

indirect enum Normalizer {
    case sequence([Normalizer])
    case nfc, nfd, nfkc, nfkd
    case lowercase
    case prepend([UInt32])
    case replace(SplitPattern, [UInt32])
    case strip(left: Bool, right: Bool)

    /// Largest factor by which a normalizer chain may lengthen a text (real tokenizers stay at 1–3): a chain of
    /// `Replace`s that each double the text would otherwise grow it exponentially.
    static let maxGrowth = 64

    /// A bound on the output length for an input of n scalars: at most `factor`·n + `constant` (saturating).
    var growth: (factor: Int, constant: Int) {
        func cap(_ x: Int) -> Int { min(x, 1 << 40) }
        switch self {
        case .sequence(let ns):
            return ns.reduce((1, 0)) { acc, n in
                let g = n.growth
                return (cap(acc.0.multipliedReportingOverflow(by: g.factor).overflow ? 1 << 40 : acc.0 * g.factor),
                        cap(acc.1.multipliedReportingOverflow(by: g.factor).overflow ? 1 << 40 : acc.1 * g.factor + g.constant))
            }
        case .nfc, .nfd, .nfkc, .nfkd, .strip: return (1, 0)
        case .lowercase: return (3, 0)
        case .prepend(let p): return (1, p.count)
        case .replace(let pat, let content):
            // Every match consumes at least one scalar (a literal: all of it) and becomes `content`.
            if case .literal(let lit) = pat, !lit.isEmpty { return (max(1, (content.count + lit.count - 1) / lit.count), 0) }
            return (max(1, content.count), 0)
        }
    }

    /// The normalizer of `v`, refused when its chain could lengthen text by more than ``maxGrowth``.
    static func parse(_ v: JSONValue?, path: String) throws -> Normalizer? {
        guard let n = try parseOne(v, path: path) else { return nil }
        let g = n.growth
        guard g.factor <= maxGrowth, g.constant <= 1 << 16 else {
            throw TokenizerError(path, "normalizer can lengthen a text by a factor of \(g.factor >= 1 << 40 ? "more than 2^40" : String(g.factor)) (at most \(maxGrowth) is accepted): its Replace/Prepend chain expands without bound")
        }
        return n
    }

    static func parseOne(_ v: JSONValue?, path: String) throws -> Normalizer? {
        guard let v, !v.isNull else { return nil }
        guard let type = v["type"]?.stringValue else { throw TokenizerError(path, "normalizer without a type") }
        switch type {
        case "Sequence":
            return .sequence(try v.list("normalizers", field: "normalizer.normalizers", path: path).compactMap { try parseOne($0, path: path) })
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "Lowercase": return .lowercase
        case "Prepend": return .prepend([UInt32](scalarsOf: v["prepend"]?.stringValue ?? ""))
        case "Replace":
            return .replace(try parsePattern(v["pattern"], path: path), [UInt32](scalarsOf: v["content"]?.stringValue ?? ""))
        case "Strip":
            return .strip(left: v["strip_left"]?.boolValue ?? true, right: v["strip_right"]?.boolValue ?? true)
        default: throw TokenizerError(path, "unsupported normalizer type '\(type)'")
        }
    }

    func apply(_ s: [UInt32]) -> [UInt32] {
        switch self {
        case .sequence(let ns): return ns.reduce(s) { $1.apply($0) }
        case .nfc: return [UInt32](scalarsOf: s.string.precomposedStringWithCanonicalMapping)
        case .nfd: return [UInt32](scalarsOf: s.string.decomposedStringWithCanonicalMapping)
        case .nfkc: return [UInt32](scalarsOf: s.string.precomposedStringWithCompatibilityMapping)
        case .nfkd: return [UInt32](scalarsOf: s.string.decomposedStringWithCompatibilityMapping)
        case .lowercase:
            var out = [UInt32]()
            for v in s {
                guard let u = Unicode.Scalar(v) else { continue }
                for l in u.properties.lowercaseMapping.unicodeScalars { out.append(l.value) }
            }
            return out
        case .prepend(let p): return s.isEmpty ? s : p + s
        case .replace(let pat, let content): return replaceAll(s, pat, content)
        case .strip(let left, let right):
            var a = 0, b = s.count
            if left { while a < b && CharClass.of(s[a]) & CharClass.space != 0 { a += 1 } }
            if right { while b > a && CharClass.of(s[b - 1]) & CharClass.space != 0 { b -= 1 } }
            return Array(s[a..<b])
        }
    }
}

func replaceAll(_ s: [UInt32], _ pat: SplitPattern, _ content: [UInt32]) -> [UInt32] {
    let ms = pat.matches(s)
    if ms.isEmpty { return s }
    var out = [UInt32](); out.reserveCapacity(s.count)
    var prev = 0
    for m in ms { out += s[prev..<m.lowerBound]; out += content; prev = m.upperBound }
    out += s[prev...]
    return out
}

/// `{"String": "…"}` or `{"Regex": "…"}`.
func parsePattern(_ v: JSONValue?, path: String) throws -> SplitPattern {
    if let s = v?["String"]?.stringValue { return .literal([UInt32](scalarsOf: s)) }
    if let r = v?["Regex"]?.stringValue { return try SplitPattern.regex(r, path: path) }
    throw TokenizerError(path, "pattern must be {\"String\": …} or {\"Regex\": …}")
}

// MARK: - Pre-tokenizers

indirect enum PreTokenizer {
    case sequence([PreTokenizer])
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case split(SplitPattern, SplitBehavior, invert: Bool)
    case digits(individual: Bool)
    case metaspace(replacement: UInt32, prepend: String, split: Bool)
    case whitespaceSplit
    case punctuation(SplitBehavior)

    static func parse(_ v: JSONValue?, path: String) throws -> PreTokenizer? {
        guard let v, !v.isNull else { return nil }
        guard let type = v["type"]?.stringValue else { throw TokenizerError(path, "pre_tokenizer without a type") }
        switch type {
        case "Sequence":
            return .sequence(try v.list("pretokenizers", field: "pre_tokenizer.pretokenizers", path: path).compactMap { try parse($0, path: path) })
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: v["add_prefix_space"]?.boolValue ?? true, useRegex: v["use_regex"]?.boolValue ?? true)
        case "Split":
            let b = v["behavior"]?.stringValue ?? "Isolated"
            guard let behavior = SplitBehavior(rawValue: b) else { throw TokenizerError(path, "unknown split behavior '\(b)'") }
            return .split(try parsePattern(v["pattern"], path: path), behavior, invert: v["invert"]?.boolValue ?? false)
        case "Digits": return .digits(individual: v["individual_digits"]?.boolValue ?? false)
        case "Metaspace":
            let r = v["replacement"]?.stringValue ?? "\u{2581}"
            var scheme = v["prepend_scheme"]?.stringValue ?? "always"
            if v["prepend_scheme"] == nil, let add = v["add_prefix_space"]?.boolValue { scheme = add ? "always" : "never" }
            return .metaspace(replacement: r.unicodeScalars.first?.value ?? 0x2581, prepend: scheme, split: v["split"]?.boolValue ?? true)
        case "WhitespaceSplit": return .whitespaceSplit
        case "Whitespace":
            return .split(try SplitPattern.regex(#"\w+|[^\w\s]+"#, path: path), .isolated, invert: false)
        case "Punctuation":
            let b = v["behavior"]?.stringValue ?? "Isolated"
            return .punctuation(SplitBehavior(rawValue: b) ?? .isolated)
        default: throw TokenizerError(path, "unsupported pre_tokenizer type '\(type)'")
        }
    }

    /// Whether this pre-tokenizer maps bytes to GPT-2's byte-level alphabet.
    var isByteLevel: Bool {
        switch self {
        case .byteLevel: return true
        case .sequence(let ps): return ps.contains { $0.isByteLevel }
        default: return false
        }
    }

    func apply(_ pieces: inout [Piece]) {
        switch self {
        case .sequence(let ps): for p in ps { p.apply(&pieces) }
        case .byteLevel(let addPrefixSpace, let useRegex):
            var out = [Piece](); out.reserveCapacity(pieces.count * 4)
            for var p in pieces {
                if addPrefixSpace && p.s.first != 0x20 { p.s.insert(0x20, at: 0) }
                if useRegex {
                    let ranges = SplitPattern.gpt2.matches(p.s)
                    for (k, r) in ranges.enumerated() { out.append(Piece(s: PreTokenizer.byteMap(p.s[r]), atStart: p.atStart && k == 0)) }
                } else {
                    out.append(Piece(s: PreTokenizer.byteMap(p.s[...]), atStart: p.atStart))
                }
            }
            pieces = out
        case .split(let pat, let behavior, let invert):
            splitEach(&pieces) { s in behavior.apply(pat.matches(s), count: s.count, invert: invert) }
        case .digits(let individual):
            splitEach(&pieces) { s in
                let ms = SplitPattern.predicate { CharClass.of($0) & CharClass.number != 0 }.matches(s)
                return (individual ? SplitBehavior.isolated : .contiguous).apply(ms, count: s.count, invert: false)
            }
        case .whitespaceSplit:
            splitEach(&pieces) { s in
                SplitBehavior.removed.apply(SplitPattern.predicate { CharClass.of($0) & CharClass.space != 0 }.matches(s), count: s.count, invert: false)
            }
        case .punctuation(let behavior):
            splitEach(&pieces) { s in
                behavior.apply(SplitPattern.predicate(isPunctuation).matches(s), count: s.count, invert: false)
            }
        case .metaspace(let rep, let scheme, let split):
            for i in pieces.indices {
                var s = pieces[i].s
                for j in s.indices where s[j] == 0x20 { s[j] = rep }
                let prepend = scheme == "always" || (scheme == "first" && pieces[i].atStart)
                if prepend && s.first != rep { s.insert(rep, at: 0) }
                pieces[i].s = s
            }
            if split {
                splitEach(&pieces) { s in
                    SplitBehavior.mergedWithNext.apply(SplitPattern.literal([rep]).matches(s), count: s.count, invert: false)
                }
            }
        }
    }

    private func splitEach(_ pieces: inout [Piece], _ f: ([UInt32]) -> [Range<Int>]) {
        var out = [Piece](); out.reserveCapacity(pieces.count * 2)
        for p in pieces {
            for (k, r) in f(p.s).enumerated() { out.append(Piece(s: Array(p.s[r]), atStart: p.atStart && k == 0)) }
        }
        pieces = out
    }

    /// UTF-8 bytes of `s`, each mapped to its byte-level character.
    static func byteMap(_ s: ArraySlice<UInt32>) -> [UInt32] {
        var out = [UInt32](); out.reserveCapacity(s.count)
        let t = ByteLevelTable.byteToScalar
        for v in s {
            if v < 0x80 { out.append(t[Int(v)]) }
            else {
                var b = [UInt8](); appendUTF8(v, to: &b)
                for x in b { out.append(t[Int(x)]) }
            }
        }
        return out
    }
}

@Sendable func isPunctuation(_ v: UInt32) -> Bool {
    guard let u = Unicode.Scalar(v) else { return false }
    if v < 128, let c = Character(u).asciiValue { return (33...47).contains(c) || (58...64).contains(c) || (91...96).contains(c) || (123...126).contains(c) }
    switch u.properties.generalCategory {
    case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
    default: return false
    }
}

// MARK: - Decoders

indirect enum Decoder {
    case sequence([Decoder])
    case byteLevel
    case metaspace(replacement: String, prependScheme: String)
    case replace(SplitPattern, String)
    case byteFallback
    case fuse
    case strip(content: Unicode.Scalar, start: Int, stop: Int)

    static func parse(_ v: JSONValue?, path: String) throws -> Decoder? {
        guard let v, !v.isNull else { return nil }
        guard let type = v["type"]?.stringValue else { throw TokenizerError(path, "decoder without a type") }
        switch type {
        case "Sequence": return .sequence(try v.list("decoders", field: "decoder.decoders", path: path).compactMap { try parse($0, path: path) })
        case "ByteLevel": return .byteLevel
        case "Metaspace":
            var scheme = v["prepend_scheme"]?.stringValue ?? "always"
            if v["prepend_scheme"] == nil, let add = v["add_prefix_space"]?.boolValue { scheme = add ? "always" : "never" }
            return .metaspace(replacement: v["replacement"]?.stringValue ?? "\u{2581}", prependScheme: scheme)
        case "Replace": return .replace(try parsePattern(v["pattern"], path: path), v["content"]?.stringValue ?? "")
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Strip":
            return .strip(content: (v["content"]?.stringValue ?? " ").unicodeScalars.first ?? " ", start: v["start"]?.intValue ?? 0, stop: v["stop"]?.intValue ?? 0)
        default: throw TokenizerError(path, "unsupported decoder type '\(type)'")
        }
    }

    /// `Decoder::decode_chain` of `tokenizers`.
    func chain(_ tokens: [String]) -> [String] {
        switch self {
        case .sequence(let ds): return ds.reduce(tokens) { $1.chain($0) }
        case .byteLevel:
            var bytes = [UInt8]()
            let table = ByteLevelTable.scalarToByte
            for t in tokens {
                var tb = [UInt8](); tb.reserveCapacity(t.utf8.count)
                var ok = true
                for u in t.unicodeScalars {
                    if let b = table[u.value] { tb.append(b) } else { ok = false; break }
                }
                if ok { bytes += tb } else { bytes += Array(t.utf8) }
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case .metaspace(let rep, let scheme):
            let r = rep.unicodeScalars.first!
            return tokens.enumerated().map { (i, t) in
                var out = String.UnicodeScalarView()
                for u in t.unicodeScalars {
                    if u == r { if !(i == 0 && scheme != "never") { out.append(" ") } } else { out.append(u) }
                }
                return String(out)
            }
        case .replace(let pat, let content):
            let c = [UInt32](scalarsOf: content)
            return tokens.map { replaceAll([UInt32](scalarsOf: $0), pat, c).string }
        case .byteFallback:
            var out = [String]()
            var pending = [UInt8]()
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = String(validating: pending, as: UTF8.self) { out.append(s) }
                else { out += Array(repeating: "\u{FFFD}", count: pending.count) }
                pending.removeAll()
            }
            for t in tokens {
                let u = Array(t.utf8)
                if u.count == 6 && t.hasPrefix("<0x") && u[5] == UInt8(ascii: ">"),
                   let b = UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16) {
                    pending.append(b)
                } else {
                    flush()
                    out.append(t)
                }
            }
            flush()
            return out
        case .fuse: return [tokens.joined()]
        case .strip(let content, let start, let stop):
            return tokens.map { t in
                let chars = Array(t.unicodeScalars)
                var a = 0
                for i in 0..<min(start, chars.count) { if chars[i] == content { a = i + 1 } else { break } }
                var b = chars.count
                for i in 0..<min(stop, chars.count) {
                    let idx = chars.count - i - 1
                    if chars[idx] == content { b = idx } else { break }
                }
                var v = String.UnicodeScalarView()
                if b > a { v.append(contentsOf: chars[a..<b]) }
                return String(v)
            }
        }
    }
}
