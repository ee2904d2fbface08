import Foundation

/// A small ordered JSON value used to hand config keys to a writer (and to keep unmodelled rope keys).
/// Integers and floating-point numbers are distinct so that `"factor": 8.0` stays a float and
/// `"original_max_position_embeddings": 8192` an int, as transformers' validators expect.
public indirect enum RopeJSONValue: Sendable, Equatable, Codable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([RopeJSONValue])
    case object([RopeJSONMember])

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
        } else if let value = try? container.decode([RopeJSONValue].self) {
            self = .array(value)
        } else {
            let dictionary = try container.decode([String: RopeJSONValue].self)
            self = .object(dictionary.keys.sorted().map { RopeJSONMember($0, dictionary[$0]!) })
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let members):
            var dictionary: [String: RopeJSONValue] = [:]
            for member in members { dictionary[member.key] = member.value }
            try container.encode(dictionary)
        }
    }

    /// Member lookup for objects.
    public subscript(key: String) -> RopeJSONValue? {
        if case .object(let members) = self { return members.last(where: { $0.key == key })?.value }
        return nil
    }

    /// Numeric value of `.int` or `.double`.
    public var number: Double? {
        switch self {
        case .int(let value): return Double(value)
        case .double(let value): return value
        default: return nil
        }
    }

    /// Compact JSON text with members in order. Doubles use the shortest round-tripping form and keep a
    /// fractional part (`128.0`), as Python's `json.dumps` writes floats. Non-finite doubles become `null`.
    public var jsonText: String {
        switch self {
        case .null: return "null"
        case .bool(let value): return value ? "true" : "false"
        case .int(let value): return String(value)
        case .double(let value): return RopeJSONValue.formatDouble(value) ?? "null"
        case .string(let value): return RopeJSONValue.quote(value)
        case .array(let values): return "[" + values.map(\.jsonText).joined(separator: ", ") + "]"
        case .object(let members):
            return "{" + members.map { RopeJSONValue.quote($0.key) + ": " + $0.value.jsonText }
                .joined(separator: ", ") + "}"
        }
    }

    /// Python-`repr`-like text for a finite double: `8.0`, `0.1`, `3580165449.0`, `1e-05`; `nil` if not finite.
    public static func formatDouble(_ value: Double) -> String? {
        guard value.isFinite else { return nil }
        var text = "\(value)"
        if !text.contains(".") && !text.contains("e") && !text.contains("E") { text += ".0" }
        return text
    }

    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

/// One `"key": value` pair of a ``RopeJSONValue/object(_:)``.
public struct RopeJSONMember: Sendable, Equatable {
    public var key: String
    public var value: RopeJSONValue

    public init(_ key: String, _ value: RopeJSONValue) {
        self.key = key
        self.value = value
    }
}
