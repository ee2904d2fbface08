import Basics
import Foundation

/// Writes a run's derived files next to its `results.jsonl`: `summary.json`, `summary.csv`, `heatmap.svg`
/// (when the run has depths) and `report.html`. Each file is written to a temporary sibling and renamed.
public enum EvalOutputs {
    public static func write(directory: String, results: [SampleResult], title: String, threshold: Double,
                             config: [String: String]) throws -> EvalSummary {
        let summary = EvalSummary(results: results, threshold: threshold)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try atomic(directory + "/summary.json", try enc.encode(summary) + Data("\n".utf8))
        try atomic(directory + "/summary.csv", Data(summary.csv().utf8))
        if !summary.depthGrid.isEmpty { try atomic(directory + "/heatmap.svg", Data(Report.heatmapSVG(summary, title: title).utf8)) }
        try atomic(directory + "/report.html", Data(Report.html(summary, results: results, title: title, config: config).utf8))
        return summary
    }

    static func atomic(_ path: String, _ data: Data) throws {
        let tmp = path + ".tmp-\(getpid())"
        do {
            try data.write(to: URL(fileURLWithPath: tmp))
            if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
            try FileManager.default.moveItem(atPath: tmp, toPath: path)
        } catch {
            try? FileManager.default.removeItem(atPath: tmp)
            throw EvalError("\(path): cannot write (\(error.localizedDescription))")
        }
    }

    /// Longest token budget a run may ask for (1M tokens): anything longer is a typo or a unit mistake.
    public static let maxLength = 1 << 20

    /// A `--lengths` list ("128,4K,1M", Basics' length notation): each in 1…`maxLength`, no length twice; errors
    /// name the option and the part.
    public static func lengths(_ text: String) throws -> [Int] {
        let values: [Int]
        do { values = try parseLengths(text) } catch { throw EvalError("--lengths: \(error)") }
        var seen = Set<Int>()
        for (v, part) in zip(values, text.split(separator: ",", omittingEmptySubsequences: false)) {
            guard v <= maxLength else {
                throw EvalError("--lengths: '\(part)' is longer than the largest supported length \(maxLength) (1M tokens)")
            }
            guard seen.insert(v).inserted else { throw EvalError("--lengths: '\(part)' is given twice") }
        }
        return values
    }

    public static func parseDepths(_ s: String) throws -> [Double] {
        var seen = Set<Double>()
        return try s.split(separator: ",", omittingEmptySubsequences: false).map { part in
            guard let v = Double(part.trimmingCharacters(in: .whitespaces)), (0...100).contains(v) else {
                throw EvalError("--depths: invalid depth '\(part)' (percent, 0…100)")
            }
            guard seen.insert(v).inserted else { throw EvalError("--depths: '\(part)' is given twice") }
            return v
        }
    }
}
