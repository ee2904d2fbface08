import ArgumentParser
import Basics
import Foundation
import ModelIO
import RoPE

/// `longctx rope show MODEL_DIR [--seq-len N] [--json]`: what the model's RoPE config means (needs only config.json).
struct RopeShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Explain a model's RoPE config: type, θ, rotary dim, inverse frequencies, attention factor.",
        discussion: """
            Reads only config.json. Frequencies are computed as transformers 5.x does (Float32, bit-exact in \
            almost all cases). --seq-len selects the current sequence length for dynamic NTK and longrope.
            """)

    @Argument(help: "Model directory (only config.json is read).")
    var model: String

    @Option(name: .customLong("seq-len"), help: "Current sequence length (dynamic and longrope depend on it).")
    var seqLen: Int?

    @Option(name: .customLong("layer-type"), help: "For rope_parameters nested by layer type: which one.")
    var layerType: String?

    @Flag(help: "Print machine-readable JSON.")
    var json = false

    func validate() throws {
        if let seqLen, seqLen <= 0 { throw ValidationError("--seq-len must be positive (got \(seqLen))") }
    }

    func run() async throws {
        let source = try RopeSource(model: model, layerType: layerType)
        let config = source.configuration
        let frequencies = try config.frequencies(sequenceLength: seqLen)
        let base = try config.unscaled.frequencies()
        let trained = config.trainedContextLength ?? config.maxPositionEmbeddings ?? 0
        let target = config.maxPositionEmbeddings ?? trained
        let reference = config.factor ?? (trained > 0 ? Double(target) / Double(trained) : 1)
        let rows = RoPE.dimensionTable(original: base, scaled: frequencies, trainedLength: max(trained, 1),
                                       targetLength: max(target, 1), referenceFactor: reference)
        let gguf = try? config.ggufExport(architecture: RoPE.ggufArchitecture(modelType: source.modelType))

        if json {
            var object = JSONObject()
            object["model"] = .string(model)
            object["model_type"] = .string(source.modelType)
            object["source"] = .string(source.fromTextConfig ? "text_config.\(source.resolution.source)" : source.resolution.source)
            object["rope_type"] = .string(config.ropeType.rawValue)
            object["rope_theta"] = .double(config.theta)
            object["head_dim"] = .int(config.headDim)
            object["partial_rotary_factor"] = .double(config.partialRotaryFactor)
            object["layout"] = .string(source.config.pairLayout.rawValue)
            if let maxPos = config.maxPositionEmbeddings { object["max_position_embeddings"] = .int(maxPos) }
            if let original = config.originalMaxPositionEmbeddings {
                object["original_max_position_embeddings"] = .int(original)
            }
            if trained > 0 { object["trained_length"] = .int(trained) }
            object["parameters"] = .object(config.scalingMembers)
            RopeFormat.frequenciesJSON(frequencies, into: &object)
            let multiplier = config.deepseekSoftmaxScaleMultiplier
            if multiplier != 1 { object["deepseek_softmax_scale_multiplier"] = .double(multiplier) }
            object["issues"] = RopeFormat.issuesJSON(source.resolution.issues)
            if let gguf { object["gguf"] = RopeFormat.ggufJSON(gguf) }
            object["dimensions"] = RopeFormat.dimensionsJSON(rows)
            print(JSONValue.object(object).serialized())
            return
        }

        RopeFormat.printWarnings(source.resolution.issues)
        var text = ""
        text += "model       \(model) (\(source.modelType))\n"
        text += "rope        \(config.ropeType.rawValue) from \(source.resolution.source)"
        if source.fromTextConfig { text += " (text_config)" }
        text += "\n"
        text += "theta       \(RopeFormat.number(config.theta))"
        if frequencies.effectiveTheta != config.theta {
            text += " (effective \(RopeFormat.number(frequencies.effectiveTheta)) at seq_len \(frequencies.sequenceLength ?? 0))"
        }
        text += "\n"
        text += "dims        head_dim \(config.headDim), rotary_dim \(frequencies.rotaryDim)"
        if config.partialRotaryFactor != 1 { text += " (partial_rotary_factor \(RopeFormat.number(config.partialRotaryFactor)))" }
        text += ", \(frequencies.invFreq.count) pairs, \(source.config.pairLayout == .halfSplit ? "half-split (rotate_half)" : "interleaved") layout\n"
        text += "context     max_position_embeddings \(config.maxPositionEmbeddings.map(String.init) ?? "?")"
        if let original = config.originalMaxPositionEmbeddings { text += ", original \(original)" }
        text += "\n"
        let parameters = RopeFormat.parameters(config)
        if !parameters.isEmpty { text += "parameters  \(parameters)\n" }
        text += "attention   factor \(RopeFormat.number(frequencies.attentionFactor)) on cos and sin"
        let multiplier = config.deepseekSoftmaxScaleMultiplier
        if multiplier != 1 { text += "; DeepSeek softmax scale ×\(RopeFormat.number(multiplier))" }
        text += "\n"
        if let ramp = frequencies.yarnRamp {
            text += "yarn ramp   pairs ≤ \(RopeFormat.number(ramp.low)) kept, ≥ \(RopeFormat.number(ramp.high)) interpolated"
            text += " (beta_fast \(RopeFormat.number(ramp.betaFast)), beta_slow \(RopeFormat.number(ramp.betaSlow)))\n"
        }
        if let bands = frequencies.llama3Bands {
            text += "llama3      λ < \(RopeFormat.number(bands.highFreqWavelength)) kept, λ > \(RopeFormat.number(bands.lowFreqWavelength)) divided by factor\n"
        }
        if let list = frequencies.longropeList {
            text += "longrope    \(list.rawValue) factors at seq_len \(seqLen.map(String.init) ?? "≤ original")\n"
        }
        if config.ropeType != .default {
            text += "regimes     \(RopeFormat.regimeRuns(rows))\n"
        }
        text += "\n"
        text += RopeFormat.table(rows, trainedLength: max(trained, 1), targetLength: max(target, 1))
        print(text, terminator: "")
    }
}
