import Foundation

/// Aggregates of a run: per task × length scores (RULER's ×100, 2-decimal task score), per-length averages,
/// effective length and weighted averages (RULER README definitions).
public struct EvalSummary: Codable, Sendable {
    public struct Cell: Codable, Sendable, Equatable {
        public var task: String
        public var length: Int
        public var score: Double?
        public var scored: Int
        public var failed: Int
        /// Empty predictions (RULER's `Nulls`).
        public var nulls: Int
        public var meanPromptTokens: Double
    }
    public struct DepthCell: Codable, Sendable, Equatable {
        public var depthPercent: Double
        public var length: Int
        public var score: Double?
    }

    public var tasks: [String]
    public var lengths: [Int]
    public var cells: [Cell]
    /// Mean of the task scores at each length (lengths where every task has a score).
    public var averageByLength: [String: Double]
    public var average: Double?
    public var threshold: Double
    /// Largest length L with every length ≤ L averaging ≥ threshold; nil when the smallest fails ("<min").
    public var effectiveLength: Int?
    public var weightedAverageIncreasing: Double?
    public var weightedAverageDecreasing: Double?
    public var depthGrid: [DepthCell]
    public var samples: Int
    public var failed: Int

    public init(results: [SampleResult], threshold: Double = 85.6) {
        self.threshold = threshold
        var taskOrder: [String] = []
        for r in results where !taskOrder.contains(r.task) { taskOrder.append(r.task) }
        tasks = taskOrder
        lengths = Array(Set(results.map(\.length))).sorted()
        samples = results.count
        failed = results.filter { $0.status != "ok" }.count
        var cells: [Cell] = []
        for t in tasks {
            for l in lengths {
                let rs = results.filter { $0.task == t && $0.length == l }
                if rs.isEmpty { continue }
                let ok = rs.filter { $0.status == "ok" }
                cells.append(Cell(task: t, length: l, score: ok.isEmpty ? nil : Scoring.taskScore(ok.map { $0.score ?? 0 }),
                                  scored: ok.count, failed: rs.count - ok.count,
                                  nulls: ok.filter { Scoring.postprocess($0.prediction ?? "").isEmpty }.count,
                                  meanPromptTokens: Double(rs.map(\.promptTokens).reduce(0, +)) / Double(rs.count)))
            }
        }
        self.cells = cells
        var avg: [String: Double] = [:]
        var perLength: [Double] = []
        for l in lengths {
            let scores = tasks.compactMap { t in cells.first { $0.task == t && $0.length == l }?.score }
            if scores.count == tasks.count && !scores.isEmpty {
                let m = scores.reduce(0, +) / Double(scores.count)
                avg[String(l)] = pyRound2(m)
                perLength.append(m)
            }
        }
        averageByLength = avg
        average = perLength.count == lengths.count && !perLength.isEmpty ? pyRound2(perLength.reduce(0, +) / Double(perLength.count)) : nil
        (effectiveLength, weightedAverageIncreasing, weightedAverageDecreasing) =
            perLength.count == lengths.count ? Self.lengthStats(lengths: lengths, scores: perLength, threshold: threshold) : (nil, nil, nil)
        var grid: [DepthCell] = []
        let depths = Array(Set(results.compactMap(\.depthPercent))).sorted()
        for d in depths {
            for l in lengths {
                let ok = results.filter { $0.depthPercent == d && $0.length == l && $0.status == "ok" }
                let any = results.contains { $0.depthPercent == d && $0.length == l }
                if any { grid.append(DepthCell(depthPercent: d, length: l, score: ok.isEmpty ? nil : ok.map { $0.score ?? 0 }.reduce(0, +) / Double(ok.count))) }
            }
        }
        depthGrid = grid
    }

    /// Effective length (every length ≤ L has average ≥ threshold) and RULER's wAvg with weights 1…n (inc)
    /// and n…1 (dec) over ascending lengths, divided by the weight sum (21 for RULER's six lengths).
    public static func lengthStats(lengths: [Int], scores: [Double], threshold: Double) -> (Int?, Double?, Double?) {
        var eff: Int? = nil
        for (l, s) in zip(lengths, scores) { if s >= threshold { eff = l } else { break } }
        let n = scores.count
        guard n > 0 else { return (eff, nil, nil) }
        let wsum = Double(n * (n + 1) / 2)
        var inc = 0.0, dec = 0.0
        for (i, s) in scores.enumerated() { inc += Double(i + 1) * s; dec += Double(n - i) * s }
        return (eff, pyRound2(inc / wsum), pyRound2(dec / wsum))
    }

    /// `task,length,score,scored,failed,nulls,mean_prompt_tokens` rows, then `average` rows per length.
    public func csv() -> String {
        var s = "task,length,score,scored,failed,nulls,mean_prompt_tokens\n"
        for c in cells {
            s += "\(c.task),\(c.length),\(c.score.map { String(format: "%.2f", $0) } ?? ""),\(c.scored),\(c.failed),\(c.nulls),\(String(format: "%.1f", c.meanPromptTokens))\n"
        }
        for l in lengths { if let a = averageByLength[String(l)] { s += "average,\(l),\(String(format: "%.2f", a)),,,,\n" } }
        return s
    }
}
