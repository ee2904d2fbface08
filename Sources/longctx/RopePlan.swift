import ArgumentParser
import Basics
import Foundation
import ModelIO
import RoPE

/// `longctx rope plan MODEL_DIR --target 1M --method yarn|linear|ntk|llama3|theta [--stages …] [--json] [--svg FILE]`.
struct RopePlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Plan RoPE parameters for a longer context, with a per-dimension table.",
        discussion: """
            Every stage is derived from the model's unscaled RoPE and its trained length L0 (an existing \
            rope_scaling is replaced). yarn/linear/llama3 use factor = L/L0; ntk raises θ to θ·(L/L0)^(d/(d−2)); \
            theta raises θ to θ^(ln(L/2π)/ln(L0/2π)) (rounded), which keeps YaRN's critical dimension fixed.
            """)

    @Argument(help: "Model directory (only config.json is read).")
    var model: String

    @OptionGroup var plan: RopePlanArguments

    @Flag(help: "Print machine-readable JSON.")
    var json = false

    @Option(help: "Write an SVG plot of wavelength and scale per dimension to this file.")
    var svg: String?

    func run() async throws {
        let source = try RopeSource(model: model, layerType: plan.layerType)
        let result = try plan.plan(source)
        let rows = result.dimensionTable()
        if let svg {
            let title = "\(source.modelType): \(plan.method.rawValue) \(formatLength(result.trainedLength)) → \(formatLength(result.final.targetLength))"
            let text = RoPE.dimensionPlotSVG(rows: rows, title: title, trainedLength: result.trainedLength,
                                             targetLength: result.final.targetLength)
            do {
                try FileOps.writeAtomically(text, to: svg)
            } catch {
                throw ValidationError("--svg \(svg): cannot write: \(error)")
            }
        }
        if json {
            print(JSONValue.object(Self.planJSON(result, source: source, rows: rows)).serialized())
            return
        }
        RopeFormat.printWarnings(source.resolution.issues)
        print(Self.planText(result, source: source, rows: rows), terminator: "")
        if let svg { FileHandle.standardError.write(Data("wrote \(svg)\n".utf8)) }
    }

    static func stageJSON(_ stage: RopePlanStage) -> JSONObject {
        let config = stage.configuration
        var object = JSONObject()
        object["target_length"] = .int(stage.targetLength)
        object["ratio"] = .double(stage.ratio)
        object["rope_type"] = .string(config.ropeType.rawValue)
        object["rope_theta"] = .double(config.theta)
        object["rope_theta_exact"] = .double(stage.exactTheta)
        for (key, value) in config.scalingMembers.entries { object[key] = value }
        object["max_position_embeddings"] = .int(stage.targetLength)
        object["attention_factor"] = .double(stage.frequencies.attentionFactor)
        if let ramp = stage.frequencies.yarnRamp {
            object["yarn_ramp"] = .object(JSONObject([("low", .double(ramp.low)), ("high", .double(ramp.high)),
                                                      ("beta_fast", .double(ramp.betaFast)),
                                                      ("beta_slow", .double(ramp.betaSlow))]))
        }
        object["config_updates"] = .object(config.hfConfigUpdates(format: .both))
        object["rotary_dim"] = .int(stage.frequencies.rotaryDim)
        object["inv_freq"] = .array(stage.frequencies.invFreq.map { JSONValue.float($0) })
        return object
    }

    static func planJSON(_ plan: RopePlan, source: RopeSource, rows: [RopeDimensionRow]) -> JSONObject {
        var object = JSONObject()
        object["model"] = .string(source.directory.path)
        object["model_type"] = .string(source.modelType)
        object["method"] = .string(plan.method.rawValue)
        var from = JSONObject()
        from["rope_type"] = .string(plan.source.ropeType.rawValue)
        from["rope_theta"] = .double(plan.source.theta)
        for (key, value) in plan.source.scalingMembers.entries { from[key] = value }
        if let maxPos = plan.source.maxPositionEmbeddings { from["max_position_embeddings"] = .int(maxPos) }
        object["source"] = .object(from)
        object["head_dim"] = .int(plan.base.headDim)
        object["rotary_dim"] = .int(plan.base.rotaryDim)
        object["trained_length"] = .int(plan.trainedLength)
        object["target_length"] = .int(plan.final.targetLength)
        // The final stage's values at the top level, for scripts.
        let final = stageJSON(plan.final)
        for key in ["rope_type", "rope_theta", "rope_theta_exact", "factor", "original_max_position_embeddings",
                    "beta_fast", "beta_slow", "low_freq_factor", "high_freq_factor", "attention_factor",
                    "max_position_embeddings"] {
            if let value = final[key] { object[key] = value }
        }
        object["stages"] = .array(plan.stages.map { .object(stageJSON($0)) })
        object["notes"] = .array(plan.notes.map { .string($0) })
        object["dimensions"] = RopeFormat.dimensionsJSON(rows)
        return object
    }

    static func planText(_ plan: RopePlan, source: RopeSource, rows: [RopeDimensionRow]) -> String {
        var text = ""
        let src = plan.source
        let l0 = plan.trainedLength
        text += "model      \(source.directory.path) (\(source.modelType))\n"
        text += "source     \(src.ropeType.rawValue), θ \(RopeFormat.number(src.theta)), head_dim \(src.headDim), rotary_dim \(src.rotaryDim)"
        let parameters = RopeFormat.parameters(src)
        if !parameters.isEmpty { text += "; \(parameters)" }
        text += "\n"
        text += "plan       \(plan.method.rawValue) from \(formatLength(l0)) (\(l0)) to \(formatLength(plan.final.targetLength)) (\(plan.final.targetLength))\n"
        for note in plan.notes { text += "note       \(note)\n" }
        text += "\n"

        var header = ["stage", "length", "×L0"]
        switch plan.method {
        case .yarn: header += ["factor", "rope_theta", "attention", "ramp low–high"]
        case .linear: header += ["factor", "rope_theta"]
        case .llama3: header += ["factor", "low/high freq", "rope_theta"]
        case .ntk, .theta: header += ["rope_theta", "exact θ"]
        }
        var lines = [header]
        for (index, stage) in plan.stages.enumerated() {
            let c = stage.configuration
            var line = [String(index + 1), "\(formatLength(stage.targetLength))", RopeFormat.number(stage.ratio)]
            switch plan.method {
            case .yarn:
                let ramp = stage.frequencies.yarnRamp!
                line += [RopeFormat.number(c.factor!), RopeFormat.number(c.theta),
                         String(format: "%.6f", stage.frequencies.attentionFactor),
                         "\(RopeFormat.number(ramp.low))–\(RopeFormat.number(ramp.high))"]
            case .linear:
                line += [RopeFormat.number(c.factor!), RopeFormat.number(c.theta)]
            case .llama3:
                line += [RopeFormat.number(c.factor!),
                         "\(RopeFormat.number(c.lowFreqFactor!))/\(RopeFormat.number(c.highFreqFactor!))",
                         RopeFormat.number(c.theta)]
            case .ntk, .theta:
                line += [RopeFormat.number(c.theta), String(format: "%.2f", stage.exactTheta)]
            }
            lines.append(line)
        }
        let widths = header.indices.map { column in lines.map { $0[column].count }.max() ?? 0 }
        for cells in lines {
            text += cells.enumerated().map { column, cell in
                String(repeating: " ", count: widths[column] - cell.count) + cell
            }.joined(separator: "  ") + "\n"
        }
        text += "\n"

        let final = plan.final.configuration
        let updates = final.hfConfigUpdates(format: .both)
        text += "config.json (final stage; rope_scaling for transformers 4.x, rope_parameters for 5.x):\n"
        for (key, value) in updates.entries where key != "rope_parameters" {
            text += "  \"\(key)\": \(value.inlineText)\n"
        }
        text += "\n"
        text += "per-dimension (final stage): \(RopeFormat.regimeRuns(rows))\n"
        text += RopeFormat.table(rows, trainedLength: l0, targetLength: plan.final.targetLength)
        return text
    }
}
