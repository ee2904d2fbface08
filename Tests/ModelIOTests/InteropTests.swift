import Basics
import Foundation
import Testing
import TestSupport
@testable import ModelIO
@testable import TensorCore

/// Checks against the Python reference stack (`safetensors`, `torch`, `transformers`).
/// Runs when they import; with `LONGCTX_INTEROP=1` (CI) a missing module is a failure.
@Suite("interop: safetensors and torch", .serialized)
struct SafetensorsInteropTests {
    static let script = TestSupport.repoRoot + "/Tests/Interop/safetensors_interop.py"

    static let torchDtype: [String: DType] = ["float32": .f32, "float16": .f16, "bfloat16": .bf16, "int64": .i64]

    @Test(.enabled(if: TestSupport.interopCanRun(["torch", "safetensors", "numpy"]), "needs Python torch, safetensors, numpy (LONGCTX_INTEROP=1 makes their absence a failure)")) func filesWrittenByPythonReadBackExactly() throws {
        guard try TestSupport.interopEnabled(["torch", "safetensors", "numpy"]) else { return }
        let d = TestSupport.scratchDirectory("py-st")
        try TestSupport.runPython(try String(contentsOfFile: Self.script, encoding: .utf8), ["write", d])
        let manifest = try #require(try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: d + "/manifest.json"))).objectValue)

        let single = try SafetensorsFile(path: d + "/single.safetensors")
        #expect(single.metadata == ["format": "pt", "producer": "python"])
        let sharded = try Checkpoint(directory: d + "/sharded")
        #expect(sharded.isSharded && sharded.shardNames.count == 4)
        var checked = 0
        for (group, reader) in [("single", { (n: String) in try single.tensor(n) }), ("sharded", { (n: String) in try sharded.tensor(n) })] {
            let entries = try #require(manifest[group]?.objectValue)
            for (name, e) in entries.entries {
                let t = try reader(name)
                let raw = try Data(contentsOf: URL(fileURLWithPath: "\(d)/raw/\(group)-\(name).bin"))
                #expect(t.dtype == Self.torchDtype[e["dtype"]?.stringValue ?? ""], "\(group) \(name) dtype")
                #expect(t.shape == (e["shape"]?.arrayValue ?? []).compactMap(\.intValue), "\(group) \(name) shape")
                #expect(Data(t.rawBytes) == raw, "\(group) \(name) bytes")
                checked += 1
            }
        }
        #expect(checked == 12)
    }

    @Test(.enabled(if: TestSupport.interopCanRun(["torch", "safetensors", "numpy", "transformers"]), "needs Python torch, safetensors, numpy, transformers (LONGCTX_INTEROP=1 makes their absence a failure)")) func filesWeWriteLoadInSafetensorsTorchAndTransformers() throws {
        guard try TestSupport.interopEnabled(["torch", "safetensors", "numpy", "transformers"]) else { return }
        let d = TestSupport.scratchDirectory("sw-st")
        var rng = SeededRandom(seed: 9)
        var values = (0..<(33 * 17)).map { _ in rng.normal() * 5 }
        values[0] = .infinity; values[1] = -0.0; values[2] = Float(bitPattern: 0x0000_5000); values[3] = Float(bitPattern: 0x3F80_8000)
        let x = Tensor(shape: [33, 17], floats: values)
        let ids = Tensor(shape: [6], floats: [0, -1, 2, 1_048_576, -7, 99] as [Float], dtype: .i64)

        var files = JSONObject(), metadata = JSONObject()
        func entry(_ t: Tensor, raw: String, fromF32: String? = nil) throws -> JSONValue {
            try Data(t.rawBytes).write(to: URL(fileURLWithPath: d + "/" + raw))
            var o = JSONObject([("dtype", .string(t.dtype.rawValue)), ("shape", .array(t.shape.map { .int($0) })), ("raw", .string(raw))])
            if let f = fromF32 { o["from_f32"] = .string(f) }
            return .object(o)
        }
        // One file, every dtype, with metadata.
        let one: [(String, Tensor)] = [("x", x), ("x_bf16", x.converted(to: .bf16)), ("x_f16", x.converted(to: .f16)),
                                       ("ids", ids), ("none", Tensor(zeros: [0, 3]))]
        try SafetensorsWriter.write(one, metadata: ["format": "pt", "written_by": "longctx"], to: d + "/ours.safetensors")
        files["ours.safetensors"] = .object(JSONObject(try one.map { n, t in
            (n, try entry(t, raw: "raw-\(n).bin", fromF32: t.dtype == .bf16 || t.dtype == .f16 ? "x" : nil)) }))
        metadata["ours.safetensors"] = .object(JSONObject([("format", .string("pt")), ("written_by", .string("longctx"))]))
        // A sharded checkpoint (3 shards) through CheckpointWriter.
        try FileOps.makeDirectory(d + "/sharded")
        let parts: [(String, Tensor)] = [("a", x), ("b", x.converted(to: .bf16)), ("c", ids)]
        let w = try CheckpointWriter(directory: d + "/sharded", specs: parts.map { TensorSpec(name: $0.0, dtype: $0.1.dtype, shape: $0.1.shape) },
                                     maxShardBytes: 1150)
        for (n, t) in parts { try w.append(name: n, tensor: t) }
        try w.finish()
        #expect(w.shardCount == 3)
        let ck = try Checkpoint(directory: d + "/sharded")
        for (shard, names) in ck.namesByShard {
            files["sharded/" + shard] = .object(JSONObject(try names.map { n in (n, try entry(try ck.tensor(n), raw: "raw-sharded-\(n).bin")) }))
            metadata["sharded/" + shard] = .object(JSONObject([("format", .string("pt"))]))
        }
        // A random model, sharded bf16, for transformers.
        let r = try TestSupport.longctx(["init-model", "--layers", "2", "--dtype", "bf16", "--max-shard-size", "60KB", "--seed", "5", "--out", d + "/model"])
        #expect(r.status == 0, "\(r.stderr)")
        let man = JSONValue.object(JSONObject([("files", .object(files)), ("metadata", .object(metadata))]))
        try man.serialized().write(toFile: d + "/manifest.json", atomically: true, encoding: .utf8)
        let out = try TestSupport.runPython(try String(contentsOfFile: Self.script, encoding: .utf8), ["check", d])
        #expect(out.contains("checked"), "\(out)")
    }

    @Test(.enabled(if: TestSupport.interopCanRun(["torch", "safetensors", "numpy"]), "needs Python torch, safetensors, numpy (LONGCTX_INTEROP=1 makes their absence a failure)")) func bf16RoundingMatchesTorchOnAMillionValues() throws {
        guard try TestSupport.interopEnabled(["torch", "safetensors", "numpy"]) else { return }
        let d = TestSupport.scratchDirectory("bf16")
        try TestSupport.runPython(try String(contentsOfFile: Self.script, encoding: .utf8), ["bf16", d])
        let f = try SafetensorsFile(path: d + "/bf16.safetensors")
        let x = try f.tensor("x"), y = try f.tensor("y")
        #expect(x.count == 1_000_000 && y.dtype == .bf16)
        let ours = x.converted(to: .bf16)
        var mismatches = 0, nans = 0
        let a = ours.rawPointer.assumingMemoryBound(to: UInt16.self)
        for i in 0..<x.count {
            let want = y.rawPointer.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)
            if a[i] != want { mismatches += 1 }
            if Convert.bf16ToFloat(want).isNaN { nans += 1 }
        }
        #expect(mismatches == 0, "\(mismatches) of 1000000 differ from torch")
        #expect(nans > 1000)  // the sample really contains NaNs
    }
}
