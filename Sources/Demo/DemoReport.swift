import Basics
import Evaluation
import Foundation
import LoRA
import ModelIO
import RoPE
import Training

/// `summary.json` (deterministic for a seed: measured scores, the recipe, no timings) and the self-contained
/// `report.html` (heatmaps side by side, loss curve with stage boundaries, the RoPE plan plot, the LoRA report, act
/// one's table, timings) of a demo run.
public enum DemoReport {
    /// The phases every summary has, in order.
    public static let phaseKeys = ["base", "yarn_untrained", "pi_untrained", "theta_untrained", "extended", "merged"]

    public static func write(_ outcome: DemoOutcome, to directory: String) throws {
        try FileOps.writeAtomically(summary(outcome).serialized() + "\n",
                                    to: (directory as NSString).appendingPathComponent("summary.json"))
        let loss = (try? String(contentsOfFile: (directory as NSString).appendingPathComponent("extension/run/loss.svg"),
                                encoding: .utf8)) ?? ""
        try FileOps.writeAtomically(html(outcome, lossSVG: loss), to: (directory as NSString).appendingPathComponent("report.html"))
    }

    /// Accuracy per length, keyed by the length in tokens (`"256"`, `"2048"`).
    static func byLength(_ phase: PhaseResult) -> JSONValue {
        .object(JSONObject(phase.accuracy.map { (String($0.length), JSONValue.double($0.value)) }))
    }

    public static func summary(_ outcome: DemoOutcome) -> JSONValue {
        let r = outcome.request.recipe
        var o = JSONObject()
        o["seed"] = .int(Int(outcome.request.seed))
        o["trained_context_length"] = .int(r.trainedLength)
        o["final_context_length"] = .int(r.finalLength)
        for phase in outcome.phases { o[phase.key] = byLength(phase) }
        var setup = JSONObject()
        setup["model"] = .string("\(r.layers) layers, d=\(r.hidden), \(r.heads) heads, θ \(RoPE.formatNumber(r.ropeTheta))")
        if case .distinctDigits(let n) = r.keys { setup["passkeys"] = .string("\(n) distinct digits") }
        setup["passkey_layout"] = .string(r.layout.rawValue)
        setup["grid"] = .object(JSONObject([("lengths", .array(r.gridLengths.map { .int($0) })), ("depths", .int(r.gridDepths)),
                                            ("prompts_per_depth", .int(r.gridPerDepth))]))
        setup["rope"] = .object(JSONObject(outcome.phases.map { ($0.key, JSONValue.string($0.rope)) }))
        setup["extension_stages"] = .array(outcome.extensionStages.map { .string($0) })
        setup["ring_workers"] = .int(r.ringWorkers)
        if let last = outcome.extensionLog.last { setup["extension_final_loss"] = .double(last.loss) }
        o["setup"] = .object(setup)
        if let lora = outcome.lora {
            o["lora"] = .object(JSONObject([("adapter", .string("adapters/extended-minus-base")), ("max_rank", .int(lora.maxRank)),
                                            ("lora_parameters", .int(lora.loraParameters)),
                                            ("saved_parameters", .int(lora.savedParameters)),
                                            ("worst_relative_error", .double(lora.worstError))]))
        }
        if let one = outcome.actOne {
            let rows: [JSONValue] = one.grid.lengths.map { length in
                let base = one.base.accuracy.first { $0.length == length }?.value ?? 0
                let yarn = one.yarn.accuracy.first { $0.length == length }?.value ?? 0
                return .object(JSONObject([("length", .int(length)), ("base", .double(base)), ("yarn", .double(yarn))]))
            }
            o["act_one"] = .object(JSONObject([
                ("model", .string(one.grid.modelName)), ("trained_context_length", .int(one.plan.trainedLength)),
                ("yarn_plan", .string(DemoSteps.describe(one.plan))),
                ("prompts_per_length", .int(one.grid.depths * one.grid.perDepth)),
                ("base", byLength(one.base)), ("yarn", byLength(one.yarn)), ("table", .array(rows)),
            ]))
        }
        return .object(o)
    }

    static func esc(_ s: String) -> String { Report.esc(s) }

    static func percent(_ v: Double) -> String { "\(Int((v * 100).rounded())) %" }

    /// The accuracy table: one row per phase, one column per length.
    static func table(_ phases: [PhaseResult]) -> String {
        guard let lengths = phases.first?.lengths else { return "" }
        var s = "<table><tr><th>model</th><th>RoPE</th>" + lengths.map { "<th>\(Report.lengthLabel($0))</th>" }.joined() + "</tr>\n"
        for p in phases {
            s += "<tr><td>\(esc(p.title))</td><td>\(esc(p.rope))</td>"
            s += p.accuracy.map { "<td style=\"background:\(Report.color($0.value))\">\(percent($0.value))</td>" }.joined()
            s += "</tr>\n"
        }
        return s + "</table>\n"
    }

    public static func html(_ outcome: DemoOutcome, lossSVG: String) -> String {
        let r = outcome.request.recipe
        var s = """
        <!DOCTYPE html>
        <html><head><meta charset="utf-8"><title>longctx demo</title>
        <style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse}
        td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}
        .maps{display:flex;flex-wrap:wrap;gap:8px}pre{background:#f6f6f6;padding:8px;overflow-x:auto}</style></head><body>
        <h1>longctx demo</h1>
        <p>Every number on this page was measured by this run (seed \(outcome.request.seed)).</p>
        <h2>Act two: a toy model, trained by the toolkit, taken from \(r.trainedLength) to \(formatLength(r.finalLength)) tokens</h2>
        <p>Base: \(r.layers) layers, d=\(r.hidden), \(r.heads) heads, trained at \(r.trainedLength) tokens on passkey prompts
        (answer-only loss), prompt layout `\(r.layout.rawValue)`. Passkey accuracy per context length (\(r.gridDepths) depths × \(r.gridPerDepth) prompts per length):</p>

        """
        s += table(outcome.phases)
        s += "<div class=\"maps\">\n"
        for p in outcome.phases {
            s += Report.heatmapSVG(EvalSummary(results: p.results), title: p.title)
        }
        s += "</div>\n<h3>Progressive training (\(r.ringWorkers > 1 ? "ring attention over \(r.ringWorkers) workers" : "single process"))</h3>\n<ul>"
        s += outcome.extensionStages.map { "<li>\(esc($0))</li>" }.joined() + "</ul>\n" + lossSVG
        if let yarn = outcome.plans.first(where: { $0.key == "yarn_untrained" })?.plan {
            s += "<h3>RoPE plan: \(esc(DemoSteps.describe(yarn)))</h3>\n"
            s += RoPE.dimensionPlotSVG(rows: yarn.dimensionTable(), title: DemoSteps.describe(yarn),
                                       trainedLength: yarn.trainedLength, targetLength: yarn.final.targetLength)
        }
        if let lora = outcome.lora {
            s += "<h3>LoRA: extended − base (adapters/extended-minus-base)</h3>\n<p>\(esc(ModelCard.summary(lora)))</p>\n"
            s += "<pre>\(esc(ModelCard.table(lora)))</pre>\n"
        }
        if let one = outcome.actOne {
            s += "<h2>Act one: \(esc(one.grid.modelName)) inside and beyond its \(formatLength(one.plan.trainedLength)) window</h2>\n"
            s += "<p>Training-free plan: \(esc(DemoSteps.describe(one.plan))); \(one.grid.depths * one.grid.perDepth) prompts per length.</p>\n"
            s += table([one.base, one.yarn])
        }
        s += "<h2>Timings</h2>\n<table>" + outcome.timings.map { "<tr><td>\(esc($0.0))</td><td>\(String(format: "%.1f s", $0.1))</td></tr>" }.joined()
        s += "</table>\n</body></html>\n"
        return s
    }
}

extension DemoSteps {
    /// `yarn 256 → 2K (×8)`.
    public static func describe(_ plan: RopePlan) -> String {
        "\(plan.method.rawValue) \(formatLength(plan.trainedLength)) → \(formatLength(plan.final.targetLength)) (×\(RoPE.formatNumber(plan.final.ratio)))"
    }
}

/// The few lines `longctx demo` prints at the end.
public enum DemoSummaryText {
    public static func lines(_ outcome: DemoOutcome) -> String {
        var s = ""
        let lengths = outcome.request.recipe.gridLengths
        s += "phase            " + lengths.map { formatLength($0).leftPad(6) }.joined() + "\n"
        for p in outcome.phases {
            s += p.key.padding(toLength: 17, withPad: " ", startingAt: 0)
                + p.accuracy.map { "\(Int(($0.value * 100).rounded()))%".leftPad(6) }.joined() + "\n"
        }
        if let one = outcome.actOne {
            s += "act one (\(one.grid.modelName))\n"
            for p in [one.base, one.yarn] {
                s += "  " + p.title + ": " + p.accuracy.map { "\(formatLength($0.length)) \(Int(($0.value * 100).rounded()))%" }.joined(separator: ", ") + "\n"
            }
        }
        let out = outcome.request.out
        s += "wrote \((out as NSString).appendingPathComponent("report.html")) and \((out as NSString).appendingPathComponent("summary.json"))\n"
        return s
    }
}

extension String {
    func leftPad(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}
