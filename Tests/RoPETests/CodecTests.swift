import Basics
import Foundation
import Testing
import RoPE

@Suite("config codec")
struct CodecTests {
    @Test("Llama-3.1 (4.x rope_scaling) resolves to llama3")
    func llama31() throws {
        let resolution = try HFRopeConfig.decode(configData(llama31Config)).resolve()
        let config = resolution.configuration
        #expect(resolution.source == "rope_scaling")
        #expect(config.ropeType == .llama3)
        #expect(config.theta == 500000)
        #expect(config.headDim == 128 && config.rotaryDim == 128)
        #expect(config.factor == 8 && config.lowFreqFactor == 1 && config.highFreqFactor == 4)
        #expect(config.originalMaxPositionEmbeddings == 8192 && config.maxPositionEmbeddings == 131072)
        #expect(resolution.warnings.isEmpty)
    }

    @Test("5.x rope_parameters carries rope_theta and partial_rotary_factor inside")
    func transformers5() throws {
        let config = try resolve([
            "hidden_size": 2560, "num_attention_heads": 32, "max_position_embeddings": 2048, "rope_theta": 1.0,
            "partial_rotary_factor": 1.0,
            "rope_parameters": ["rope_type": "yarn", "rope_theta": 10000.0, "partial_rotary_factor": 0.4,
                                "factor": 4.0, "original_max_position_embeddings": 2048],
        ])
        #expect(config.theta == 10000)
        #expect(config.headDim == 80 && config.rotaryDim == 32)
        #expect(config.ropeType == .yarn && config.factor == 4)
    }

    @Test("legacy `type` key and the `su` alias")
    func legacyType() throws {
        let qwen = try resolve(realConfig("qwen2.5 yarn"))
        #expect(qwen.ropeType == .yarn && qwen.headDim == 128 && qwen.originalMaxPositionEmbeddings == 32768)
        let ones = Array(repeating: 1.0, count: 48)
        let phi = try resolve([
            "hidden_size": 3072, "num_attention_heads": 32, "max_position_embeddings": 131072,
            "original_max_position_embeddings": 4096, "rope_theta": 10000.0,
            "rope_scaling": ["type": "su", "short_factor": ones, "long_factor": ones],
        ])
        #expect(phi.ropeType == .longrope && phi.rotaryDim == 96 && phi.originalMaxPositionEmbeddings == 4096)
    }

    @Test("top-level original_max_position_embeddings wins over the dict (transformers 5.x, Phi-3 style)")
    func topLevelOriginalWins() throws {
        let config = try resolve([
            "hidden_size": 4096, "num_attention_heads": 32, "max_position_embeddings": 32768,
            "original_max_position_embeddings": 2048, "rope_theta": 10000.0,
            "rope_scaling": ["rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 4096],
        ])
        #expect(config.originalMaxPositionEmbeddings == 2048)
    }

    @Test("yarn without original_max_position_embeddings uses max_position_embeddings")
    func originalDefaultsToMax() throws {
        let config = try resolve([
            "hidden_size": 4096, "num_attention_heads": 32, "max_position_embeddings": 32768, "rope_theta": 1e6,
            "rope_scaling": ["rope_type": "yarn", "factor": 4.0],
        ])
        #expect(config.originalMaxPositionEmbeddings == 32768)
    }

    @Test("rope_scaling wins over rope_parameters when both are present and non-empty")
    func scalingWins() throws {
        let both = try resolve([
            "hidden_size": 4096, "num_attention_heads": 32, "max_position_embeddings": 4096, "rope_theta": 10000.0,
            "rope_scaling": ["rope_type": "linear", "factor": 4.0],
            "rope_parameters": ["rope_type": "linear", "factor": 2.0, "rope_theta": 5.0],
        ])
        #expect(both.factor == 4 && both.theta == 10000)
        let emptyScaling = try resolve([
            "hidden_size": 4096, "num_attention_heads": 32, "max_position_embeddings": 4096, "rope_theta": 10000.0,
            "rope_scaling": [String: Any](),
            "rope_parameters": ["rope_type": "linear", "factor": 2.0, "rope_theta": 50000.0],
        ])
        #expect(emptyScaling.factor == 2 && emptyScaling.theta == 50000)
    }

    @Test("nested rope_parameters by layer type")
    func nested() throws {
        let object: [String: Any] = [
            "head_dim": 256, "hidden_size": 2560, "num_attention_heads": 8, "max_position_embeddings": 131072,
            "rope_parameters": [
                "full_attention": ["rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0],
                "sliding_attention": ["rope_type": "default", "rope_theta": 10000.0],
            ],
        ]
        let decoded = try HFRopeConfig.decode(configData(object))
        #expect(decoded.layerTypes == ["full_attention", "sliding_attention"])
        let full = try decoded.resolve()
        #expect(full.source == "rope_parameters.full_attention")
        #expect(full.configuration.ropeType == .linear && full.configuration.theta == 1e6)
        let sliding = try decoded.resolve(layerType: "sliding_attention").configuration
        #expect(sliding.ropeType == .default && sliding.theta == 10000)
    }

    @Test("DeepSeek MLA: qk_rope_head_dim is the rotary head, interleaved layout, softmax multiplier")
    func deepseek() throws {
        let decoded = try HFRopeConfig.decode(configData(realConfig("deepseek-v3")))
        let config = try decoded.resolve().configuration
        #expect(config.headDim == 64 && config.rotaryDim == 64)
        #expect(decoded.pairLayout == .interleaved)
        let frequencies = try config.frequencies()
        #expect(frequencies.attentionFactor == 1.0)
        #expect(frequencies.yarnRamp?.low == 10 && frequencies.yarnRamp?.high == 23)
        // rope.md §2.8: (0.1·ln 40 + 1)² = 1.8738542070926265
        #expect(abs(config.deepseekSoftmaxScaleMultiplier - 1.8738542070926265) < 1e-15)
        let scale = config.deepseekSoftmaxScale(qkHeadDim: 192)
        #expect(abs(scale - pow(192.0, -0.5) * 1.8738542070926265) < 1e-15)
    }

    @Test("integers written as floats are accepted; head_dim null falls back")
    func numberForms() throws {
        let config = try resolve([
            "hidden_size": 4096, "num_attention_heads": 32, "head_dim": NSNull(),
            "max_position_embeddings": 131072.0, "rope_theta": 500000,
            "rope_scaling": ["rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4,
                             "original_max_position_embeddings": 8192.0],
        ])
        #expect(config.headDim == 128 && config.maxPositionEmbeddings == 131072)
        #expect(config.originalMaxPositionEmbeddings == 8192)
    }

    @Test("unmodelled rope keys are kept")
    func otherKeys() throws {
        let decoded = try HFRopeConfig.decode(configData([
            "hidden_size": 4096, "num_attention_heads": 32, "rope_theta": 1e4, "max_position_embeddings": 65536,
            "rope_scaling": ["type": "yarn", "factor": 16.0, "original_max_position_embeddings": 4096,
                             "finetuned": true, "mrope_section": [16, 24, 24]],
        ]))
        let keys = decoded.ropeScaling?.otherKeys.keys
        #expect(keys == ["finetuned", "mrope_section"])
        #expect(decoded.ropeScaling?.otherKeys["finetuned"] == .bool(true))
        #expect(decoded.ropeScaling?.otherKeys["mrope_section"] == .array([.int(16), .int(24), .int(24)]))
    }

    // MARK: writing

    static let formats: [HFConfigFormat] = HFConfigFormat.allCases

    /// Round trip: write the configuration into a copy of the Llama-3.1 config, read it back in each transformers
    /// generation's view, and compare frequencies bit for bit.
    @Test("written configs read back to the same frequencies", arguments: RopePlanMethod.allCases, formats)
    func roundTrip(_ method: RopePlanMethod, _ format: HFConfigFormat) throws {
        let source = try resolve(llama31Config)
        let plan = try RoPE.plan(from: source, targetLength: 1 << 20, method: method,
                                 options: RopePlanOptions(betaFast: 4, betaSlow: 1))
        let stage = plan.final
        let updates = stage.configuration.hfConfigUpdates(format: format)
        let written = applying(updates, to: llama31Config)

        var views: [[String: Any]] = []
        if format != .transformers5 {
            var v4 = written
            v4["rope_parameters"] = nil  // what a 4.x reader looks at
            views.append(v4)
        }
        if format != .transformers4 {
            views.append(written)  // 5.x reads rope_scaling or rope_parameters
            var v5 = written
            v5["rope_scaling"] = nil
            v5["rope_theta"] = nil
            views.append(v5)
        }
        for view in views {
            let back = try resolve(view)
            #expect(back.maxPositionEmbeddings == 1 << 20)
            let frequencies = try back.frequencies(sequenceLength: 1 << 20)
            #expect(frequencies.invFreq == stage.frequencies.invFreq, "\(method) \(format)")
            #expect(frequencies.attentionFactor == stage.frequencies.attentionFactor)
        }
    }

    @Test("written dicts use transformers' keys and number kinds")
    func writtenKeys() throws {
        let config = RopeConfiguration(ropeType: .yarn, theta: 500000, headDim: 128, maxPositionEmbeddings: 1 << 20,
                                       factor: 128, originalMaxPositionEmbeddings: 8192, betaFast: 4, betaSlow: 1)
        let updates = config.hfConfigUpdates(format: .both)
        #expect(updates.keys == ["rope_theta", "rope_scaling", "rope_parameters", "max_position_embeddings"])
        let scaling = updates.entries[1].1
        #expect(scaling["rope_type"] == .string("yarn"))
        #expect(scaling["factor"] == .double(128))
        #expect(scaling["original_max_position_embeddings"] == .int(8192))
        #expect(scaling["rope_theta"] == nil)
        #expect(updates.entries[2].1["rope_theta"] == .double(500000))
        #expect(scaling.inlineText == #"{"rope_type": "yarn", "factor": 128.0, "original_max_position_embeddings": 8192, "beta_fast": 4.0, "beta_slow": 1.0}"#)
        #expect(updates.entries[3].1 == .int(1 << 20))

        let v5 = config.hfConfigUpdates(format: .transformers5).keys
        #expect(v5 == ["rope_scaling", "rope_parameters", "max_position_embeddings"])
        let v4 = config.hfConfigUpdates(format: .transformers4).keys
        #expect(v4 == ["rope_theta", "rope_scaling", "rope_parameters", "max_position_embeddings"])
        let plain = config.unscaled.hfConfigUpdates(format: .transformers4)
        #expect(plain["rope_scaling"] == .null)
        let top = config.hfConfigUpdates(format: .both, topLevelOriginal: true)
        #expect(top.entries.last?.0 == "original_max_position_embeddings")
        #expect(top.entries.last?.1 == .int(8192))
    }

    @Test("ntk is written as plain RoPE with the NTK-aware theta, identical frequencies")
    func ntkExport() throws {
        let ntk = RopeConfiguration(ropeType: .ntk, theta: 10000, headDim: 128, maxPositionEmbeddings: 16384, factor: 4)
        let exported = ntk.exportable
        #expect(exported.ropeType == .default)
        #expect(exported.theta == 10000 * pow(4.0, 128.0 / 126.0))
        #expect(try exported.frequencies().invFreq == ntk.frequencies().invFreq)
        let scaling = ntk.hfConfigUpdates(format: .transformers4)["rope_scaling"]
        #expect(scaling == .null)
    }

    @Test("JSON text of doubles keeps a fraction")
    func doubleText() {
        #expect(JSONValue.double(3580165449).inlineText == "3580165449.0")
        #expect(JSONValue.double(0.1).inlineText == "0.1")
        #expect(JSONValue.double(1e-5).inlineText == "1e-05")
        #expect(JSONValue.string("a\"b\n").inlineText == #""a\"b\n""#)
    }

    // MARK: GGUF

    @Test("GGUF: yarn keys")
    func ggufYarn() throws {
        let config = RopeConfiguration(ropeType: .yarn, theta: 500000, headDim: 128, maxPositionEmbeddings: 1 << 20,
                                       factor: 128, originalMaxPositionEmbeddings: 8192, betaFast: 4, betaSlow: 1)
        let gguf = try config.ggufExport(architecture: "llama")
        #expect(gguf["llama.rope.freq_base"] == .float32(500000))
        #expect(gguf["llama.rope.dimension_count"] == .uint32(128))
        #expect(gguf["llama.context_length"] == .uint32(1 << 20))
        #expect(gguf["llama.rope.scaling.type"] == .string("yarn"))
        #expect(gguf["llama.rope.scaling.factor"] == .float32(128))
        #expect(gguf["llama.rope.scaling.original_context_length"] == .uint32(8192))
        #expect(gguf["llama.rope.scaling.yarn_beta_fast"] == .float32(4))
        #expect(gguf["llama.rope.scaling.yarn_beta_slow"] == .float32(1))
        #expect(gguf.tensors.isEmpty)
    }

    @Test("GGUF: DeepSeek log multiplier, linear, dynamic, ntk, longrope")
    func ggufOthers() throws {
        let deepseek = try resolve(realConfig("deepseek-v3"))
        let ds = try deepseek.ggufExport(architecture: RoPE.ggufArchitecture(modelType: "deepseek_v3"))
        #expect(ds.architecture == "deepseek2")
        #expect(ds["deepseek2.rope.scaling.yarn_log_multiplier"] == .float32(Float(0.1)))

        let linear = RopeConfiguration(ropeType: .linear, theta: 1e4, headDim: 64, factor: 4)
        let lin = try linear.ggufExport(architecture: "llama")
        #expect(lin["llama.rope.scaling.type"] == .string("linear"))
        #expect(lin["llama.rope.scaling.factor"] == .float32(4))

        let dynamic = RopeConfiguration(ropeType: .dynamic, theta: 1e4, headDim: 64, maxPositionEmbeddings: 4096, factor: 4)
        let dyn = try dynamic.ggufExport(architecture: "llama")
        #expect(dyn["llama.rope.scaling.type"] == nil)
        #expect(!dyn.notes.isEmpty)

        let ntk = RopeConfiguration(ropeType: .ntk, theta: 1e4, headDim: 128, factor: 4)
        let nt = try ntk.ggufExport(architecture: "llama")
        #expect(nt["llama.rope.freq_base"] == .float32(Float(1e4 * pow(4.0, 128.0 / 126.0))))

        let short = (0..<48).map { 1 + Double($0) / 32 }, long = (0..<48).map { 1 + Double($0) }
        let phi = RopeConfiguration(ropeType: .longrope, theta: 1e4, headDim: 96, maxPositionEmbeddings: 131072,
                                    originalMaxPositionEmbeddings: 4096, shortFactor: short, longFactor: long)
        let lr = try phi.ggufExport(architecture: "phi3")
        #expect(lr["phi3.rope.scaling.type"] == .string("longrope"))
        #expect(lr["phi3.rope.scaling.attn_factor"] == .float32(Float((1 + log(32.0) / log(4096.0)).squareRoot())))
        #expect(lr.tensors.map(\.name) == ["rope_factors_long.weight", "rope_factors_short.weight"])
        #expect(lr.tensors[0].values == long.map { Float($0) })
    }

    @Test("GGUF: llama3 becomes rope_freqs.weight divisors matching our frequencies")
    func ggufLlama3() throws {
        let config = try resolve(llama31Config)
        let gguf = try config.ggufExport(architecture: "llama")
        #expect(gguf["llama.rope.scaling.type"] == nil)
        let divisors = try #require(gguf.tensors.first { $0.name == "rope_freqs.weight" }).values
        #expect(divisors.count == 64)
        // rope.md §2.6: pairs 0–28 unchanged, 29–34 smoothed, 35–63 divided by 8.
        #expect(divisors[0...28].allSatisfy { $0 == 1 })
        #expect(divisors[29...34].allSatisfy { $0 > 1 && $0 < 8 })
        #expect(divisors[35...63].allSatisfy { $0 == 8 })
        let base = try config.unscaled.frequencies().invFreq
        let scaled = try config.frequencies().invFreq
        for i in 0..<64 {
            let viaDivisor = base[i] / divisors[i]
            #expect(abs(viaDivisor - scaled[i]) <= 4 * scaled[i].ulp, "pair \(i)")
        }
    }
}
