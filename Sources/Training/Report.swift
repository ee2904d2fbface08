import Basics
import Evaluation
import Foundation
import ModelIO
import RoPE

/// The needle check of one stage as the trainer ran it (see ``StageCheck``).
public struct StageCheckResult: Sendable, Equatable, Codable {
    public struct LengthResult: Sendable, Equatable, Codable {
        public var length: Int
        /// Fraction of samples answered correctly.
        public var accuracy: Double
        public var samples: Int
        public init(length: Int, accuracy: Double, samples: Int) {
            self.length = length
            self.accuracy = accuracy
            self.samples = samples
        }
    }

    public var task: StageCheck.Task
    public var lengths: [LengthResult]
    public var minAccuracy: Double
    /// Held-out short-context loss of the base model and after the stage (`nil` when not measured).
    public var baseShortLoss: Double?
    public var shortLoss: Double?
    public var maxLossIncrease: Double?
    /// Whether every length reached `minAccuracy` and the short-context loss held.
    public var passed: Bool

    public init(task: StageCheck.Task, lengths: [LengthResult], minAccuracy: Double, baseShortLoss: Double? = nil,
                shortLoss: Double? = nil, maxLossIncrease: Double? = nil) {
        self.task = task
        self.lengths = lengths
        self.minAccuracy = minAccuracy
        self.baseShortLoss = baseShortLoss
        self.shortLoss = shortLoss
        self.maxLossIncrease = maxLossIncrease
        let found = lengths.allSatisfy { $0.accuracy >= minAccuracy }
        var held = true
        if let base = baseShortLoss, let loss = shortLoss, let limit = maxLossIncrease {
            held = loss <= base * (1 + limit)
        }
        passed = found && held
    }
}

/// One row of the report's stage table.
public struct StageReport: Sendable, Equatable {
    public var name: String
    public var seqLen: Int
    /// RoPE in words (``ResolvedStageRope/summary``), e.g. `yarn ×4 (θ 10000)`.
    public var rope: String
    public var steps: Int
    public var tokens: Int
    public var lr: Double
    /// Loss of the stage's last logged step, and the stage's wall time (from the log).
    public var finalLoss: Double?
    public var seconds: Double?
    public var check: StageCheckResult?

    /// The row for `stage` from the run's log records (those with `stageIndex == stage.index`).
    public init(stage: StageSpec, rope: String, records: [TrainingLogRecord], check: StageCheckResult? = nil) {
        let own = records.filter { $0.stageIndex == stage.index }
        name = stage.name
        seqLen = stage.seqLen
        self.rope = rope
        steps = stage.steps
        tokens = stage.totalTokens
        lr = stage.lr
        finalLoss = own.last?.loss
        seconds = own.isEmpty ? nil : own.reduce(0) { $0 + $1.seconds }
        self.check = check
    }
}

/// What a run leaves beside its checkpoints: `loss.svg` (loss per step with stage boundaries) and `report.html`
/// (self-contained: the loss curve inline, the stage table, each stage's needle check).
public enum TrainingReport {
    public static let svgName = "loss.svg"
    public static let htmlName = "report.html"

    /// Writes `directory/loss.svg` and `directory/report.html` (each atomically) and returns their paths.
    @discardableResult
    public static func write(directory: String, records: [TrainingLogRecord], stages: [StageReport], title: String,
                             config: [(String, String)] = []) throws -> (svg: String, html: String) {
        let svgPath = (directory as NSString).appendingPathComponent(svgName)
        let htmlPath = (directory as NSString).appendingPathComponent(htmlName)
        let svg = lossCurveSVG(records: records, stages: stages, title: title)
        try FileOps.writeAtomically(svg, to: svgPath)
        try FileOps.writeAtomically(html(records: records, stages: stages, title: title, config: config, svg: svg),
                                    to: htmlPath)
        return (svgPath, htmlPath)
    }

    /// Loss (y, linear) against global step (x); a dashed vertical line where each stage after the first begins,
    /// labelled with the stage's name and length. Pure string building.
    public static func lossCurveSVG(records: [TrainingLogRecord], stages: [StageReport], title: String) -> String {
        let width = 760.0, height = 400.0, left = 70.0, right = 20.0, top = 56.0, bottom = 50.0
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        let points = records.filter { $0.loss.isFinite }
        let maxStep = Double(max(points.map(\.step).max() ?? 1, 1))
        var low = points.map(\.loss).min() ?? 0, high = points.map(\.loss).max() ?? 1
        if high - low < 1e-9 { low -= 0.5; high += 0.5 }
        let pad = (high - low) * 0.05
        low -= pad; high += pad
        func x(_ step: Double) -> Double { left + plotWidth * step / maxStep }
        func y(_ loss: Double) -> Double { top + plotHeight * (1 - (loss - low) / (high - low)) }
        func fmt(_ v: Double) -> String { String(format: "%.1f", v) }

        var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
        viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="11">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(fmt(width / 2))" y="20" text-anchor="middle" font-size="14">\(RoPE.escapeXML(title))</text>
        <rect x="\(fmt(left))" y="\(fmt(top))" width="\(fmt(plotWidth))" height="\(fmt(plotHeight))" fill="none" stroke="#868e96"/>

        """
        for i in 0...4 {
            let value = low + (high - low) * Double(i) / 4
            svg += "<line x1=\"\(fmt(left))\" y1=\"\(fmt(y(value)))\" x2=\"\(fmt(left + plotWidth))\" y2=\"\(fmt(y(value)))\" stroke=\"#f1f3f5\"/>\n"
            svg += "<text x=\"\(fmt(left - 6))\" y=\"\(fmt(y(value) + 4))\" text-anchor=\"end\">\(String(format: "%.3f", value))</text>\n"
        }
        for (index, stage) in stages.enumerated() {
            guard let first = points.first(where: { $0.stage == stage.name })?.step else { continue }
            let xx = x(Double(first - 1))
            if index > 0 {
                svg += "<line class=\"stage-boundary\" x1=\"\(fmt(xx))\" y1=\"\(fmt(top))\" x2=\"\(fmt(xx))\" y2=\"\(fmt(top + plotHeight))\" stroke=\"#495057\" stroke-dasharray=\"4,3\"/>\n"
            }
            svg += "<text x=\"\(fmt(xx + 4))\" y=\"\(fmt(top - 8))\">\(RoPE.escapeXML(stage.name)) (\(formatLength(stage.seqLen)))</text>\n"
        }
        let line = points.map { "\(fmt(x(Double($0.step)))),\(fmt(y($0.loss)))" }.joined(separator: " ")
        svg += "<polyline fill=\"none\" stroke=\"#1c7ed6\" stroke-width=\"1.5\" points=\"\(line)\"/>\n"
        svg += "<text x=\"\(fmt(left + plotWidth / 2))\" y=\"\(fmt(height - 14))\" text-anchor=\"middle\">step (1 … \(Int(maxStep)))</text>\n"
        svg += "<text x=\"16\" y=\"\(fmt(top + plotHeight / 2))\" transform=\"rotate(-90 16 \(fmt(top + plotHeight / 2)))\" text-anchor=\"middle\">training loss</text>\n"
        svg += "</svg>\n"
        return svg
    }

    /// The self-contained HTML page (no external assets).
    public static func html(records: [TrainingLogRecord], stages: [StageReport], title: String,
                            config: [(String, String)], svg: String? = nil) -> String {
        let e = RoPE.escapeXML
        var s = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>\(e(title))</title>\n"
        s += "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}.pass{color:#2b8a3e}.fail{color:#b00}</style></head><body>\n"
        s += "<h1>\(e(title))</h1>\n"
        if !config.isEmpty {
            s += "<table>\n"
            for (key, value) in config { s += "<tr><th>\(e(key))</th><td style=\"text-align:left\">\(e(value))</td></tr>\n" }
            s += "</table>\n"
        }
        s += "<h2>Loss</h2>\n" + (svg ?? lossCurveSVG(records: records, stages: stages, title: title))
        s += "<h2>Stages</h2>\n<table>\n<tr><th>stage</th><th>length</th><th>rope</th><th>steps</th><th>tokens</th><th>lr</th><th>final loss</th><th>time</th><th>check</th></tr>\n"
        for stage in stages {
            let loss = stage.finalLoss.map { String(format: "%.4f", $0) } ?? "–"
            let time = stage.seconds.map(TrainingProgress.duration) ?? "–"
            let check = stage.check.map { $0.passed ? "<span class=\"pass\">passed</span>" : "<span class=\"fail\">failed</span>" } ?? "–"
            s += "<tr><th>\(e(stage.name))</th><td>\(formatLength(stage.seqLen))</td><td style=\"text-align:left\">\(e(stage.rope))</td>"
            s += "<td>\(stage.steps)</td><td>\(stage.tokens)</td><td>\(String(format: "%g", stage.lr))</td><td>\(loss)</td><td>\(time)</td><td>\(check)</td></tr>\n"
        }
        s += "</table>\n"
        for stage in stages { if let check = stage.check { s += checkHTML(stage.name, check) } }
        s += "</body></html>\n"
        return s
    }

    /// One stage's needle check: accuracy per length (cells coloured on the evaluation report's scale) and the
    /// short-context loss rule.
    static func checkHTML(_ name: String, _ check: StageCheckResult) -> String {
        let e = RoPE.escapeXML
        var s = "<h3>Check after \(e(name)): \(check.task.rawValue)</h3>\n<table><tr><th>length</th>"
        for result in check.lengths { s += "<th>\(formatLength(result.length))</th>" }
        s += "</tr>\n<tr><th>accuracy</th>"
        for result in check.lengths {
            s += "<td style=\"background:\(Report.color(result.accuracy))\">\(String(format: "%.2f", result.accuracy)) (\(result.samples))</td>"
        }
        s += "</tr></table>\n<p>needed accuracy ≥ \(String(format: "%.2f", check.minAccuracy))"
        if let base = check.baseShortLoss, let loss = check.shortLoss {
            s += String(format: "; short-context loss %.4f → %.4f", base, loss)
            if let limit = check.maxLossIncrease { s += String(format: " (allowed rise %.1f %%)", 100 * limit) }
        }
        s += check.passed ? " — <span class=\"pass\">passed</span></p>\n" : " — <span class=\"fail\">failed</span></p>\n"
        return s
    }
}
