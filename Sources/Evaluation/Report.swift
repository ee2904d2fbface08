import Foundation

/// SVG heatmap and self-contained HTML report.
public enum Report {
    /// `s` escaped for HTML text and attribute values.
    public static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// Kamradt's palette (#F0496E → #EBB839 → #0CD79F) on a fixed 0…1 scale.
    public static func color(_ v: Double) -> String {
        let stops: [(Double, Double, Double)] = [(240, 73, 110), (235, 184, 57), (12, 215, 159)]
        let x = min(max(v, 0), 1) * 2
        let i = min(Int(x), 1), t = x - Double(i)
        let a = stops[i], b = stops[i + 1]
        func mix(_ p: Double, _ q: Double) -> Int { Int((p + (q - p) * t).rounded()) }
        return String(format: "#%02X%02X%02X", mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
    }

    public static func lengthLabel(_ l: Int) -> String { l >= 1024 && l % 1024 == 0 ? "\(l / 1024)K" : String(l) }

    /// Depth (rows, 0 at the top) × length (columns) heatmap of mean scores; grey cells have no scored sample.
    public static func heatmapSVG(_ summary: EvalSummary, title: String) -> String {
        let depths = Array(Set(summary.depthGrid.map(\.depthPercent))).sorted()
        let lengths = summary.lengths
        let cw = 56, ch = 24, left = 80, top = 40
        let w = left + cw * max(lengths.count, 1) + 90, h = top + ch * max(depths.count, 1) + 60
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(w)\" height=\"\(h)\" font-family=\"sans-serif\" font-size=\"11\">\n"
        s += "<text x=\"\(w / 2)\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">\(esc(title))</text>\n"
        for (r, d) in depths.enumerated() {
            s += "<text x=\"\(left - 6)\" y=\"\(top + r * ch + ch / 2 + 4)\" text-anchor=\"end\">\(formatDepth(d))</text>\n"
            for (c, l) in lengths.enumerated() {
                let cell = summary.depthGrid.first { $0.depthPercent == d && $0.length == l }
                let fill = cell?.score.map(color) ?? "#DDDDDD"
                let label = cell?.score.map { String(format: "%.2f", $0) } ?? "n/a"
                s += "<rect x=\"\(left + c * cw)\" y=\"\(top + r * ch)\" width=\"\(cw)\" height=\"\(ch)\" fill=\"\(fill)\" stroke=\"#FFFFFF\"><title>depth \(formatDepth(d))%, \(l) tokens: \(label)</title></rect>\n"
            }
        }
        for (c, l) in lengths.enumerated() {
            s += "<text x=\"\(left + c * cw + cw / 2)\" y=\"\(top + depths.count * ch + 16)\" text-anchor=\"middle\">\(lengthLabel(l))</text>\n"
        }
        s += "<text x=\"\(left + cw * lengths.count / 2)\" y=\"\(top + depths.count * ch + 40)\" text-anchor=\"middle\">Context length (tokens)</text>\n"
        s += "<text x=\"16\" y=\"\(top + depths.count * ch / 2)\" text-anchor=\"middle\" transform=\"rotate(-90 16 \(top + depths.count * ch / 2))\">Depth percent</text>\n"
        let bx = left + cw * lengths.count + 20
        for i in 0..<10 {
            s += "<rect x=\"\(bx)\" y=\"\(top + (9 - i) * 12)\" width=\"14\" height=\"12\" fill=\"\(color(Double(i) / 9))\"/>\n"
        }
        s += "<text x=\"\(bx + 18)\" y=\"\(top + 10)\">1</text><text x=\"\(bx + 18)\" y=\"\(top + 120)\">0</text>\n</svg>\n"
        return s
    }

    /// A self-contained HTML page: configuration, task × length table with averages and effective length,
    /// the heatmap (inline SVG) when the run has depths, and failed samples with their errors.
    public static func html(_ summary: EvalSummary, results: [SampleResult], title: String, config: [String: String]) -> String {
        var s = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>\(esc(title))</title>\n"
        s += "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}.fail{color:#b00}</style></head><body>\n"
        s += "<h1>\(esc(title))</h1>\n<table>\n"
        for (k, v) in config.sorted(by: { $0.key < $1.key }) { s += "<tr><th>\(esc(k))</th><td style=\"text-align:left\">\(esc(v))</td></tr>\n" }
        s += "<tr><th>samples</th><td>\(summary.samples)</td></tr><tr><th>failed</th><td>\(summary.failed)</td></tr></table>\n"
        s += "<h2>Scores (task × length)</h2>\n<table><tr><th>task</th>"
        for l in summary.lengths { s += "<th>\(Report.lengthLabel(l))</th>" }
        s += "</tr>\n"
        for t in summary.tasks {
            s += "<tr><th>\(esc(t))</th>"
            for l in summary.lengths {
                let c = summary.cells.first { $0.task == t && $0.length == l }
                let v = c?.score.map { String(format: "%.2f", $0) } ?? "–"
                let f = (c?.failed ?? 0) > 0 ? " <span class=\"fail\">(\(c!.failed) failed)</span>" : ""
                s += "<td>\(v)\(f)</td>"
            }
            s += "</tr>\n"
        }
        s += "<tr><th>average</th>"
        for l in summary.lengths { s += "<td>\(summary.averageByLength[String(l)].map { String(format: "%.2f", $0) } ?? "–")</td>" }
        s += "</tr></table>\n"
        let eff = summary.effectiveLength.map { Report.lengthLabel($0) } ?? "<\(summary.lengths.first.map(Report.lengthLabel) ?? "?")"
        s += "<p>Effective length (every length up to it averages ≥ \(summary.threshold)): <b>\(esc(eff))</b>"
        if let i = summary.weightedAverageIncreasing, let d = summary.weightedAverageDecreasing {
            s += "; wAvg inc \(String(format: "%.2f", i)), wAvg dec \(String(format: "%.2f", d))"
        }
        s += "</p>\n"
        if !summary.depthGrid.isEmpty { s += "<h2>Depth × length</h2>\n" + heatmapSVG(summary, title: title) }
        let failed = results.filter { $0.status != "ok" }
        if !failed.isEmpty {
            s += "<h2>Failed samples</h2>\n<table><tr><th>id</th><th>attempts</th><th>error</th></tr>\n"
            for r in failed { s += "<tr><td>\(esc(r.id))</td><td>\(r.attempts)</td><td style=\"text-align:left\">\(esc(r.error ?? ""))</td></tr>\n" }
            s += "</table>\n"
        }
        s += "</body></html>\n"
        return s
    }
}
