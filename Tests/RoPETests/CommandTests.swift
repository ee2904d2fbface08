import Foundation
import Testing
import TestSupport
import RoPE

/// `longctx rope show/plan/apply` through the built binary (no Python needed).
@Suite("longctx rope commands", .serialized)
struct RopeCommandTests {
    static func run(_ arguments: [String]) throws -> TestSupport.ProcessResult {
        try TestSupport.longctx(arguments)
    }

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    static func modelWithConfig(_ config: [String: Any], tag: String) throws -> String {
        let directory = TestSupport.scratchDirectory(tag)
        let data = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: directory + "/config.json"))
        return directory
    }

    @Test("show --json: rotary_dim, every inv_freq as a float32 number, attention_factor")
    func showJSON() throws {
        let directory = try Self.modelWithConfig(llama31Config, tag: "show")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try Self.run(["rope", "show", directory, "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try Self.json(result.stdout)
        #expect(object["rotary_dim"] as? Int == 128)
        #expect(object["attention_factor"] as? Double == 1.0)
        #expect(object["rope_type"] as? String == "llama3")
        let values = try #require(object["inv_freq"] as? [Double])
        let expected = try resolve(llama31Config).frequencies().invFreq
        #expect(values.map { Float($0) } == expected)  // shortest float32 digits parse back exactly
        let hex = try #require(object["inv_freq_f32_hex"] as? [String])
        #expect(hex.map { UInt32($0.dropFirst(2), radix: 16)! } == expected.map(\.bitPattern))

        let text = try Self.run(["rope", "show", directory])
        #expect(text.stdout.contains("regimes     kept 0–28, blended 29–34, interpolated 35–63"))
    }

    @Test("show --seq-len drives dynamic NTK")
    func showSeqLen() throws {
        let directory = try Self.modelWithConfig([
            "model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32, "max_position_embeddings": 4096,
            "rope_theta": 10000.0, "rope_scaling": ["rope_type": "dynamic", "factor": 4.0],
        ], tag: "dyn")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let grown = try Self.json(Self.run(["rope", "show", directory, "--seq-len", "16384", "--json"]).stdout)
        #expect(grown["effective_theta"] as? Double == 10000 * pow(13.0, 128.0 / 126.0))
        let initial = try Self.json(Self.run(["rope", "show", directory, "--json"]).stdout)
        #expect(initial["effective_theta"] as? Double == 10000)
        let bad = try Self.run(["rope", "show", directory, "--seq-len", "0"])
        #expect(bad.status != 0 && bad.stderr.contains("--seq-len"))
    }

    @Test("plan --json carries the planned numbers; --svg writes a plot")
    func planJSON() throws {
        let directory = try Self.modelWithConfig(llama31Config, tag: "plan")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let theta = try Self.json(Self.run(["rope", "plan", directory, "--target", "1M", "--method", "theta", "--json"]).stdout)
        #expect(theta["rope_theta"] as? Double == 3_580_165_449)
        #expect(theta["rope_type"] as? String == "default")
        #expect(theta["trained_length"] as? Int == 8192)
        #expect((theta["dimensions"] as? [Any])?.count == 64)

        let svg = directory + "/plan.svg"
        let yarn = try Self.run(["rope", "plan", directory, "--target", "1M", "--method", "yarn", "--beta-fast", "4",
                                 "--beta-slow", "1", "--stages", "32K,128K,512K", "--json", "--svg", svg])
        #expect(yarn.status == 0, "\(yarn.stderr)")
        let object = try Self.json(yarn.stdout)
        #expect(object["factor"] as? Double == 128)
        #expect(object["beta_fast"] as? Double == 4)
        #expect(object["original_max_position_embeddings"] as? Int == 8192)
        let stages = try #require(object["stages"] as? [[String: Any]])
        #expect(stages.map { $0["factor"] as? Double } == [4, 16, 64, 128])
        #expect(try String(contentsOfFile: svg, encoding: .utf8).hasPrefix("<svg"))
    }

    @Test("errors exit non-zero and name the field")
    func errors() throws {
        let directory = try Self.modelWithConfig([
            "hidden_size": 4096, "num_attention_heads": 32, "rope_theta": 10000.0,
            "rope_scaling": ["rope_type": "linear", "factor": 0.5],
        ], tag: "err")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let show = try Self.run(["rope", "show", directory])
        #expect(show.status != 0)
        #expect(show.stderr.contains("rope_scaling.factor"))
        let valid = try Self.modelWithConfig(llama31Config, tag: "err2")
        defer { try? FileManager.default.removeItem(atPath: valid) }
        let short = try Self.run(["rope", "plan", valid, "--target", "1K", "--method", "yarn", "--from", "4K"])
        #expect(short.status != 0 && short.stderr.contains("target") && short.stderr.contains("4096"))
        let unknownMethod = try Self.run(["rope", "plan", directory, "--target", "1M", "--method", "magic"])
        #expect(unknownMethod.status != 0 && unknownMethod.stderr.contains("--method"))
        let missing = try Self.run(["rope", "show", directory + "/nope"])
        #expect(missing.status != 0 && missing.stderr.contains("nope"))
    }

    @Test("apply writes a new directory with both config forms and linked weights; the source is untouched")
    func apply() throws {
        let root = TestSupport.scratchDirectory("apply")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let made = try Self.run(["init-model", "--out", root + "/src", "--head-dim", "32", "--max-position", "4096"])
        #expect(made.status == 0, "\(made.stderr)")
        let before = try Data(contentsOf: URL(fileURLWithPath: root + "/src/config.json"))

        let result = try Self.run(["rope", "apply", root + "/src", "--target", "32K", "--method", "yarn", "--out", root + "/out"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: root + "/src/config.json")) == before)
        let config = try Self.json(String(contentsOfFile: root + "/out/config.json", encoding: .utf8))
        #expect(config["max_position_embeddings"] as? Int == 32768)
        let scaling = try #require(config["rope_scaling"] as? [String: Any])
        let parameters = try #require(config["rope_parameters"] as? [String: Any])
        #expect(scaling["rope_type"] as? String == "yarn" && scaling["factor"] as? Double == 8)
        #expect(parameters["rope_theta"] as? Double == 10000 && parameters["factor"] as? Double == 8)
        #expect(config["torch_dtype"] as? String == "float32")  // unknown fields survive
        // Key order of the source is kept; new keys are appended.
        let text = try String(contentsOfFile: root + "/out/config.json", encoding: .utf8)
        #expect(text.range(of: "\"architectures\"")!.lowerBound < text.range(of: "\"rope_scaling\"")!.lowerBound)
        let source = try FileManager.default.attributesOfItem(atPath: root + "/src/model.safetensors")
        let linked = try FileManager.default.attributesOfItem(atPath: root + "/out/model.safetensors")
        #expect(source[.systemFileNumber] as? Int == linked[.systemFileNumber] as? Int)

        let again = try Self.run(["rope", "apply", root + "/src", "--target", "32K", "--method", "yarn", "--out", root + "/out"])
        #expect(again.status != 0 && again.stderr.contains("already exists"))

        let copied = try Self.run(["rope", "apply", root + "/src", "--target", "16K", "--method", "linear",
                                   "--out", root + "/copy", "--copy-weights", "--format", "transformers4"])
        #expect(copied.status == 0, "\(copied.stderr)")
        let copy = try FileManager.default.attributesOfItem(atPath: root + "/copy/model.safetensors")
        #expect(source[.systemFileNumber] as? Int != copy[.systemFileNumber] as? Int)
        let v4 = try Self.json(String(contentsOfFile: root + "/copy/config.json", encoding: .utf8))
        #expect(v4["rope_parameters"] == nil)
        #expect((v4["rope_scaling"] as? [String: Any])?["factor"] as? Double == 4)

        let stages = try Self.run(["rope", "apply", root + "/src", "--target", "1M", "--method", "yarn",
                                   "--stages", "64K", "--out", root + "/x"])
        #expect(stages.status != 0 && stages.stderr.contains("--stages"))
    }

    @Test("apply replaces existing scaling, keeps Phi-3's top-level original in sync, handles config-only sources")
    func applyReplaces() throws {
        let short = (0..<48).map { 1 + Double($0) / 32 }, long = (0..<48).map { 1 + Double($0) }
        let phi = try Self.modelWithConfig([
            "model_type": "phi3", "hidden_size": 3072, "num_attention_heads": 32, "max_position_embeddings": 131072,
            "original_max_position_embeddings": 4096, "rope_theta": 10000.0,
            "rope_scaling": ["type": "longrope", "short_factor": short, "long_factor": long],
        ], tag: "phi")
        defer { try? FileManager.default.removeItem(atPath: phi) }
        let out = phi + "-yarn"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let result = try Self.run(["rope", "apply", phi, "--target", "64K", "--method", "yarn", "--out", out])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("no safetensors weights"))
        let config = try Self.json(String(contentsOfFile: out + "/config.json", encoding: .utf8))
        #expect(config["original_max_position_embeddings"] as? Int == 4096)
        let scaling = try #require(config["rope_scaling"] as? [String: Any])
        #expect(scaling["type"] == nil && scaling["short_factor"] == nil)
        #expect(scaling["factor"] as? Double == 16)
        let back = try resolve(config)
        #expect(back.ropeType == .yarn && back.factor == 16 && back.originalMaxPositionEmbeddings == 4096)
    }
}
