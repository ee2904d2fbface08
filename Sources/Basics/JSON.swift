import Foundation

/// A JSON value that keeps what a round trip must not change: the order of object keys and the
/// exact text of numbers (`1e-05` stays `1e-05`, `500000.0` stays `500000.0`).
///
/// The project's one JSON value type. Used for Hugging Face `config.json` files (unknown fields survive a
/// rewrite), safetensors headers (integers are checked exactly, never through `Double`) and RoPE config keys
/// (`.int(8192)` and `.double(8.0)` stay distinct: `8192` and `8.0`, as transformers' validators expect).
public enum JSONValue: Equatable, Sendable, CustomStringConvertible {
    case null
    case bool(Bool)
    /// The number's literal text, as written (JSON grammar, plus Python's `NaN`/`Infinity`).
    case number(String)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    // MARK: builders

    public static func int(_ v: Int) -> JSONValue { .number(String(v)) }
    /// A float written as Python's `repr` writes it (shortest round-trip digits, `.0` on integers).
    public static func double(_ v: Double) -> JSONValue {
        if v.isNaN { return .number("NaN") }
        if v.isInfinite { return .number(v < 0 ? "-Infinity" : "Infinity") }
        return .number(pythonRepr(v))
    }
    /// Float32 values printed with the shortest digits that round-trip through float32 (`0.001`, not `0.0010000000474974513`).
    public static func float(_ v: Float) -> JSONValue {
        if v.isNaN { return .number("NaN") }
        if v.isInfinite { return .number(v < 0 ? "-Infinity" : "Infinity") }
        return .number(pythonRepr(Double(v.description) ?? Double(v)))
    }

    // MARK: accessors

    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var objectValue: JSONObject? { if case .object(let o) = self { return o }; return nil }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var isNull: Bool { if case .null = self { return true }; return false }
    public var doubleValue: Double? {
        guard case .number(let t) = self else { return nil }
        switch t {
        case "NaN": return .nan
        case "Infinity": return .infinity
        case "-Infinity": return -.infinity
        default: return Double(t)
        }
    }
    /// The value as an exact integer: only integer literals (no fraction, no exponent) that fit in `Int`.
    public var intValue: Int? {
        guard case .number(let t) = self, !t.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) else { return nil }
        return Int(t)
    }

    public subscript(key: String) -> JSONValue? {
        get { objectValue?[key] }
    }

    public var description: String { serialized(indent: nil) }

    /// One-line JSON with Python's default `json.dumps` separators (`", "` and `": "`), for display.
    public var inlineText: String {
        var out = ""
        write(into: &out, indent: nil, level: 0, spaced: true)
        return out
    }

    // MARK: parsing

    /// Parses UTF-8 JSON text. Duplicate object keys, trailing data and invalid UTF-8 are errors.
    public static func parse(_ data: Data) throws -> JSONValue {
        try data.withUnsafeBytes { raw in
            var p = JSONParser(bytes: raw.bindMemory(to: UInt8.self))
            return try p.parseDocument()
        }
    }

    public static func parse(_ text: String) throws -> JSONValue { try parse(Data(text.utf8)) }

    // MARK: writing

    /// JSON text. `indent: 2` gives the layout of Python's `json.dumps(indent=2)` (what
    /// `save_pretrained` writes); `indent: nil` gives the compact form with no spaces.
    public func serialized(indent: Int? = 2) -> String {
        var out = ""
        write(into: &out, indent: indent, level: 0)
        return out
    }

    /// `spaced` (only without `indent`) puts a space after `,` and `:` as Python's default separators do.
    func write(into out: inout String, indent: Int?, level: Int, spaced: Bool = false) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let t): out += t
        case .string(let s): JSONValue.writeString(s, into: &out)
        case .array(let a):
            if a.isEmpty { out += "[]"; return }
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += spaced ? ", " : "," }
                if let ind = indent { out += "\n" + String(repeating: " ", count: ind * (level + 1)) }
                v.write(into: &out, indent: indent, level: level + 1, spaced: spaced)
            }
            if let ind = indent { out += "\n" + String(repeating: " ", count: ind * level) }
            out += "]"
        case .object(let o):
            if o.isEmpty { out += "{}"; return }
            out += "{"
            for (i, (k, v)) in o.entries.enumerated() {
                if i > 0 { out += spaced ? ", " : "," }
                if let ind = indent { out += "\n" + String(repeating: " ", count: ind * (level + 1)) }
                JSONValue.writeString(k, into: &out)
                out += indent == nil && !spaced ? ":" : ": "
                v.write(into: &out, indent: indent, level: level + 1, spaced: spaced)
            }
            if let ind = indent { out += "\n" + String(repeating: " ", count: ind * level) }
            out += "}"
        }
    }

    /// Appends `s` as a JSON string literal: `"`, `\\` and control characters escaped, everything else (non-ASCII
    /// included) kept, as Python's `json.dumps(s, ensure_ascii=False)` writes it.
    public static func writeString(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 {
                    out += "\\u" + String(repeating: "0", count: 4 - String(u.value, radix: 16).count) + String(u.value, radix: 16)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }

    /// Python `repr(float)`. Swift's `description` uses the same shortest round-trip digits and the
    /// same switch to exponent form (below 1e-4 and from 1e16), so the two agree character for character.
    static func pythonRepr(_ v: Double) -> String { v.description }
}

extension JSONValue: Codable {
    /// Decodes through any `Decoder` (e.g. inside a `Codable` config struct): integers that fit `Int` become
    /// `.int`, other numbers `.double`, objects keep their keys sorted (a keyed container has no order).
    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int.self) {
            self = .int(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            let dictionary = try container.decode([String: JSONValue].self)
            self = .object(JSONObject(dictionary.keys.sorted().map { ($0, dictionary[$0]!) }))
        }
    }

    /// Encodes integers as `Int`, other numbers as `Double`, objects as a keyed container.
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number:
            if let value = intValue { try container.encode(value) } else { try container.encode(doubleValue ?? .nan) }
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let object):
            var dictionary: [String: JSONValue] = [:]
            for (key, value) in object.entries { dictionary[key] = value }
            try container.encode(dictionary)
        }
    }
}

/// A JSON object that keeps its keys in order.
public struct JSONObject: Equatable, Sendable {
    public private(set) var entries: [(String, JSONValue)]

    public init(_ entries: [(String, JSONValue)] = []) { self.entries = entries }

    public var keys: [String] { entries.map(\.0) }
    public var isEmpty: Bool { entries.isEmpty }
    public var count: Int { entries.count }

    /// Reads a key; setting replaces the value in place (order kept), appends a new key at the
    /// end, and `nil` removes the key.
    public subscript(key: String) -> JSONValue? {
        get { entries.first(where: { $0.0 == key })?.1 }
        set {
            if let i = entries.firstIndex(where: { $0.0 == key }) {
                if let v = newValue { entries[i].1 = v } else { entries.remove(at: i) }
            } else if let v = newValue {
                entries.append((key, v))
            }
        }
    }

    /// Appends a key known not to be present (the parser checks uniqueness with a set).
    mutating func appendNew(_ key: String, _ value: JSONValue) { entries.append((key, value)) }

    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        a.entries.count == b.entries.count && zip(a.entries, b.entries).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }
}

/// Errors from JSON parsing, with the byte offset where the text went wrong.
public struct JSONError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public let offset: Int
    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}

struct JSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    var i = 0
    var depth = 0

    init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    func fail(_ m: String) -> JSONError { JSONError(message: m, offset: i) }

    mutating func skipSpace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
    }

    mutating func parseDocument() throws -> JSONValue {
        skipSpace()
        let v = try parseValue()
        skipSpace()
        if i != bytes.count { throw fail("unexpected data after the JSON value") }
        return v
    }

    mutating func parseValue() throws -> JSONValue {
        guard i < bytes.count else { throw fail("unexpected end of text") }
        switch bytes[i] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "N"): try literal("NaN"); return .number("NaN")
        case UInt8(ascii: "I"): try literal("Infinity"); return .number("Infinity")
        default: return try parseNumber()
        }
    }

    mutating func literal(_ word: String) throws {
        for b in word.utf8 {
            guard i < bytes.count, bytes[i] == b else { throw fail("expected '\(word)'") }
            i += 1
        }
    }

    mutating func parseObject() throws -> JSONValue {
        depth += 1
        if depth > 512 { throw fail("nesting deeper than 512") }
        defer { depth -= 1 }
        i += 1
        var obj = JSONObject()
        var seen = Set<String>()
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(obj) }
        while true {
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let key = try parseString()
            if !seen.insert(key).inserted { throw fail("duplicate key \"\(key)\"") }
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':' after key \"\(key)\"") }
            i += 1
            skipSpace()
            let v = try parseValue()
            obj.appendNew(key, v)  // keys already checked unique: no linear search
            skipSpace()
            guard i < bytes.count else { throw fail("unterminated object") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(obj) }
            throw fail("expected ',' or '}' in object")
        }
    }

    mutating func parseArray() throws -> JSONValue {
        depth += 1
        if depth > 512 { throw fail("nesting deeper than 512") }
        defer { depth -= 1 }
        i += 1
        var arr: [JSONValue] = []
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(arr) }
        while true {
            skipSpace()
            arr.append(try parseValue())
            skipSpace()
            guard i < bytes.count else { throw fail("unterminated array") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(arr) }
            throw fail("expected ',' or ']' in array")
        }
    }

    mutating func parseNumber() throws -> JSONValue {
        let start = i
        if i < bytes.count, bytes[i] == UInt8(ascii: "-") {
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "I") { try literal("Infinity"); return .number("-Infinity") }
        }
        func digits() -> Int { let s = i; while i < bytes.count, bytes[i] >= 0x30, bytes[i] <= 0x39 { i += 1 }; return i - s }
        guard i < bytes.count, bytes[i] >= 0x30, bytes[i] <= 0x39 else { throw fail("invalid value") }
        if bytes[i] == 0x30 { i += 1 } else { _ = digits() }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            i += 1
            if digits() == 0 { throw fail("digits expected after '.'") }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            if digits() == 0 { throw fail("digits expected in exponent") }
        }
        return .number(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self))
    }

    mutating func parseString() throws -> String {
        i += 1  // opening quote
        var out = [UInt8]()
        while true {
            guard i < bytes.count else { throw fail("unterminated string") }
            let c = bytes[i]
            if c == UInt8(ascii: "\"") { i += 1; break }
            if c < 0x20 { throw fail("control character in string") }
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            i += 1
            guard i < bytes.count else { throw fail("unterminated escape") }
            let e = bytes[i]; i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var cp = try hex4()
                if (0xD800..<0xDC00).contains(cp) {
                    guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                        throw fail("unpaired surrogate")
                    }
                    i += 2
                    let lo = try hex4()
                    guard (0xDC00..<0xE000).contains(lo) else { throw fail("unpaired surrogate") }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                } else if (0xDC00..<0xE000).contains(cp) {
                    throw fail("unpaired surrogate")
                }
                out.append(contentsOf: Array(String(Character(Unicode.Scalar(cp)!)).utf8))
            default: throw fail("invalid escape '\\\(Character(Unicode.Scalar(e)))'")
            }
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw fail("string is not valid UTF-8") }
        return s
    }

    mutating func hex4() throws -> UInt32 {
        guard i + 4 <= bytes.count else { throw fail("short \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[i]; i += 1
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw fail("bad hex digit in \\u escape")
            }
            v = v * 16 + d
        }
        return v
    }
}
