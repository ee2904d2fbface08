import Foundation

/// Text renderings of extraction reports: the per-module table and the adapter's model card.
public enum ModelCard {
    static func f(_ x: Double, _ digits: Int = 4) -> String { String(format: "%.\(digits)f", x) }
    static func g(_ x: Double) -> String { String(format: "%.3g", x) }

    /// A fixed-width table, one row per module: action, shape, rank, energy retained, relative
    /// Frobenius error, σ₁/σ_r and the SVD method.
    public static func table(_ r: ExtractionReport, markdown: Bool = false) -> String {
        let header = ["module", "action", "shape", "rank", "energy", "rel. error", "σ1/σr", "svd"]
        var rows = [[String]]()
        for m in r.modules where m.action != "excluded" {
            rows.append([m.module, m.action, m.shape.map(String.init).joined(separator: "×"), m.rank > 0 ? String(m.rank) : "-",
                         m.action.hasPrefix("lora") ? f(m.energyRetained) : "-", m.action.hasPrefix("lora") ? g(m.relativeError) : "-",
                         m.conditionRatio.map { g($0) } ?? "-", m.method.isEmpty ? "-" : m.method])
        }
        if markdown {
            var s = "| " + header.joined(separator: " | ") + " |\n|" + header.map { _ in "---" }.joined(separator: "|") + "|\n"
            for row in rows { s += "| " + row.joined(separator: " | ") + " |\n" }
            return s
        }
        var widths = header.map(\.count)
        for row in rows { for (i, c) in row.enumerated() { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in i == 0 ? c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                : String(repeating: " ", count: widths[i] - c.count) + c }.joined(separator: "  ")
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n") + "\n"
    }

    /// One-paragraph summary used by the CLI and the card.
    public static func summary(_ r: ExtractionReport) -> String {
        let lora = r.modules.filter { $0.action.hasPrefix("lora") }
        let saved = r.modules.filter { $0.action == "saved" }
        return "\(lora.count) LoRA modules (max rank \(r.maxRank), \(r.loraParameters) parameters), \(saved.count) saved whole (\(r.savedParameters) parameters); "
            + "parameter-weighted energy retained \(f(r.weightedEnergy)), worst relative error \(g(r.worstError))"
    }

    /// The generated `README.md` of an extracted adapter.
    public static func extraction(report r: ExtractionReport, options o: ExtractionOptions, contents: AdapterContents) -> String {
        var s = """
        ---
        library_name: peft
        base_model: \(contents.baseModel)
        tags:
        - lora
        - longcontext
        - extracted
        ---

        # LoRA extracted with LongContext

        This adapter is the difference between a fine-tune and its base, compressed by a truncated SVD per
        module (`longctx lora extract`).

        - base: `\(r.base)`
        - fine-tune: `\(r.tuned)`
        - rank: up to \(r.maxRank) (limit \(o.policy.maxRank)\(o.parameterBudget.map { ", global budget \($0) parameters" } ?? "")\(o.policy.energy.map { ", energy target \($0)" } ?? "")\(o.policy.svEpsilon > 0 ? ", σ > \(o.policy.svEpsilon)" : "")\(o.policy.relativeThreshold > 0 ? ", σ > \(o.policy.relativeThreshold)·σ₁" : ""))
        - SVD: \(o.exact ? "exact (LAPACK)" : "randomized (q = r + \(o.oversampling.map(String.init) ?? "r"), \(o.powerIterations) power iterations, seed \(o.seed)) where cheaper than exact")
        - factors: \(o.split == .sqrt ? "√S on both" : o.split == .onB ? "S on B" : "S on A"), stored as \(contents.factorDType.rawValue)
        - scaling: \(o.scaling == .portable ? "portable (lora_alpha = r = \(contents.maxRank); lower ranks in rank_pattern only, compensation baked into the factors): PEFT, llama.cpp and vLLM apply the same delta" : "mergekit (rank_pattern = alpha_pattern): PEFT applies it exactly; llama.cpp ignores alpha_pattern")
        - modules_to_save: \(contents.modulesToSave.isEmpty ? "none" : contents.modulesToSave.joined(separator: ", "))\(o.serving ? " (serving mode: only LoRA pairs, loadable by llama.cpp and vLLM)" : "")

        \(summary(r)).

        ## Use

        ```python
        from peft import PeftModel
        model = PeftModel.from_pretrained(base_model, "path/to/this/adapter")
        ```

        or merge it: `longctx lora merge --base BASE --adapter path/to/this/adapter --out MERGED`.

        ## Modules

        """
        s += "\n" + table(r, markdown: true)
        if !r.notes.isEmpty { s += "\n## Notes\n\n" + r.notes.map { "- \($0)" }.joined(separator: "\n") + "\n" }
        return s
    }
}
