import Basics
import Foundation

extension RoPE {
    /// A self-contained SVG (two panels, log-scale y axes) of a per-dimension table: wavelength in tokens per pair
    /// (original and scaled, with horizontal guides at the trained and target lengths) and the stretch `λ/λ0`
    /// per pair, each point coloured by regime. Pure string building; no I/O.
    public static func dimensionPlotSVG(rows: [RopeDimensionRow], title: String, trainedLength: Int,
                                        targetLength: Int) -> String {
        let width = 760.0, panelHeight = 260.0, left = 78.0, right = 20.0, top = 48.0, gap = 64.0
        let plotWidth = width - left - right
        let height = top + 2 * panelHeight + gap + 50
        let count = Swift.max(rows.count, 1)
        func x(_ pair: Int) -> Double { left + plotWidth * (Double(pair) + 0.5) / Double(count) }
        func fmt(_ value: Double) -> String { String(format: "%.1f", value) }
        let colours: [RopeRegime: String] = [.kept: "#2b8a3e", .blended: "#e8590c", .interpolated: "#1c7ed6"]

        var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
        viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="11">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(fmt(width / 2))" y="22" text-anchor="middle" font-size="14">\(escapeXML(title))</text>

        """

        func panel(originY: Double, label: String, series: [(name: String, values: [Double], dashed: Bool)],
                   guides: [(String, Double)], regimeSeries: Int) {
            let all = series.flatMap(\.values).filter { $0 > 0 && $0.isFinite } + guides.map(\.1)
            let lowExp = Foundation.floor(Foundation.log10(all.min() ?? 1))
            var highExp = Foundation.ceil(Foundation.log10(all.max() ?? 10))
            if highExp <= lowExp { highExp = lowExp + 1 }
            func y(_ value: Double) -> Double {
                let t = (Foundation.log10(Swift.max(value, 1e-300)) - lowExp) / (highExp - lowExp)
                return originY + panelHeight * (1 - t)
            }
            svg += "<rect x=\"\(fmt(left))\" y=\"\(fmt(originY))\" width=\"\(fmt(plotWidth))\" height=\"\(fmt(panelHeight))\" fill=\"none\" stroke=\"#868e96\"/>\n"
            var exponent = lowExp
            let step = Swift.max(1, ((highExp - lowExp) / 8).rounded(.up))
            while exponent <= highExp {
                let yy = y(Foundation.pow(10, exponent))
                svg += "<line x1=\"\(fmt(left))\" y1=\"\(fmt(yy))\" x2=\"\(fmt(left + plotWidth))\" y2=\"\(fmt(yy))\" stroke=\"#f1f3f5\"/>\n"
                svg += "<text x=\"\(fmt(left - 6))\" y=\"\(fmt(yy + 4))\" text-anchor=\"end\">1e\(Int(exponent))</text>\n"
                exponent += step
            }
            for (name, value) in guides {
                let yy = y(value)
                svg += "<line x1=\"\(fmt(left))\" y1=\"\(fmt(yy))\" x2=\"\(fmt(left + plotWidth))\" y2=\"\(fmt(yy))\" stroke=\"#495057\" stroke-dasharray=\"2,3\"/>\n"
                svg += "<text x=\"\(fmt(left + plotWidth - 4))\" y=\"\(fmt(yy - 4))\" text-anchor=\"end\" fill=\"#495057\">\(escapeXML(name))</text>\n"
            }
            for (index, entry) in series.enumerated() {
                let points = entry.values.enumerated().map { "\(fmt(x($0.offset))),\(fmt(y($0.element)))" }
                let stroke = index == regimeSeries ? "#212529" : "#adb5bd"
                let dash = entry.dashed ? " stroke-dasharray=\"5,4\"" : ""
                svg += "<polyline fill=\"none\" stroke=\"\(stroke)\" stroke-width=\"1.5\"\(dash) points=\"\(points.joined(separator: " "))\"/>\n"
                if index == regimeSeries {
                    for (i, value) in entry.values.enumerated() {
                        let colour = colours[rows[i].regime] ?? "#000"
                        svg += "<circle cx=\"\(fmt(x(i)))\" cy=\"\(fmt(y(value)))\" r=\"2.5\" fill=\"\(colour)\"><title>pair \(i): \(escapeXML(entry.name)) \(formatNumber(value)) (\(rows[i].regime.rawValue))</title></circle>\n"
                    }
                }
            }
            svg += "<text x=\"16\" y=\"\(fmt(originY + panelHeight / 2))\" transform=\"rotate(-90 16 \(fmt(originY + panelHeight / 2)))\" text-anchor=\"middle\">\(escapeXML(label))</text>\n"
        }

        panel(originY: top, label: "wavelength (tokens)",
              series: [("original", rows.map(\.originalWavelength), true), ("scaled", rows.map(\.wavelength), false)],
              guides: [("trained \(formatLength(trainedLength))", Double(trainedLength)),
                       ("target \(formatLength(targetLength))", Double(targetLength))],
              regimeSeries: 1)
        let secondTop = top + panelHeight + gap
        let maxScale = rows.map(\.scale).max() ?? 1
        panel(originY: secondTop, label: "scale λ/λ0",
              series: [("scale", rows.map { Swift.max($0.scale, 1e-12) }, false)],
              guides: [("1", 1), ("×\(formatNumber(maxScale))", Swift.max(maxScale, 1))],
              regimeSeries: 0)
        let axisY = secondTop + panelHeight + 18
        svg += "<text x=\"\(fmt(left + plotWidth / 2))\" y=\"\(fmt(axisY + 14))\" text-anchor=\"middle\">pair index i (0 … \(rows.count - 1))</text>\n"
        var legendX = left
        for regime in RopeRegime.allCases {
            svg += "<circle cx=\"\(fmt(legendX + 5))\" cy=\"\(fmt(top - 12))\" r=\"4\" fill=\"\(colours[regime]!)\"/>"
            svg += "<text x=\"\(fmt(legendX + 13))\" y=\"\(fmt(top - 8))\">\(regime.rawValue)</text>\n"
            legendX += 100
        }
        svg += "<text x=\"\(fmt(legendX + 10))\" y=\"\(fmt(top - 8))\" fill=\"#868e96\">dashed: original wavelength</text>\n"
        svg += "</svg>\n"
        return svg
    }

    /// `text` with `&`, `<`, `>` and `"` escaped for SVG/HTML text and attribute values.
    public static func escapeXML(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
