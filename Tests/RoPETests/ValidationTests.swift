import Foundation
import Testing
import RoPE

/// One example that must trigger `rule`, reported on `field`.
struct RuleExample: Sendable, CustomStringConvertible {
    let rule: RopeRule
    let field: String
    let note: String
    let findings: @Sendable () -> [RopeIssue]
    var description: String { "\(rule.rawValue) (\(note))" }
}

private var base: [String: Any] {
    ["hidden_size": 4096, "num_attention_heads": 32, "max_position_embeddings": 8192, "rope_theta": 500000.0]
}

private func with(_ extra: [String: Any]) -> [String: Any] {
    base.merging(extra) { _, new in new }
}

private func yarn(_ extra: [String: Any], top: [String: Any] = [:]) -> [String: Any] {
    let scaling: [String: Any] = ["rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048]
    return with((["max_position_embeddings": 8192, "rope_scaling": scaling.merging(extra) { _, new in new }] as [String: Any])
        .merging(top) { _, new in new })
}

private func llama3(_ extra: [String: Any], top: [String: Any] = [:]) -> [String: Any] {
    let scaling: [String: Any] = ["rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192]
    return with((["max_position_embeddings": 131072, "rope_scaling": scaling.merging(extra) { _, new in new }] as [String: Any])
        .merging(top) { _, new in new })
}

private func longrope(_ extra: [String: Any], top: [String: Any] = [:]) -> [String: Any] {
    let ones = Array(repeating: 1.0, count: 64)
    let scaling: [String: Any] = ["type": "longrope", "short_factor": ones, "long_factor": ones, "factor": 32.0]
    return with((["max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
                  "rope_scaling": scaling.merging(extra) { _, new in new }] as [String: Any])
        .merging(top) { _, new in new })
}

let ruleExamples: [RuleExample] = [
    RuleExample(rule: .unknownRopeType, field: "rope_scaling.rope_type", note: "rope_type fancy") {
        issues(of: with(["rope_scaling": ["rope_type": "fancy", "factor": 2.0]]))
    },
    RuleExample(rule: .unknownRopeType, field: "rope_parameters.type", note: "legacy type key, 5.x dict") {
        issues(of: with(["rope_parameters": ["type": "ntk-by-parts", "factor": 2.0]]))
    },
    RuleExample(rule: .missingRequiredKey, field: "rope_scaling.factor", note: "linear without factor") {
        issues(of: with(["rope_scaling": ["rope_type": "linear"]]))
    },
    RuleExample(rule: .missingRequiredKey, field: "rope_scaling.factor", note: "dynamic without factor") {
        issues(of: with(["rope_scaling": ["rope_type": "dynamic"]]))
    },
    RuleExample(rule: .missingRequiredKey, field: "rope_scaling.factor", note: "yarn without factor") {
        issues(of: with(["rope_scaling": ["rope_type": "yarn", "original_max_position_embeddings": 2048]]))
    },
    RuleExample(rule: .missingRequiredKey, field: "rope_scaling.original_max_position_embeddings",
                note: "yarn without original and without max_position_embeddings") {
        var config = yarn(["original_max_position_embeddings": NSNull()])
        config["max_position_embeddings"] = nil
        return issues(of: config)
    },
    RuleExample(rule: .missingRequiredKey, field: "rope_scaling.low_freq_factor", note: "llama3 without low_freq_factor") {
        var config = llama3([:])
        var scaling = config["rope_scaling"] as! [String: Any]
        scaling["low_freq_factor"] = nil
        config["rope_scaling"] = scaling
        return issues(of: config)
    },
    RuleExample(rule: .missingRequiredKey, field: "rope_scaling.long_factor", note: "longrope without long_factor") {
        var config = longrope([:])
        var scaling = config["rope_scaling"] as! [String: Any]
        scaling["long_factor"] = nil
        config["rope_scaling"] = scaling
        return issues(of: config)
    },
    RuleExample(rule: .missingRequiredKey, field: "max_position_embeddings", note: "dynamic without max_position_embeddings") {
        var config = with(["rope_scaling": ["rope_type": "dynamic", "factor": 2.0]])
        config["max_position_embeddings"] = nil
        return issues(of: config)
    },
    RuleExample(rule: .missingRequiredKey, field: "head_dim", note: "no head_dim and no num_attention_heads") {
        var config = base
        config["num_attention_heads"] = nil
        return issues(of: config)
    },
    RuleExample(rule: .wrongType, field: "rope_scaling.factor", note: "factor is a string") {
        issues(of: with(["rope_scaling": ["rope_type": "linear", "factor": "2"]]))
    },
    RuleExample(rule: .wrongType, field: "max_position_embeddings", note: "fractional length") {
        issues(of: with(["max_position_embeddings": 4096.5]))
    },
    RuleExample(rule: .wrongType, field: "rope_scaling.short_factor[2]", note: "list entry not a number") {
        issues(of: longrope(["short_factor": [1.0, 1.0, "x"]]))
    },
    RuleExample(rule: .thetaInvalid, field: "rope_theta", note: "negative theta") {
        issues(of: with(["rope_theta": -1.0]))
    },
    RuleExample(rule: .thetaInvalid, field: "rope_parameters.rope_theta", note: "theta 1 inside 5.x dict") {
        issues(of: with(["rope_parameters": ["rope_type": "default", "rope_theta": 1.0]]))
    },
    RuleExample(rule: .headDimInvalid, field: "head_dim", note: "head_dim 0") {
        issues(of: with(["head_dim": 0]))
    },
    RuleExample(rule: .partialRotaryFactorOutOfRange, field: "partial_rotary_factor", note: "1.5") {
        issues(of: with(["partial_rotary_factor": 1.5]))
    },
    RuleExample(rule: .partialRotaryFactorOutOfRange, field: "rope_parameters.partial_rotary_factor", note: "0 in 5.x dict") {
        issues(of: with(["rope_parameters": ["rope_type": "default", "partial_rotary_factor": 0.0]]))
    },
    RuleExample(rule: .rotaryDimInvalid, field: "partial_rotary_factor", note: "odd head_dim 127") {
        issues(of: with(["head_dim": 127]))
    },
    RuleExample(rule: .rotaryDimInvalid, field: "partial_rotary_factor", note: "80 × 0.4125 = 33") {
        issues(of: with(["head_dim": 80, "partial_rotary_factor": 0.4125]))
    },
    RuleExample(rule: .factorBelowOne, field: "rope_scaling.factor", note: "linear factor 0.5") {
        issues(of: with(["rope_scaling": ["rope_type": "linear", "factor": 0.5]]))
    },
    RuleExample(rule: .factorBelowOne, field: "rope_scaling.factor", note: "yarn factor 0.9") {
        issues(of: yarn(["factor": 0.9]))
    },
    RuleExample(rule: .factorBelowOne, field: "rope_scaling.factor", note: "llama3 factor 0") {
        issues(of: llama3(["factor": 0.0]))
    },
    RuleExample(rule: .attentionFactorNegative, field: "rope_scaling.attention_factor", note: "yarn -1") {
        issues(of: yarn(["attention_factor": -1.0]))
    },
    RuleExample(rule: .attentionFactorNegative, field: "rope_scaling.attention_factor", note: "longrope -0.5") {
        issues(of: longrope(["attention_factor": -0.5]))
    },
    RuleExample(rule: .betaInvalid, field: "rope_scaling.beta_fast", note: "negative beta_fast") {
        issues(of: yarn(["beta_fast": -2.0]))
    },
    RuleExample(rule: .betaFastBelowBetaSlow, field: "rope_scaling.beta_fast", note: "1 < 32") {
        issues(of: yarn(["beta_fast": 1.0, "beta_slow": 32.0]))
    },
    RuleExample(rule: .betaFastBelowBetaSlow, field: "rope_scaling.beta_fast", note: "default 32 < beta_slow 40") {
        issues(of: yarn(["beta_slow": 40.0]))
    },
    RuleExample(rule: .mscaleInvalid, field: "mscale", note: "infinite mscale (struct)") {
        let config = RopeConfiguration(ropeType: .yarn, theta: 1e4, headDim: 64, maxPositionEmbeddings: 8192,
                                       factor: 4, originalMaxPositionEmbeddings: 2048, mscale: .infinity)
        return config.diagnostics()
    },
    RuleExample(rule: .mscaleWithoutMscaleAllDim, field: "rope_scaling.mscale", note: "only mscale_all_dim") {
        issues(of: yarn(["mscale_all_dim": 1.0]))
    },
    RuleExample(rule: .originalMaxPositionInvalid, field: "rope_scaling.original_max_position_embeddings", note: "0") {
        issues(of: yarn(["original_max_position_embeddings": 0]))
    },
    RuleExample(rule: .maxPositionInvalid, field: "max_position_embeddings", note: "0") {
        issues(of: with(["max_position_embeddings": 0]))
    },
    RuleExample(rule: .yarnFactorMismatch, field: "rope_scaling.factor", note: "factor 2 vs 8192/2048") {
        issues(of: yarn(["factor": 2.0]))
    },
    RuleExample(rule: .llama3FrequencyFactorOrder, field: "rope_scaling.high_freq_factor", note: "high < low") {
        issues(of: llama3(["low_freq_factor": 4.0, "high_freq_factor": 1.0]))
    },
    RuleExample(rule: .llama3FrequencyFactorOrder, field: "rope_scaling.high_freq_factor", note: "high == low") {
        issues(of: llama3(["low_freq_factor": 2.0, "high_freq_factor": 2.0]))
    },
    RuleExample(rule: .llama3OriginalNotBelowMax, field: "rope_scaling.original_max_position_embeddings", note: "8192 ≥ 8192") {
        issues(of: llama3([:], top: ["max_position_embeddings": 8192]))
    },
    RuleExample(rule: .longropeListLength, field: "rope_scaling.short_factor", note: "3 entries for d/2 = 64") {
        issues(of: longrope(["short_factor": [1.0, 1.0, 1.0]]))
    },
    RuleExample(rule: .longropeListValue, field: "rope_scaling.long_factor", note: "a zero divisor") {
        issues(of: longrope(["long_factor": [0.0] + Array(repeating: 1.0, count: 63)]))
    },
    RuleExample(rule: .longropeFactorMissing, field: "rope_scaling.factor", note: "Phi-3 style, no factor") {
        var config = longrope([:])
        var scaling = config["rope_scaling"] as! [String: Any]
        scaling["factor"] = nil
        config["rope_scaling"] = scaling
        return issues(of: config)
    },
    RuleExample(rule: .unrecognizedKey, field: "rope_scaling.beta_fast", note: "beta_fast in llama3") {
        issues(of: llama3(["beta_fast": 32.0]))
    },
    RuleExample(rule: .unrecognizedKey, field: "rope_scaling.finetuned", note: "NousResearch finetuned flag") {
        issues(of: yarn(["finetuned": true]))
    },
    RuleExample(rule: .thetaMissing, field: "rope_theta", note: "no rope_theta anywhere") {
        var config = base
        config["rope_theta"] = nil
        return issues(of: config)
    },
    RuleExample(rule: .malformedConfig, field: "config.json", note: "top level is an array") {
        issues(ofData: Data("[1, 2]".utf8))
    },
    RuleExample(rule: .malformedConfig, field: "config.json", note: "not JSON") {
        issues(ofData: Data("{\"rope_theta\": ".utf8))
    },
    RuleExample(rule: .malformedConfig, field: "rope_parameters", note: "nested, unknown layer type") {
        issues(of: with(["rope_parameters": ["full_attention": ["rope_type": "default"],
                                             "sliding_attention": ["rope_type": "default"]]]),
               layerType: "chunked_attention")
    },
    RuleExample(rule: .malformedConfig, field: "rope_parameters.sliding_attention", note: "nested, null entry (NoPE)") {
        issues(of: with(["rope_parameters": ["full_attention": ["rope_type": "default"],
                                             "sliding_attention": NSNull()]]),
               layerType: "sliding_attention")
    },
]

@Suite("validation rules")
struct ValidationTests {
    @Test("every rule has at least one example")
    func everyRuleIsCovered() {
        let covered = Set(ruleExamples.map(\.rule))
        let missing = RopeRule.allCases.filter { !covered.contains($0) }
        #expect(missing.isEmpty, "rules without a test: \(missing)")
    }

    @Test("each example triggers its rule on the named field", arguments: ruleExamples)
    func example(_ example: RuleExample) {
        let found = example.findings()
        let hit = found.first { $0.rule == example.rule }
        #expect(hit != nil, "got \(found)")
        #expect(hit?.field == example.field, "got \(found)")
        if let hit { #expect(!hit.message.isEmpty) }
    }

    @Test("error rules stop resolution and computation; warnings do not", arguments: ruleExamples)
    func severityIsEnforced(_ example: RuleExample) {
        let found = example.findings()
        guard let hit = found.first(where: { $0.rule == example.rule }) else { return }
        let hasError = found.contains { $0.severity == .error }
        if hit.severity == .error { #expect(hasError) }
        else { #expect(!hasError, "warning-only example produced errors: \(found)") }
    }

    @Test("error messages name the field")
    func errorDescription() throws {
        do {
            _ = try resolve(with(["rope_scaling": ["rope_type": "linear", "factor": 0.25]]))
            Issue.record("expected an error")
        } catch let error as RopeError {
            #expect(error.description.contains("rope_scaling.factor"))
            #expect(error.description.contains("0.25"))
        }
    }

    @Test("frequencies(sequenceLength:) refuses an invalid configuration")
    func computeValidates() {
        let config = RopeConfiguration(ropeType: .linear, theta: 10000, headDim: 64, factor: 0.5)
        #expect(throws: RopeError.self) { try config.frequencies() }
    }

    @Test("real configs resolve without errors", arguments: ["llama-3.1", "qwen2.5 yarn", "deepseek-v3", "gpt-oss"])
    func realConfigs(_ name: String) {
        let config = realConfig(name)
        let found = issues(of: config)
        #expect(!found.contains { $0.severity == .error }, "\(name): \(found)")
    }
}

func realConfig(_ name: String) -> [String: Any] {
    let configs: [String: [String: Any]] = [
        "llama-3.1": llama31Config,
        "qwen2.5 yarn": [
            "model_type": "qwen2", "hidden_size": 3584, "num_attention_heads": 28, "max_position_embeddings": 32768,
            "rope_theta": 1000000.0,
            "rope_scaling": ["factor": 4.0, "original_max_position_embeddings": 32768, "type": "yarn"],
        ],
        "deepseek-v3": [
            "model_type": "deepseek_v3", "hidden_size": 7168, "num_attention_heads": 128, "qk_rope_head_dim": 64,
            "max_position_embeddings": 163840, "rope_theta": 10000,
            "rope_scaling": ["beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0,
                             "original_max_position_embeddings": 4096, "type": "yarn"],
        ],
        "gpt-oss": [
            "model_type": "gpt_oss", "head_dim": 64, "hidden_size": 2880, "num_attention_heads": 64,
            "max_position_embeddings": 131072, "rope_theta": 150000.0,
            "rope_scaling": ["rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                             "truncate": false, "original_max_position_embeddings": 4096],
        ],
    ]
    return configs[name]!
}
