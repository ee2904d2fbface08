import Foundation

/// A length in the notation of context sizes that cannot be read, naming the offending text.
public struct LengthError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The part that is not a length (one item of a list).
    public let text: String
    public init(_ text: String) { self.text = text }
    public var description: String {
        "invalid length '\(text)' (a positive whole number of tokens, e.g. 4096, 4K, 128K, 0.5M)"
    }
}

/// Parses a context length such as `131072`, `128K`, `1M`, `0.5M`, `4m` (K = 1024, M = 1024², G = 1024³;
/// surrounding spaces ignored). Returns `nil` for anything else, including non-positive and non-integral results.
public func parseLength(_ text: String) -> Int? {
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    guard let last = trimmed.last else { return nil }
    let multipliers: [Character: Double] = ["k": 1024, "K": 1024, "m": 1_048_576, "M": 1_048_576,
                                            "g": 1_073_741_824, "G": 1_073_741_824]
    let multiplier = multipliers[last] ?? 1
    let digits = multipliers[last] == nil ? trimmed : String(trimmed.dropLast())
    guard !digits.isEmpty, digits.allSatisfy({ $0.isNumber || $0 == "." }), let value = Double(digits) else {
        return nil
    }
    let total = value * multiplier
    guard total >= 1, total < 1e15, let whole = Int(exactly: total) else { return nil }
    return whole
}

/// Parses a comma-separated list of lengths (`32K,128K,1M`), each as ``parseLength(_:)``.
/// - Throws: ``LengthError`` naming the first part that is not a length (an empty part included).
public func parseLengths(_ text: String) throws -> [Int] {
    var values: [Int] = []
    for part in text.split(separator: ",", omittingEmptySubsequences: false) {
        guard let value = parseLength(String(part)) else { throw LengthError(String(part)) }
        values.append(value)
    }
    return values
}

/// Compact length label: `8K`, `128K`, `1M`, `1.5M`, or the plain number when not a multiple of 1024.
public func formatLength(_ length: Int) -> String {
    if length >= 1_048_576 && length % 131_072 == 0 {
        let value = Double(length) / 1_048_576
        return value == value.rounded() ? "\(Int(value))M" : "\(value)M"
    }
    if length >= 1024 && length % 1024 == 0 { return "\(length / 1024)K" }
    return "\(length)"
}
