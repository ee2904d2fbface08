import Foundation
import Testing
@testable import ModelIO

/// Real configs of the families users extend (abridged to the keys that matter, values as published).
@Suite("model configs")
struct ModelConfigTests {
    static let llama31 = """
    {"architectures":["LlamaForCausalLM"],"attention_bias":false,"bos_token_id":128000,"eos_token_id":128001,
     "hidden_act":"silu","hidden_size":4096,"intermediate_size":14336,"max_position_embeddings":131072,
     "mlp_bias":false,"model_type":"llama","num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":8,
     "rms_norm_eps":1e-05,"rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
     "original_max_position_embeddings":8192,"rope_type":"llama3"},"rope_theta":500000.0,
     "tie_word_embeddings":false,"torch_dtype":"bfloat16","vocab_size":128256}
    """
    static let qwen25 = """
    {"architectures":["Qwen2ForCausalLM"],"hidden_size":3584,"intermediate_size":18944,"max_position_embeddings":32768,
     "max_window_layers":28,"model_type":"qwen2","num_attention_heads":28,"num_hidden_layers":28,"num_key_value_heads":4,
     "rms_norm_eps":1e-06,"rope_theta":1000000.0,"sliding_window":131072,"tie_word_embeddings":false,
     "torch_dtype":"bfloat16","use_sliding_window":false,"vocab_size":152064}
    """
    static let mistral = """
    {"architectures":["MistralForCausalLM"],"hidden_size":4096,"intermediate_size":14336,"max_position_embeddings":32768,
     "model_type":"mistral","num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":8,"rms_norm_eps":1e-05,
     "rope_theta":10000.0,"sliding_window":4096,"tie_word_embeddings":false,"torch_dtype":"bfloat16","vocab_size":32000}
    """
    static let smollm2 = """
    {"architectures":["LlamaForCausalLM"],"hidden_size":576,"intermediate_size":1536,"max_position_embeddings":8192,
     "model_type":"llama","num_attention_heads":9,"num_hidden_layers":30,"num_key_value_heads":3,"rms_norm_eps":1e-05,
     "rope_theta":100000,"tie_word_embeddings":true,"dtype":"bfloat16","vocab_size":49152}
    """
    static let v5RopeParameters = """
    {"model_type":"llama","hidden_size":4096,"num_attention_heads":32,"head_dim":128,"num_hidden_layers":1,"vocab_size":10,
     "intermediate_size":8,"max_position_embeddings":131072,
     "rope_parameters":{"rope_type":"yarn","rope_theta":500000.0,"factor":16.0,"original_max_position_embeddings":8192}}
    """

    static func decode(_ s: String) throws -> ModelConfig { try ModelConfig.decode(Data(s.utf8), path: "config.json") }

    @Test func llama31() throws {
        let c = try Self.decode(Self.llama31)
        try c.validate(path: "config.json")
        #expect(c.family == .llama && c.family.isLlamaFamily)
        #expect(c.headDim == 128 && c.numKeyValueHeads == 8 && !c.tieWordEmbeddings)
        #expect(c.ropeTheta == 500000 && c.rmsNormEps == 1e-05 && c.weightDtype == "bfloat16")
    }

    @Test func qwen25HasGQA() throws {
        let c = try Self.decode(Self.qwen25)
        try c.validate(path: "config.json")
        #expect(c.family == .qwen2 && c.headDim == 128 && c.numAttentionHeads! / c.numKeyValueHeads! == 7)
        #expect(c.slidingWindow == 131072 && c.ropeTheta == 1e6)
    }

    @Test func mistralAndSmolLM() throws {
        let m = try Self.decode(Self.mistral)
        try m.validate(path: "config.json")
        #expect(m.family == .mistral && m.slidingWindow == 4096 && m.headDim == 128)
        let s = try Self.decode(Self.smollm2)
        try s.validate(path: "config.json")
        #expect(s.headDim == 64 && s.tieWordEmbeddings && s.ropeTheta == 100000 && s.weightDtype == "bfloat16")
    }

    @Test func summaryReadsRopeAndTrainedContext() throws {
        for (text, type, trained, theta) in [(Self.llama31, "llama3", 8192, 500000.0), (Self.v5RopeParameters, "yarn", 8192, 500000.0),
                                             (Self.qwen25, "default", 32768, 1e6)] {
            let d = NSTemporaryDirectory() + "cfg-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            try text.write(toFile: d + "/config.json", atomically: true, encoding: .utf8)
            let c = try ModelDirectory(path: d).config
            // Weights are not needed for the config view; the summary needs them, so write a tiny model's.
            try SafetensorsWriter.write([("x", .init(zeros: [1]))], to: d + "/model.safetensors")
            let s = try ModelSummary(ModelDirectory(path: d))
            #expect(s.rope.type == type && s.trainedContext == trained && s.rope.theta == theta, "\(c.modelType ?? "")")
        }
    }

    @Test func unknownFamiliesAreReportedNotRun() throws {
        let c = try Self.decode(#"{"model_type":"gpt2","n_embd":768}"#)
        #expect(c.family == .other && !c.family.isLlamaFamily)
    }
}
