import Foundation

/// Scoring functions with RULER's definitions (`scripts/eval/evaluate.py`, `synthetic/constants.py`).
public enum Scoring {
    /// RULER's `postprocess_pred`: strip, every control character `[\x00-\x1f]` → `\n`, strip again.
    public static func postprocess(_ pred: String) -> String {
        var s = pred.trimmingCharacters(in: .whitespacesAndNewlines)
        s = String(String.UnicodeScalarView(s.unicodeScalars.map { $0.value < 0x20 ? "\n" : $0 }))
        return s.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// One sample's `string_match_all`: fraction of references contained in the prediction (lower-cased).
    public static func stringMatchAll(_ pred: String, _ refs: [String]) -> Double {
        guard !refs.isEmpty else { return 0 }
        let p = pred.lowercased()
        return Double(refs.filter { p.contains($0.lowercased()) }.count) / Double(refs.count)
    }

    /// One sample's `string_match_part`: 1 if any reference is contained in the prediction (lower-cased).
    public static func stringMatchPart(_ pred: String, _ refs: [String]) -> Double {
        let p = pred.lowercased()
        return refs.contains { p.contains($0.lowercased()) } ? 1 : 0
    }

    /// Passkey: the first run of digits in the completion, as an integer, equals the key.
    public static func passkey(_ pred: String, _ refs: [String]) -> Double {
        guard let key = refs.first.flatMap({ Int($0) }) else { return 0 }
        var digits = ""
        for ch in pred.unicodeScalars {
            if ch.value >= 48 && ch.value <= 57 { digits.unicodeScalars.append(ch) } else if !digits.isEmpty { break }
        }
        return Int(digits) == key ? 1 : 0
    }

    /// Score in [0, 1] of one prediction (RULER post-processing applied first, as `evaluate.py`).
    public static func score(_ metric: Metric, prediction: String, references: [String]) -> Double {
        let p = postprocess(prediction)
        switch metric {
        case .stringMatchAll: return stringMatchAll(p, references)
        case .stringMatchPart: return stringMatchPart(p, references)
        case .passkey: return passkey(p, references)
        }
    }

    /// RULER's task score: mean of per-sample scores × 100, rounded to 2 decimals.
    public static func taskScore(_ perSample: [Double]) -> Double {
        guard !perSample.isEmpty else { return 0 }
        return pyRound2(perSample.reduce(0, +) / Double(perSample.count) * 100)
    }
}

/// Python's `round(x, 2)`: correctly rounded from the exact binary value (ties to even), as printf's `%.2f`.
public func pyRound2(_ x: Double) -> Double { Double(String(format: "%.2f", x)) ?? x }
