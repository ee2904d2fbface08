import Foundation
import Testing
import TestSupport
@testable import ModelIO
@testable import TensorCore

/// A catalogue of broken model directories. Each must make `longctx inspect` exit non-zero with a
/// one-line error that names the offending file and the problem, and must not crash.
@Suite("malformed inputs")
struct MalformedInputTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        /// The file the error must name (relative to the model directory).
        let file: String
        /// Words the message must contain.
        let expect: [String]
        let build: @Sendable (String) throws -> Void
        var testDescription: String { name }
    }

    // MARK: builders

    /// A valid single-tensor header + data, as bytes, with `header` replaced when given.
    static func safetensors(header: String, data: Int, lengthOverride: UInt64? = nil) -> Data {
        var h = Array(header.utf8)
        while (8 + h.count) % 8 != 0 { h.append(0x20) }
        var out = Data()
        var n = (lengthOverride ?? UInt64(h.count)).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(contentsOf: h)
        out.append(Data(count: data))
        return out
    }

    static let goodConfig = """
    {"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":8,"intermediate_size":16,
     "num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"vocab_size":10,"max_position_embeddings":64}
    """

    static func dir(config: String = goodConfig, files: [String: Data]) -> @Sendable (String) throws -> Void {
        { d in
            try config.write(toFile: d + "/config.json", atomically: true, encoding: .utf8)
            for (n, data) in files {
                let p = d + "/" + n
                try FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try data.write(to: URL(fileURLWithPath: p))
            }
        }
    }

    static func st(_ header: String, data: Int, lengthOverride: UInt64? = nil) -> @Sendable (String) throws -> Void {
        dir(files: ["model.safetensors": safetensors(header: header, data: data, lengthOverride: lengthOverride)])
    }

    static let tensorA = #""a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#
    static let validShard = safetensors(header: "{\(tensorA)}", data: 8)
    static func index(_ json: String) -> Data { Data(json.utf8) }

    static let cases: [Case] = [
        Case(name: "empty file", file: "model.safetensors", expect: ["too small"], build: dir(files: ["model.safetensors": Data()])),
        Case(name: "header length past end of file", file: "model.safetensors", expect: ["truncated"],
             build: st("{\(tensorA)}", data: 8, lengthOverride: 4096)),
        Case(name: "header too long", file: "model.safetensors", expect: ["exceeds", "limit"],
             build: st("{\(tensorA)}", data: 8, lengthOverride: 200_000_000)),
        Case(name: "header length below 2", file: "model.safetensors", expect: ["too small"],
             build: st("{}", data: 0, lengthOverride: 0)),
        Case(name: "header not JSON", file: "model.safetensors", expect: ["not valid JSON"], build: st("{nope}", data: 0)),
        Case(name: "header not an object", file: "model.safetensors", expect: ["does not start with '{'"], build: st("[1, 2]", data: 0)),
        Case(name: "unknown dtype", file: "model.safetensors", expect: ["unknown dtype", "F7"],
             build: st(#"{"a":{"dtype":"F7","shape":[2],"data_offsets":[0,8]}}"#, data: 8)),
        Case(name: "dtype/shape mismatch", file: "model.safetensors", expect: ["'a'", "needs 12 bytes"],
             build: st(#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: 8)),
        Case(name: "overlapping offsets", file: "model.safetensors", expect: ["overlaps"],
             build: st(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data: 12)),
        Case(name: "gap between tensors", file: "model.safetensors", expect: ["gap"],
             build: st(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}"#, data: 16)),
        Case(name: "offsets past the data (truncated data)", file: "model.safetensors", expect: ["out of range"],
             build: st(#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: 8)),
        Case(name: "end before begin", file: "model.safetensors", expect: ["end before"],
             build: st(#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, data: 8)),
        Case(name: "trailing bytes", file: "model.safetensors", expect: ["trailing"], build: st("{\(tensorA)}", data: 24)),
        Case(name: "metadata value not a string", file: "model.safetensors", expect: ["__metadata__", "not a string"],
             build: st(#"{"__metadata__":{"format":1},"# + tensorA + "}", data: 8)),
        Case(name: "negative dimension", file: "model.safetensors", expect: ["non-negative"],
             build: st(#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: 8)),
        Case(name: "missing data_offsets", file: "model.safetensors", expect: ["data_offsets"],
             build: st(#"{"a":{"dtype":"F32","shape":[2]}}"#, data: 8)),
        Case(name: "duplicate tensor name", file: "model.safetensors", expect: ["duplicate key"],
             build: st("{\(tensorA),\(tensorA)}", data: 8)),
        Case(name: "index: path traversal", file: "model.safetensors.index.json", expect: ["leaves the model directory"],
             build: dir(files: ["model.safetensors.index.json": index(#"{"weight_map":{"a":"../outside.safetensors"}}"#)])),
        Case(name: "index: absolute shard path", file: "model.safetensors.index.json", expect: ["absolute path"],
             build: dir(files: ["model.safetensors.index.json": index(#"{"weight_map":{"a":"/etc/passwd"}}"#)])),
        Case(name: "index: missing shard", file: "model.safetensors.index.json", expect: ["model-00002-of-00002.safetensors", "missing"],
             build: dir(files: ["model.safetensors.index.json": index(#"{"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#),
                                "model-00001-of-00002.safetensors": validShard])),
        Case(name: "index: tensor not in its shard", file: "model-00001-of-00001.safetensors", expect: ["'zzz'", "not in it"],
             build: dir(files: ["model.safetensors.index.json": index(#"{"weight_map":{"a":"model-00001-of-00001.safetensors","zzz":"model-00001-of-00001.safetensors"}}"#),
                                "model-00001-of-00001.safetensors": validShard])),
        Case(name: "index: not JSON", file: "model.safetensors.index.json", expect: ["not valid JSON"],
             build: dir(files: ["model.safetensors.index.json": index("{\"weight_map\": ")])),
        Case(name: "index: no weight_map", file: "model.safetensors.index.json", expect: ["weight_map"],
             build: dir(files: ["model.safetensors.index.json": index(#"{"metadata":{}}"#)])),
        Case(name: "config: not JSON", file: "config.json", expect: ["not valid JSON"],
             build: dir(config: "{\"hidden_size\": 8,,}", files: ["model.safetensors": validShard])),
        Case(name: "config: wrong field type", file: "config.json", expect: ["'hidden_size'", "integer"],
             build: dir(config: #"{"model_type":"llama","hidden_size":"big"}"#, files: ["model.safetensors": validShard])),
        Case(name: "config: missing field", file: "config.json", expect: ["missing 'num_attention_heads'"],
             build: dir(config: #"{"model_type":"llama","hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"vocab_size":10}"#,
                        files: ["model.safetensors": validShard])),
        Case(name: "config: heads not a multiple of kv heads", file: "config.json", expect: ["not a multiple of num_key_value_heads"],
             build: dir(config: goodConfig.replacingOccurrences(of: "\"num_key_value_heads\":1", with: "\"num_key_value_heads\":3"),
                        files: ["model.safetensors": validShard])),
        Case(name: "config: missing", file: "config.json", expect: ["missing"], build: { _ in }),
        Case(name: "pickle weights only", file: "", expect: ["pickle", "safe_serialization"],
             build: dir(files: ["pytorch_model.bin": Data([0x80, 0x02, 0x7D])])),
    ]

    @Test(arguments: cases)
    func cliReportsOneLineErrorNamingFileAndProblem(_ c: Case) throws {
        let d = TestSupport.scratchDirectory("bad")
        try c.build(d)
        let r = try TestSupport.longctx(["inspect", d])
        #expect(r.status == 1, "exit status \(r.status) for \(c.name); stderr: \(r.stderr)")
        #expect(r.stdout.isEmpty)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1, "expected one line, got: \(r.stderr)")
        let line = String(lines.first ?? "")
        #expect(line.contains(c.file.isEmpty ? d : d + "/" + c.file), "file not named: \(line)")
        for w in c.expect { #expect(line.contains(w), "'\(w)' missing from: \(line)") }
    }

    @Test func symlinkedShardOutsideTheDirectoryIsRefused() throws {
        let d = TestSupport.scratchDirectory("bad")
        let outside = TestSupport.scratchDirectory("outside")
        try MalformedInputTests.validShard.write(to: URL(fileURLWithPath: outside + "/s.safetensors"))
        try FileManager.default.createSymbolicLink(atPath: d + "/model-00001-of-00001.safetensors", withDestinationPath: outside + "/s.safetensors")
        try MalformedInputTests.dir(files: ["model.safetensors.index.json":
            MalformedInputTests.index(#"{"weight_map":{"a":"model-00001-of-00001.safetensors"}}"#)])(d)
        #expect(throws: ModelIOError.self) { try Checkpoint(directory: d) }
        let r = try TestSupport.longctx(["inspect", d])
        #expect(r.status == 1 && r.stderr.contains("outside the model directory"))
    }
}
