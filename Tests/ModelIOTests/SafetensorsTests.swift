import Basics
import Foundation
import Testing
import TestSupport
@testable import ModelIO
@testable import TensorCore

@Suite("safetensors and checkpoints")
struct SafetensorsTests {
    @Test func writeThenReadIsExactForEveryDtype() throws {
        let dir = TestSupport.scratchDirectory("st")
        let path = dir + "/x.safetensors"
        let f = Tensor(shape: [2, 3], floats: [1, -2, 3.5, 1e-8, .infinity, -0.0])
        let tensors: [(String, Tensor)] = [
            ("a.f32", f), ("b.bf16", f.converted(to: .bf16)), ("c.f16", f.converted(to: .f16)),
            ("d.i64", Tensor(shape: [4], floats: [0, -1, 7, 123456], dtype: .i64)),
            ("e.empty", Tensor(zeros: [0, 5])), ("f.scalar", Tensor(shape: [], floats: [42])),
            ("g.u8", Tensor(shape: [3], floats: [0, 255, 9], dtype: .u8)),
        ]
        try SafetensorsWriter.write(tensors, metadata: ["format": "pt", "note": "ünïcode"], to: path)
        let size = try #require(FileOps.fileSize(path))
        let st = try SafetensorsFile(path: path)
        #expect(st.metadata == ["format": "pt", "note": "ünïcode"])
        #expect(st.names == tensors.map(\.0))
        for (name, t) in tensors {
            let r = try st.tensor(name)
            #expect(r.bitwiseEqual(t), "\(name)")
        }
        // Header padded to a multiple of 8 with spaces; data section exactly covered.
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let n = data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        #expect(n % 8 == 0)
        #expect(size == 8 + Int(n) + tensors.reduce(0) { $0 + $1.1.byteCount })
        // No temporary file left behind.
        #expect(try FileOps.listDirectory(dir) == ["x.safetensors"])
    }

    @Test func writerThatIsNotFinishedLeavesNoFile() throws {
        let dir = TestSupport.scratchDirectory("st")
        do {
            let w = try SafetensorsWriter(path: dir + "/y.safetensors", specs: [TensorSpec(name: "a", dtype: .f32, shape: [2])])
            #expect(throws: ModelIOError.self) { try w.finish() }
        }
        #expect(try FileOps.listDirectory(dir).isEmpty)
    }

    @Test func shardedCheckpointRoundTrip() throws {
        let dir = TestSupport.scratchDirectory("ck")
        let out = dir + "/model"
        var spec = RandomModelSpec()
        spec.dtype = .bf16
        spec.maxShardBytes = 40_000
        spec.seed = 3
        try spec.write(to: out)
        let ck = try Checkpoint(directory: out)
        #expect(ck.isSharded)
        #expect(ck.shardNames.count > 2)
        #expect(Set(ck.names) == Set(spec.tensorSpecs().map(\.name)))
        // Every shard is within the limit unless it holds a single tensor.
        for (shard, names) in ck.namesByShard {
            let bytes = names.reduce(0) { $0 + ck.info($1)!.byteCount }
            #expect(bytes <= 40_000 || names.count == 1, "\(shard)")
        }
        // Rewriting through CheckpointWriter as one file keeps every byte.
        let single = dir + "/single"
        try FileOps.makeDirectory(single)
        let w = try CheckpointWriter(directory: single, specs: ck.infos.map { TensorSpec(name: $0.name, dtype: $0.dtype, shape: $0.shape) })
        for n in ck.names { try w.append(name: n, tensor: try ck.tensor(n)) }
        try w.finish()
        let ck2 = try Checkpoint(directory: single)
        #expect(!ck2.isSharded)
        for n in ck.names { #expect(try ck2.tensor(n).bitwiseEqual(try ck.tensor(n))) }
    }

    @Test func configRoundTripChangesNothing() throws {
        let dir = TestSupport.scratchDirectory("cfg")
        let src = dir + "/src"
        var spec = RandomModelSpec()
        spec.seed = 1
        try spec.write(to: src)
        // Add fields LongContext does not know; a copy must keep them, in order, with their number text.
        var cfg = try ModelDirectory(path: src).configJSON
        cfg["some_future_field"] = .object(JSONObject([("x", .number("1.50")), ("y", .array([]))]))
        cfg["rope_scaling"] = .object(JSONObject([("rope_type", .string("yarn")), ("factor", .number("4.0"))]))
        try FileOps.writeAtomically(JSONValue.object(cfg).serialized() + "\n", to: src + "/config.json")
        try "{\"model_max_length\": 2048}".write(toFile: src + "/tokenizer_config.json", atomically: true, encoding: .utf8)
        let original = try String(contentsOfFile: src + "/config.json", encoding: .utf8)
        let md = try ModelDirectory(path: src)
        try md.writeCopy(to: dir + "/copy", config: md.configJSON)
        #expect(try String(contentsOfFile: dir + "/copy/config.json", encoding: .utf8) == original)
        #expect(FileOps.exists(dir + "/copy/tokenizer_config.json"))
        #expect(try Checkpoint(directory: dir + "/copy").tensor("model.norm.weight").bitwiseEqual(try md.weights().tensor("model.norm.weight")))
        // The destination must not exist: no silent overwrite.
        #expect(throws: ModelIOError.self) { try md.writeCopy(to: dir + "/copy", config: md.configJSON) }
        #expect(md.config.numKeyValueHeads == 2 && md.config.headDim == 16)
    }

    @Test func zstdRoundTrip() throws {
        var bytes = [UInt8](repeating: 0, count: 3_000_000)
        var r: UInt64 = 1
        for i in 0..<bytes.count { r = r &* 6364136223846793005 &+ 1; bytes[i] = UInt8(truncatingIfNeeded: (r >> 60)) }
        let data = Data(bytes)
        let c = try Zstd.compress(data)
        #expect(c.count < data.count)
        #expect(try Zstd.decompress(c) == data)
        #expect(throws: ModelIOError.self) { try Zstd.decompress(c.prefix(c.count / 2)) }
        #expect(throws: ModelIOError.self) { try Zstd.decompress(Data([1, 2, 3, 4, 5, 6, 7, 8])) }
    }
}
