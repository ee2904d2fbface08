import ArgumentParser
import Basics
import Foundation
import ModelIO
import RoPE

/// `longctx rope apply MODEL_DIR --target … --method … --out DIR`: writes an extended copy of a model.
struct RopeApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Write a copy of a model whose config uses the planned RoPE parameters (the source is untouched).",
        discussion: """
            The new config.json carries both rope_scaling (+ rope_theta) for transformers 4.x and rope_parameters \
            for 5.x, and max_position_embeddings = target. Weights are hard-linked (symlinked across file systems) \
            unless --copy-weights; tokenizer and generation files are copied. The output directory must not exist.
            """)

    /// Keys of the source rope dict that carry model structure rather than scaling, kept when rewriting it.
    static let preservedRopeKeys: Set<String> = ["mrope_section", "mrope_interleaved"]

    @Argument(help: "Source model directory.")
    var model: String

    @OptionGroup var plan: RopePlanArguments

    @Option(help: "Output model directory (must not exist).")
    var out: String

    @Option(help: "Config form to write: both (default), transformers4 (rope_scaling) or transformers5 (rope_parameters).")
    var format: HFConfigFormat = .both

    @Flag(name: .customLong("copy-weights"), help: "Copy the weight files instead of linking them.")
    var copyWeights = false

    @Flag(help: "Print machine-readable JSON.")
    var json = false

    func validate() throws {
        if plan.stages != nil {
            throw ValidationError("--stages is for 'rope plan'; 'rope apply' writes one config: pass the stage length as --target")
        }
    }

    func run() async throws {
        let source = try RopeSource(model: model, layerType: plan.layerType)
        if source.fromTextConfig {
            throw ValidationError("\(source.directory.configPath): RoPE keys live in text_config; 'rope apply' does not rewrite nested text configs yet")
        }
        if case .nested = source.config.ropeParameters, source.resolution.source.hasPrefix("rope_parameters.") {
            throw ValidationError("\(source.directory.configPath): rope_parameters is nested by layer type (\(source.config.layerTypes.joined(separator: ", "))); 'rope apply' supports one rope dict only")
        }
        let result = try plan.plan(source)
        let stage = result.final

        // Keys of the old rope dict that describe structure (M-RoPE sections) survive the rewrite.
        let oldDict: HFRopeParameters? = {
            if let scaling = source.config.ropeScaling, !scaling.isEmpty { return scaling }
            if case .flat(let flat) = source.config.ropeParameters { return flat }
            return nil
        }()
        let extra = JSONObject((oldDict?.otherKeys.entries ?? []).filter { Self.preservedRopeKeys.contains($0.0) })

        var config = source.directory.configJSON
        let hadTopLevelOriginal = config["original_max_position_embeddings"] != nil
        let updates = stage.configuration.hfConfigUpdates(format: format, topLevelOriginal: hadTopLevelOriginal,
                                                          extraRopeKeys: extra)
        for (key, value) in updates.entries {
            if value == .null && config[key] == nil { continue }
            config[key] = value
        }

        // Read the new config back the way transformers would and insist on the planned frequencies.
        let written = Data(JSONValue.object(config).serialized().utf8)
        let check = try HFRopeConfig.decode(written).resolve().configuration
            .frequencies(sequenceLength: stage.targetLength)
        guard check.invFreq == stage.frequencies.invFreq, check.attentionFactor == stage.frequencies.attentionFactor else {
            throw ValidationError("internal error: the rewritten config.json does not reproduce the planned frequencies")
        }

        try source.directory.writeCopy(to: out, config: config, linkWeights: !copyWeights)
        let weightsNote: String
        if source.directory.hasWeights {
            weightsNote = copyWeights ? "weights copied" : "weights linked"
        } else {
            weightsNote = "no weights in the source (config and companion files only)"
            FileHandle.standardError.write(Data("warning: \(model) has no safetensors weights; wrote config only\n".utf8))
        }

        if json {
            var object = JSONObject()
            object["out"] = .string(out)
            object["method"] = .string(result.method.rawValue)
            object["trained_length"] = .int(result.trainedLength)
            object["target_length"] = .int(stage.targetLength)
            object["format"] = .string(format.rawValue)
            object["config_updates"] = .object(JSONObject(updates.entries.filter {
                !($0.1 == .null && source.directory.configJSON[$0.0] == nil)
            }))
            object["weights"] = .string(weightsNote)
            object["rotary_dim"] = .int(stage.frequencies.rotaryDim)
            object["attention_factor"] = .double(stage.frequencies.attentionFactor)
            object["inv_freq"] = .array(stage.frequencies.invFreq.map { JSONValue.float($0) })
            print(JSONValue.object(object).serialized())
            return
        }
        RopeFormat.printWarnings(source.resolution.issues)
        var text = "wrote \(out) (\(weightsNote))\n"
        text += "\(result.method.rawValue) \(formatLength(result.trainedLength)) → \(formatLength(stage.targetLength))"
        let parameters = RopeFormat.parameters(stage.configuration)
        text += ": θ \(RopeFormat.number(stage.configuration.exportable.theta))"
        if !parameters.isEmpty { text += ", \(parameters)" }
        text += ", attention factor \(RopeFormat.number(stage.frequencies.attentionFactor))\n"
        for note in result.notes { text += "note: \(note)\n" }
        print(text, terminator: "")
    }
}
