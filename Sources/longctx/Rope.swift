import ArgumentParser
import Basics
import Foundation
import ModelIO
import RoPE

/// `longctx rope …`: what a model's RoPE config means, plans for longer contexts, and applying one.
struct Rope: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "RoPE scaling: show what a config means, plan a longer context, write the extended config.",
        subcommands: [RopeShowCommand.self, RopePlanCommand.self, RopeApplyCommand.self])
}

extension RopePlanMethod: ExpressibleByArgument {}
extension HFConfigFormat: ExpressibleByArgument {}

/// A context length argument: `131072`, `128K`, `1M` (K = 1024, M = 1024²).
struct ContextLength: ExpressibleByArgument, Sendable {
    let value: Int
    init?(argument: String) {
        guard let value = parseLength(argument) else { return nil }
        self.value = value
    }
    static var defaultCompletionKind: CompletionKind { .default }
}

/// A comma-separated list of context lengths: `32K,128K,512K`.
struct ContextLengthList: ExpressibleByArgument, Sendable {
    let values: [Int]
    init?(argument: String) {
        guard let values = try? parseLengths(argument), !values.isEmpty else { return nil }
        self.values = values
    }
}

/// Options shared by `rope plan` and `rope apply`.
struct RopePlanArguments: ParsableArguments {
    @Option(help: "Target context length (e.g. 131072, 128K, 1M).")
    var target: ContextLength

    @Option(help: "Method: yarn, linear, ntk, llama3 or theta (θ-only, keeps YaRN's critical dimension).")
    var method: RopePlanMethod

    @Option(help: "Intermediate stage lengths, comma-separated (e.g. 32K,128K,512K); the target is the last stage.")
    var stages: ContextLengthList?

    @Option(name: .customLong("from"),
            help: "Trained context length L0 of the unscaled RoPE (default: original_max_position_embeddings, else max_position_embeddings).")
    var trainedLength: ContextLength?

    @Option(name: .customLong("beta-fast"), help: "YaRN beta_fast (default 32; UltraLong uses 4).")
    var betaFast: Double?

    @Option(name: .customLong("beta-slow"), help: "YaRN beta_slow (default 1).")
    var betaSlow: Double?

    @Option(name: .customLong("attention-factor"), help: "YaRN explicit attention_factor (default 0.1·ln(factor)+1).")
    var attentionFactor: Double?

    @Option(name: .customLong("low-freq-factor"), help: "llama3 low_freq_factor (default 1).")
    var lowFreqFactor: Double?

    @Option(name: .customLong("high-freq-factor"), help: "llama3 high_freq_factor (default 4).")
    var highFreqFactor: Double?

    @Flag(name: .customLong("exact-theta"), help: "Keep the θ of --method theta unrounded (default: nearest integer).")
    var exactTheta = false

    @Option(name: .customLong("layer-type"), help: "For rope_parameters nested by layer type: which one (default full_attention).")
    var layerType: String?

    var options: RopePlanOptions {
        RopePlanOptions(trainedLength: trainedLength?.value, betaFast: betaFast, betaSlow: betaSlow,
                        attentionFactor: attentionFactor, lowFreqFactor: lowFreqFactor,
                        highFreqFactor: highFreqFactor, roundTheta: !exactTheta)
    }

    func validate() throws {
        if method != .yarn && (betaFast != nil || betaSlow != nil || attentionFactor != nil) {
            throw ValidationError("--beta-fast, --beta-slow and --attention-factor apply to --method yarn only")
        }
        if method != .llama3 && (lowFreqFactor != nil || highFreqFactor != nil) {
            throw ValidationError("--low-freq-factor and --high-freq-factor apply to --method llama3 only")
        }
        if exactTheta && method != .theta {
            throw ValidationError("--exact-theta applies to --method theta only")
        }
    }

    func plan(_ source: RopeSource) throws -> RopePlan {
        try RoPE.plan(from: source.resolution.configuration, targetLength: target.value, method: method,
                      stages: stages?.values ?? [], options: options)
    }
}

/// A model's RoPE config, read from `config.json` (or its `text_config` for multimodal configs).
struct RopeSource {
    let directory: ModelDirectory
    let config: HFRopeConfig
    let resolution: HFRopeResolution
    /// Whether the RoPE keys were read from `text_config`.
    let fromTextConfig: Bool

    init(model: String, layerType: String?) throws {
        directory = try ModelDirectory(path: ModelResolver.resolve(model))
        var data = try directory.configData()
        var textConfig = false
        if directory.configJSON["hidden_size"] == nil && directory.configJSON["head_dim"] == nil,
           let text = directory.configJSON["text_config"]?.objectValue {
            data = Data(JSONValue.object(text).serialized(indent: nil).utf8)
            textConfig = true
        }
        fromTextConfig = textConfig
        do {
            config = try HFRopeConfig.decode(data)
            resolution = try config.resolve(layerType: layerType)
        } catch let error as RopeError {
            throw RopeCommandError(path: directory.configPath, error: error)
        }
    }

    var modelType: String { config.modelType ?? directory.config.modelType ?? "unknown" }
    var configuration: RopeConfiguration { resolution.configuration }
}

/// A RoPE error tied to the config file it came from.
struct RopeCommandError: Error, CustomStringConvertible {
    let path: String
    let error: RopeError
    var description: String { "\(path): \(error.description)" }
}

// MARK: - Conversions and formatting shared by the rope commands

enum RopeFormat {
    /// `%.4g`-style number for tables.
    static func short(_ value: Double) -> String {
        if value == value.rounded() && abs(value) < 1e7 { return String(Int64(value)) }
        return String(format: "%.4g", value)
    }

    static func number(_ value: Double) -> String { RoPE.formatNumber(value) }

    /// The scaling parameters of a configuration in one line (`factor 8, original 8192, …`).
    static func parameters(_ config: RopeConfiguration) -> String {
        let members = config.scalingMembers.entries.filter { !["short_factor", "long_factor"].contains($0.0) }
        var parts = members.map { key, member -> String in
            let value: String
            if let i = member.intValue { value = String(i) }
            else if case .number = member, let d = member.doubleValue { value = number(d) }
            else { value = member.inlineText }
            return "\(key) \(value)"
        }
        if let short = config.shortFactor, let long = config.longFactor {
            parts.append("short_factor [\(short.count)], long_factor [\(long.count)]")
        }
        return parts.joined(separator: ", ")
    }

    /// The per-dimension table as text.
    static func table(_ rows: [RopeDimensionRow], trainedLength: Int, targetLength: Int) -> String {
        let l0 = formatLength(trainedLength), l = formatLength(targetLength)
        let headers = ["pair", "λ0 tokens", "turns in \(l0)", "λ tokens", "turns in \(l)", "scale", "regime"]
        var lines = [headers]
        for row in rows {
            lines.append([String(row.pair), short(row.originalWavelength), short(row.rotationsInTrainedLength),
                          short(row.wavelength), short(row.rotationsInTargetLength),
                          String(format: "%.4g", row.scale), row.regime.rawValue])
        }
        let widths = headers.indices.map { column in lines.map { $0[column].count }.max() ?? 0 }
        return lines.map { cells in
            cells.enumerated().map { column, cell in
                let pad = String(repeating: " ", count: widths[column] - cell.count)
                return column == cells.count - 1 ? cell : pad + cell
            }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }

    /// Regime counts, e.g. `kept 0–28, blended 29–34, interpolated 35–63`.
    static func regimeRuns(_ rows: [RopeDimensionRow]) -> String {
        var runs: [(RopeRegime, Int, Int)] = []
        for row in rows {
            if let last = runs.last, last.0 == row.regime, last.2 == row.pair - 1 {
                runs[runs.count - 1].2 = row.pair
            } else {
                runs.append((row.regime, row.pair, row.pair))
            }
        }
        return runs.map { $0.1 == $0.2 ? "\($0.0.rawValue) \($0.1)" : "\($0.0.rawValue) \($0.1)–\($0.2)" }
            .joined(separator: ", ")
    }

    static func dimensionsJSON(_ rows: [RopeDimensionRow]) -> JSONValue {
        .array(rows.map { row in
            .object(JSONObject([
                ("pair", .int(row.pair)),
                ("original_inv_freq", .float(row.originalInvFreq)),
                ("inv_freq", .float(row.invFreq)),
                ("original_wavelength", .double(row.originalWavelength)),
                ("wavelength", .double(row.wavelength)),
                ("rotations_in_trained_length", .double(row.rotationsInTrainedLength)),
                ("rotations_in_target_length", .double(row.rotationsInTargetLength)),
                ("scale", .double(row.scale)),
                ("regime", .string(row.regime.rawValue)),
            ]))
        })
    }

    /// Frequencies as JSON: `rotary_dim`, `inv_freq` (float32 values, shortest digits), their bit patterns,
    /// `attention_factor`, and the intermediates.
    static func frequenciesJSON(_ f: RopeFrequencies, into object: inout JSONObject) {
        object["rotary_dim"] = .int(f.rotaryDim)
        object["attention_factor"] = .double(f.attentionFactor)
        object["effective_theta"] = .double(f.effectiveTheta)
        if let seq = f.sequenceLength { object["seq_len"] = .int(seq) }
        if let ramp = f.yarnRamp {
            object["yarn_ramp"] = .object(JSONObject([
                ("beta_fast", .double(ramp.betaFast)), ("beta_slow", .double(ramp.betaSlow)),
                ("low", .double(ramp.low)), ("high", .double(ramp.high)),
                ("correction_dim_beta_fast", .double(ramp.correctionDimFast)),
                ("correction_dim_beta_slow", .double(ramp.correctionDimSlow)),
                ("truncate", .bool(ramp.truncate)),
            ]))
        }
        if let bands = f.llama3Bands {
            object["llama3_bands"] = .object(JSONObject([
                ("low_freq_wavelength", .double(bands.lowFreqWavelength)),
                ("high_freq_wavelength", .double(bands.highFreqWavelength)),
            ]))
        }
        if let list = f.longropeList { object["longrope_list"] = .string(list.rawValue) }
        object["inv_freq"] = .array(f.invFreq.map { JSONValue.float($0) })
        object["inv_freq_f32_hex"] = .array(f.invFreq.map {
            .string("0x" + String(format: "%08x", $0.bitPattern))
        })
    }

    static func ggufJSON(_ export: GGUFRopeExport) -> JSONValue {
        var object = JSONObject()
        for entry in export.metadata {
            switch entry.value {
            case .uint32(let v): object[entry.key] = .int(Int(v))
            case .float32(let v): object[entry.key] = .float(v)
            case .string(let v): object[entry.key] = .string(v)
            case .bool(let v): object[entry.key] = .bool(v)
            }
        }
        var result = JSONObject([("metadata", .object(object))])
        if !export.tensors.isEmpty {
            result["tensors"] = .object(JSONObject(export.tensors.map { ($0.name, .array($0.values.map { JSONValue.float($0) })) }))
        }
        if !export.notes.isEmpty { result["notes"] = .array(export.notes.map { .string($0) }) }
        return .object(result)
    }

    static func issuesJSON(_ issues: [RopeIssue]) -> JSONValue {
        .array(issues.map { issue in
            .object(JSONObject([("severity", .string(issue.severity.rawValue)), ("rule", .string(issue.rule.rawValue)),
                                ("field", .string(issue.field)), ("message", .string(issue.message))]))
        })
    }

    static func printWarnings(_ issues: [RopeIssue]) {
        for issue in issues where issue.severity == .warning {
            FileHandle.standardError.write(Data("warning: \(issue.field): \(issue.message)\n".utf8))
        }
    }
}
