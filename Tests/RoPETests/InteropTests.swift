import Foundation
import Testing
import TestSupport
import RoPE

/// Interop with Hugging Face transformers (CPU, from PyPI): configs written by `longctx rope apply` load there,
/// and transformers' own rotary module computes the same inverse frequencies, attention factor and cos/sin as
/// longctx does — for every planning method and for real configs read by `longctx rope show`.
///
/// Runs when `torch` and `transformers` import; with `LONGCTX_INTEROP=1` a missing module is a failure.
@Suite("interop: transformers RoPE", .serialized)
struct RopeInteropTests {
    static let script = TestSupport.repoRoot + "/Tests/Interop/rope_interop.py"

    /// One directory to compare: ours from `rope show --json`, theirs from the Python script.
    struct Case {
        let name: String
        let directory: String
        let seqLen: Int?
        /// For `rope apply` outputs: the expected transformers view.
        let expectedType: String?
        let expectedMaxPosition: Int?
        let plannedInvFreqHex: [String]?
        /// Only transformers 5.x reads this config (it has `rope_parameters` only).
        var needsTransformers5 = false
        var spec: String { seqLen.map { "\(directory):\($0)" } ?? directory }
    }

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    static func longctx(_ arguments: [String]) throws -> String {
        let result = try TestSupport.longctx(arguments)
        guard result.status == 0 else {
            Issue.record("longctx \(arguments.joined(separator: " ")) failed (\(result.status)): \(result.stderr)")
            throw CommandFailed(description: "longctx \(arguments.joined(separator: " ")): \(result.stderr)")
        }
        return result.stdout
    }

    static func writeConfig(_ object: [String: Any], to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: directory + "/config.json"))
    }

    struct CommandFailed: Error, CustomStringConvertible { let description: String }

    static func bits(_ hex: String) -> UInt32 { UInt32(hex.dropFirst(2), radix: 16)! }

    @Test("rope apply outputs and real configs match transformers' rotary modules", .enabled(if: TestSupport.interopCanRun(["torch", "transformers"]), "needs Python torch, transformers (LONGCTX_INTEROP=1 makes their absence a failure)"))
    func matchesTransformers() throws {
        guard try TestSupport.interopEnabled(["torch", "transformers"]) else { return }
        #expect(FileManager.default.isExecutableFile(atPath: TestSupport.longctxPath),
                "longctx binary not found at \(TestSupport.longctxPath)")
        let root = TestSupport.scratchDirectory("rope-interop")
        defer { try? FileManager.default.removeItem(atPath: root) }

        // A tiny Llama with Llama-3 geometry (head_dim 128, θ 500000, 8K), and a Llama-3.1-style variant whose
        // config already carries llama3 scaling (so apply must replace it).
        _ = try Self.longctx(["init-model", "--out", root + "/base", "--hidden", "64", "--heads", "4",
                              "--kv-heads", "2", "--head-dim", "128", "--max-position", "8192",
                              "--rope-theta", "500000", "--layers", "1"])
        let baseConfig = try Self.json(String(contentsOfFile: root + "/base/config.json", encoding: .utf8))
        try FileManager.default.copyItem(atPath: root + "/base", toPath: root + "/llama31")
        var llama31 = baseConfig
        llama31["max_position_embeddings"] = 131072
        llama31["rope_scaling"] = ["rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192]
        try FileManager.default.removeItem(atPath: root + "/llama31/config.json")
        try Self.writeConfig(llama31, to: root + "/llama31")

        var cases: [Case] = []
        // (name, source, arguments, rope_type transformers must see, target)
        let applies: [(String, String, [String], String, Int)] = [
            ("yarn", "base", ["--target", "64K", "--method", "yarn"], "yarn", 65536),
            ("yarn-ultralong", "llama31", ["--target", "1M", "--method", "yarn", "--beta-fast", "4", "--beta-slow", "1"], "yarn", 1 << 20),
            ("yarn-v5-only", "llama31", ["--target", "256K", "--method", "yarn", "--format", "transformers5"], "yarn", 262144),
            ("linear", "base", ["--target", "32K", "--method", "linear"], "linear", 32768),
            ("ntk", "base", ["--target", "64K", "--method", "ntk"], "default", 65536),
            ("llama3", "base", ["--target", "128K", "--method", "llama3"], "llama3", 131072),
            ("llama3-v4-only", "base", ["--target", "128K", "--method", "llama3", "--low-freq-factor", "2",
                                        "--high-freq-factor", "8", "--format", "transformers4"], "llama3", 131072),
            ("theta", "base", ["--target", "1M", "--method", "theta"], "default", 1 << 20),
            ("theta-from-llama31", "llama31", ["--target", "4M", "--method", "theta"], "default", 1 << 22),
        ]
        for (name, source, arguments, type, target) in applies {
            let out = root + "/apply-" + name
            let applied = try Self.json(Self.longctx(["rope", "apply", root + "/" + source, "--out", out, "--json"] + arguments))
            #expect(applied["target_length"] as? Int == target)
            let planned = try #require(applied["inv_freq"] as? [Double]).map { "0x" + String(format: "%08x", Float($0).bitPattern) }
            cases.append(Case(name: "apply " + name, directory: out, seqLen: target, expectedType: type,
                              expectedMaxPosition: target, plannedInvFreqHex: planned,
                              needsTransformers5: arguments.contains("transformers5")))
        }

        // Real configs (rope.md §7) read by `rope show`, including the runtime-dependent types.
        let ones48 = (0..<48).map { 1 + Double($0) / 32 }, long48 = (0..<48).map { 1 + Double($0) }
        let shows: [(String, [String: Any], Int?)] = [
            ("llama-3.1", llama31Config, nil),
            ("qwen2.5 yarn", realConfig("qwen2.5 yarn"), 100_000),
            ("deepseek-v3", realConfig("deepseek-v3"), nil),
            ("gpt-oss", realConfig("gpt-oss"), nil),
            ("dynamic grown", ["model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32,
                               "max_position_embeddings": 4096, "rope_theta": 10000.0,
                               "rope_scaling": ["rope_type": "dynamic", "factor": 4.0]], 16384),
            ("phi3 longrope short", ["model_type": "phi3", "hidden_size": 3072, "num_attention_heads": 32,
                                     "max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
                                     "rope_theta": 10000.0,
                                     "rope_scaling": ["type": "longrope", "short_factor": ones48, "long_factor": long48]], 4096),
            ("phi3 longrope long", ["model_type": "phi3", "hidden_size": 3072, "num_attention_heads": 32,
                                    "max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
                                    "rope_theta": 10000.0,
                                    "rope_scaling": ["type": "longrope", "short_factor": ones48, "long_factor": long48]], 4097),
            ("partial rotary yarn (5.x dict)", ["model_type": "phi", "hidden_size": 2560, "num_attention_heads": 32,
                                                "max_position_embeddings": 8192,
                                                "rope_parameters": ["rope_type": "yarn", "rope_theta": 10000.0,
                                                                    "partial_rotary_factor": 0.4, "factor": 4.0,
                                                                    "original_max_position_embeddings": 2048]], nil),
        ]
        for (index, (name, config, seqLen)) in shows.enumerated() {
            let directory = root + "/show-\(index)"
            try Self.writeConfig(config, to: directory)
            cases.append(Case(name: "show " + name, directory: directory, seqLen: seqLen, expectedType: nil,
                              expectedMaxPosition: nil, plannedInvFreqHex: nil,
                              needsTransformers5: config["rope_parameters"] != nil))
        }

        // What transformers computes.
        let output = root + "/transformers.json"
        try TestSupport.runPython(String(contentsOfFile: Self.script, encoding: .utf8), [output] + cases.map(\.spec))
        let theirs = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output))) as? [String: Any])

        let version = theirs["__transformers_version__"] as? String ?? "?"
        let major = Int(version.prefix { $0.isNumber }) ?? 0
        var exact = 0, total = 0
        for item in cases where major >= 5 || !item.needsTransformers5 {
            let hf = try #require(theirs[item.spec] as? [String: Any], "\(item.name): no transformers result")
            var arguments = ["rope", "show", item.directory, "--json"]
            if let seqLen = item.seqLen { arguments += ["--seq-len", String(seqLen)] }
            let ours = try Self.json(Self.longctx(arguments))

            let ourHex = try #require(ours["inv_freq_f32_hex"] as? [String])
            let theirHex = try #require(hf["inv_freq_hex"] as? [String])
            #expect(ourHex.count == theirHex.count, "\(item.name): \(ourHex.count) vs \(theirHex.count) pairs")
            // torch's float32 pow (SLEEF) is not correctly rounded: an occasional 1-ULP pow error becomes up to
            // 2 ULP after the reciprocal (e.g. θ = 3580165449, pair 25). Anything systematic is far larger.
            var maxULP = 0, differing = 0
            for (a, b) in zip(ourHex, theirHex) {
                let distance = ulpDistance(Float(bitPattern: Self.bits(a)), Float(bitPattern: Self.bits(b)))
                maxULP = max(maxULP, distance)
                if distance > 0 { differing += 1 }
            }
            #expect(maxULP <= 2, "\(item.name): inv_freq differs by \(maxULP) ULP")
            #expect(differing <= 4, "\(item.name): \(differing) pairs differ")
            total += 1
            if maxULP == 0 { exact += 1 }

            let ourFactor = try #require(ours["attention_factor"] as? Double)
            let theirFactor = try #require(hf["attention_scaling"] as? Double)
            #expect(abs(ourFactor - theirFactor) <= 1e-15 * abs(theirFactor),
                    "\(item.name): attention factor \(ourFactor) vs \(theirFactor)")

            // cos/sin rows at the same positions, built by us from transformers' inv_freq (so that a 1-ULP pow
            // difference, amplified by position 10⁶, does not hide the check of layout and attention factor).
            let positions = try #require(hf["positions"] as? [Int])
            let shape = try #require(hf["cos_shape"] as? [Int])
            let frequencies = RopeFrequencies(
                ropeType: .default, rotaryDim: ourHex.count * 2,
                invFreq: theirHex.map { Float(bitPattern: Self.bits($0)) }, attentionFactor: ourFactor,
                effectiveTheta: 0)
            let table = frequencies.table(positions: positions, layout: RopePairLayout.halfSplit)
            let width = shape.last!
            let theirCos = try #require(hf["cos_hex"] as? [String]).map { Float(bitPattern: Self.bits($0)) }
            let theirSin = try #require(hf["sin_hex"] as? [String]).map { Float(bitPattern: Self.bits($0)) }
            var worst: Float = 0
            for (row, _) in positions.enumerated() {
                for column in 0..<width {
                    worst = max(worst, abs(table.cos[row * table.rotaryDim + column] - theirCos[row * width + column]))
                    worst = max(worst, abs(table.sin[row * table.rotaryDim + column] - theirSin[row * width + column]))
                }
            }
            print("interop \(item.name): inv_freq max ULP \(maxULP) (\(differing) pairs), cos/sin max |Δ| \(worst)")
            #expect(worst <= 2.5e-7 * Float(max(ourFactor, 1)), "\(item.name): cos/sin differ by \(worst)")

            if let type = item.expectedType {
                #expect(hf["loaded_model"] as? Bool == true, "\(item.name): transformers did not load the model")
                #expect(hf["rope_type"] as? String == type, "\(item.name): transformers sees \(hf["rope_type"] ?? "nil")")
                #expect(hf["max_position_embeddings"] as? Int == item.expectedMaxPosition)
                // Static types: the frequencies at init already are the planned ones.
                #expect(hf["initial_inv_freq_hex"] as? [String] == theirHex)
            }
            if let planned = item.plannedInvFreqHex {
                #expect(planned == ourHex, "\(item.name): apply's planned frequencies differ from show's reading")
            }
        }
        #expect(total == cases.filter { major >= 5 || !$0.needsTransformers5 }.count)
        print("rope interop: \(exact)/\(total) directories bit-exact with transformers \(version)")
    }
}
