import Basics
import Foundation
import ModelIO
import RoPE
import TestSupport
import Testing
@testable import Training

/// A config.json with the given RoPE geometry (a Llama-family config as `init-model` writes it, config only).
func ropeModel(maxPosition: Int, theta: Double, extra: [(String, JSONValue)] = []) throws -> String {
    let dir = TestSupport.scratchDirectory("stages-model")
    var config = JSONObject([("architectures", .array([.string("LlamaForCausalLM")])), ("model_type", .string("llama")),
                             ("hidden_size", .int(256)), ("num_attention_heads", .int(4)),
                             ("num_key_value_heads", .int(2)), ("num_hidden_layers", .int(2)),
                             ("max_position_embeddings", .int(maxPosition)), ("rope_theta", .double(theta))])
    for (key, value) in extra { config[key] = value }
    try JSONValue.object(config).serialized().write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
    return dir
}

func parseError(_ yaml: String) -> String {
    do { _ = try TrainingStages(yaml: yaml, path: "s.yaml"); return "no error" } catch { return "\(error)" }
}

@Suite struct StagesTests {
    static let examples = TestSupport.repoRoot + "/eval/stages"

    @Test func examplesParse() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.examples).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files == ["llama3-8b-1m-theta.yaml", "llama3-8b-estimate.yaml", "smollm2-16k.yaml", "tiny-demo.yaml"])
        for file in files { _ = try TrainingStages.load(path: Self.examples + "/" + file) }
    }

    @Test func tinyDemo() throws {
        let stages = try TrainingStages.load(path: Self.examples + "/tiny-demo.yaml")
        #expect(stages.seed == 1 && stages.betas == (0.9, 0.95) && stages.eps == 1e-8 && stages.saveEvery == 10)
        #expect(stages.packing == PackingOptions(documentMask: true, resetPositions: false))
        #expect(stages.sampling == LengthSampling(lengthExponent: 0, shortThreshold: 128, shortWeight: 0.5))
        #expect(stages.stages.map(\.seqLen) == [256, 1024])
        #expect(stages.stages.map(\.sequencesPerStep) == [4, 2])
        let second = stages.stages[1]
        #expect(second.schedule == .cosine && second.minLRRatio == 0.1 && second.lr == 5e-4 && second.warmupSteps == 2)
        #expect(second.check == StageCheck(task: .passkey, lengths: [512, 1024], samples: 4, minAccuracy: 0, maxLossIncrease: 0.5))

        let model = try ropeModel(maxPosition: 256, theta: 10000)
        let ropes = try stages.resolveRopes(modelDirectory: model)
        #expect(ropes[0].configuration.ropeType == .default && ropes[0].configuration.maxPositionEmbeddings == 256)
        let yarn = ropes[1].configuration
        #expect(yarn.ropeType == .yarn && yarn.factor == 4 && yarn.originalMaxPositionEmbeddings == 256)
        #expect(ropes[1].summary == "yarn ×4 (θ 10000)")
        // The keys written into the stage's config.json: both transformers 4.x and 5.x forms, the stage's length.
        let written = ropes[1].apply(to: try FileOps.readJSONObject(model + "/config.json").0)
        #expect(written["max_position_embeddings"]?.intValue == 1024)
        #expect(written["rope_scaling"]?["rope_type"]?.stringValue == "yarn")
        #expect(written["rope_scaling"]?["factor"]?.doubleValue == 4)
        #expect(written["rope_parameters"]?["rope_theta"]?.doubleValue == 10000)
    }

    /// SmolLM2's geometry: the token budget becomes steps, and the planner's YaRN factor is 16K / 8K.
    @Test func smollm2() throws {
        let stages = try TrainingStages.load(path: Self.examples + "/smollm2-16k.yaml")
        let stage = stages.stages[0]
        #expect(stage.seqLen == 16384 && stage.tokensPerStep == 65536 && stage.tokenBudget == 16_777_216 && stage.steps == 256)
        let rope = try stages.resolveRopes(modelDirectory: ropeModel(maxPosition: 8192, theta: 100000))[0]
        #expect(rope.configuration.factor == 2 && rope.configuration.originalMaxPositionEmbeddings == 8192)
    }

    /// Gradient's schedule: explicit θ per stage replaces the model's θ; lengths and budgets as on the model card.
    @Test func gradientLlama3() throws {
        let stages = try TrainingStages.load(path: Self.examples + "/llama3-8b-1m-theta.yaml")
        #expect(stages.stages.map(\.seqLen) == [65536, 262144, 524288, 1_048_576])
        #expect(stages.stages.map(\.totalTokens) == [62_914_560, 100_663_296, 419_430_400, 838_860_800])
        let ropes = try stages.resolveRopes(modelDirectory: ropeModel(maxPosition: 8192, theta: 500000))
        #expect(ropes.map(\.configuration.theta) == [15_300_000, 207_100_000, 1_060_000_000, 2_800_000_000])
        #expect(ropes.allSatisfy { $0.configuration.ropeType == .default })
        #expect(ropes[3].configUpdates["max_position_embeddings"]?.intValue == 1_048_576)
    }

    /// `plan: {method: theta}` gives the critical-dimension θ that Gradient's released 1M config carries.
    @Test func thetaPlanMatchesGradientRelease() throws {
        let yaml = "stages:\n  - {seq_len: 1M, plan: {method: theta}, steps: 1, lr: 1e-5}\n"
        let stages = try TrainingStages(yaml: yaml, path: "s.yaml")
        let rope = try stages.resolveRopes(modelDirectory: ropeModel(maxPosition: 8192, theta: 500000))[0]
        #expect(rope.configuration.theta == 3_580_165_449)
    }

    @Test func explicitScalingRoundTrips() throws {
        let yaml = """
            stages:
              - seq_len: 4K
                rope: {type: yarn, factor: 4, original_max_position_embeddings: 1024, beta_fast: 4, beta_slow: 1}
                steps: 3
                lr: 1e-4
            """
        let stages = try TrainingStages(yaml: yaml, path: "s.yaml")
        let model = try ropeModel(maxPosition: 1024, theta: 10000)
        let rope = try stages.resolveRopes(modelDirectory: model)[0]
        let c = rope.configuration
        #expect(c.ropeType == .yarn && c.factor == 4 && c.betaFast == 4 && c.betaSlow == 1 && c.maxPositionEmbeddings == 4096)
        // The same frequencies as the planner's YaRN ×4 with the same betas.
        var options = RopePlanOptions()
        options.betaFast = 4
        options.betaSlow = 1
        let plan = try RoPE.plan(from: RopeConfiguration(theta: 10000, headDim: 64, maxPositionEmbeddings: 1024),
                                 targetLength: 4096, method: .yarn, options: options)
        #expect(try c.frequencies(sequenceLength: 4096).invFreq == plan.final.frequencies.invFreq)
    }

    @Test func badFilesNameLineStageAndKey() {
        let base = "stages:\n  - name: a\n    seq_len: 1K\n    steps: 2\n    lr: 1e-4\n"
        #expect(parseError("sedd: 3\n" + base).hasPrefix("s.yaml:1: sedd: unknown key (allowed: seed, weight_decay"))
        #expect(parseError(base + "    seqlen: 2K\n").hasPrefix("s.yaml:6: stages[0] (a).seqlen: unknown key (allowed: name, seq_len"))
        #expect(parseError("stages:\n  - name: a\n    seq_len: 1K\n    steps: 2\n")
                == "s.yaml:2: stages[0] (a).lr: required key is missing")
        #expect(parseError("stages:\n  - name: a\n    lr: 1e-3\n    steps: 2\n")
                == "s.yaml:2: stages[0] (a).seq_len: required key is missing")
        #expect(parseError("stages:\n  - {seq_len: 1K, lr: 1e-3}\n")
                == "s.yaml:2: stages[0].steps: required key is missing (give steps or tokens)")
        #expect(parseError(base.replacingOccurrences(of: "1e-4", with: "fast"))
                == "s.yaml:5: stages[0] (a).lr: expected a number, got \"fast\"")
        #expect(parseError(base.replacingOccurrences(of: "1K", with: "lots"))
                == "s.yaml:3: stages[0] (a).seq_len: expected a length like 16384, 16K or 1M, got \"lots\"")
        #expect(parseError("recompute: sometimes\n" + base) == "s.yaml:1: recompute: expected true or false, got \"sometimes\"")
        #expect(parseError(base + "  - {name: b, seq_len: 1024, steps: 1, lr: 1e-4}\n")
                == "s.yaml:6: stages[1] (b).seq_len: 1024 does not exceed the previous stage's 1024; lengths must increase")
        #expect(parseError(base + "  - {name: b, seq_len: 512, steps: 1, lr: 1e-4}\n").contains("lengths must increase"))
        #expect(parseError(base + "  - {name: a, seq_len: 2K, steps: 1, lr: 1e-4}\n")
                == "s.yaml:6: stages[1] (a).name: duplicate stage name")
        #expect(parseError(base + "    tokens: 1M\n") == "s.yaml:6: stages[0] (a): give either steps or tokens, not both")
        #expect(parseError(base + "    tokens_per_step: 1500\n").contains("not a multiple of seq_len 1024"))
        #expect(parseError(base + "    schedule: step\n") == "s.yaml:6: stages[0] (a).schedule: expected one of cosine, linear, constant, got \"step\"")
        #expect(parseError(base + "    rope: {type: yarn, factr: 2}\n").hasPrefix("s.yaml:6: stages[0] (a).rope.factr: unknown key"))
        #expect(parseError(base + "    rope: {type: wavy}\n").hasPrefix("s.yaml:6: stages[0] (a).rope.type: unknown rope type \"wavy\""))
        #expect(parseError(base + "    plan: {method: magic}\n").hasPrefix("s.yaml:6: stages[0] (a).plan.method: expected one of yarn, linear"))
        #expect(parseError(base + "    plan: {method: yarn}\n    rope: {theta: 1e6}\n").contains("give either rope or plan, not both"))
        #expect(parseError("stages: []\n") == "s.yaml:1: stages: needs at least one stage")
        #expect(parseError("seed: 1\n") == "s.yaml:1: stages: required key is missing")
        #expect(parseError("stages:\n  - [1, 2\n").hasPrefix("s.yaml: line "))
        #expect(parseError(base + "    warmup_steps: 3\n") == "s.yaml:6: stages[0] (a).warmup_steps: 3 exceeds the stage's 2 steps")
    }

    /// RoPE settings the model cannot take fail naming the stages file, the stage and the key.
    @Test func ropeTheModelCannotTake() throws {
        let model = try ropeModel(maxPosition: 2048, theta: 10000)
        func failure(_ rope: String, seqLen: String = "4K") throws -> String {
            let yaml = "stages:\n  - {name: x, seq_len: \(seqLen), steps: 1, lr: 1e-4, \(rope)}\n"
            let stages = try TrainingStages(yaml: yaml, path: "s.yaml")
            do { _ = try stages.resolveRopes(modelDirectory: model); return "no error" } catch { return "\(error)" }
        }
        #expect(try failure("rope: {type: yarn, factor: 0.5}").hasPrefix("s.yaml: stages[0] (x).rope: invalid RoPE configuration: rope_scaling.factor: must be a finite number >= 1"))
        #expect(try failure("rope: {type: llama3, factor: 2}").contains("low_freq_factor"))
        #expect(try failure("plan: {method: yarn}", seqLen: "2K")
                == "s.yaml: stages[0] (x).plan: yarn for seq_len 2048 on \(model)/config.json: invalid argument target: 2048 must exceed the trained context length 2048")
        #expect(try failure("plan: {method: theta}", seqLen: "1K").contains("must exceed the trained context length 2048"))
        #expect(try failure("rope: {theta: 1e6}") == "no error")
    }
}
