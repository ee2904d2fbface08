import Basics
import Foundation
import Testing
import TestSupport
@testable import ModelIO
@testable import TensorCore

@Suite("GGUF reader")
struct GGUFReaderTests {
    @Test func readsAValidFileBuiltByHand() throws {
        let d = TestSupport.scratchDirectory("gguf-valid")
        let p = d + "/v.gguf"
        try Data(GGUFBuilder.valid()).write(to: URL(fileURLWithPath: p))
        let g = try GGUFFile(path: p)
        #expect(g.version == 3)
        #expect(g.architecture == "llama")
        #expect(g["test.value"] == .uint32(7))
        #expect(g.alignment == 32)
        #expect(g.names == ["a", "b"])
        #expect(g.info("b")?.ne == [3, 2])
        #expect(g.info("b")?.shape == [2, 3])
        #expect(try g.dequantized("a").floats() == [0, 1, 2, 3])
        #expect(try g.dequantized("b").floats() == [10, 11, 12, 13, 14, 15])
        // version 2 has the same layout
        try Data(GGUFBuilder.valid(version: 2)).write(to: URL(fileURLWithPath: p))
        #expect(try GGUFFile(path: p).version == 2)
    }

    @Test func sha256MatchesHashlib() throws {
        guard TestSupport.pythonHas(["hashlib"]) else { return }
        var rng = SeededRandom(seed: 5)
        let d = TestSupport.scratchDirectory("sha")
        var ours = [String]()
        var paths = [String]()
        for (i, n) in [0, 1, 55, 56, 63, 64, 65, 1000, 100_003].enumerated() {
            let bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let p = "\(d)/f\(i)"
            try Data(bytes).write(to: URL(fileURLWithPath: p))
            ours.append(try SHA256.hex(ofFile: p))
            paths.append(p)
            // split updates give the same digest
            var s = SHA256()
            bytes.withUnsafeBytes { b in
                let cut = b.count / 3
                s.update(UnsafeRawBufferPointer(rebasing: b[0..<cut]))
                s.update(UnsafeRawBufferPointer(rebasing: b[cut...]))
            }
            #expect(s.finalizeHex() == ours.last!)
        }
        let out = try TestSupport.runPython("import hashlib, sys\nfor p in sys.argv[1:]: print(hashlib.sha256(open(p,'rb').read()).hexdigest())", paths)
        #expect(out.split(separator: "\n").map(String.init) == ours)
    }

    /// A GGUF written by gguf-py's `GGUFWriter` (every metadata type, random blocks of every supported
    /// tensor type) reads back with the same metadata and offsets, and every tensor dequantises to
    /// exactly the floats `gguf.quants.dequantize` gives (compared bit for bit).
    @Test(.enabled(if: TestSupport.interopCanRun(["gguf", "numpy"]), "needs Python gguf, numpy (LONGCTX_INTEROP=1 makes their absence a failure)")) func fileWrittenByGGUFWriterAndDequantisationMatchGGUFPy() throws {
        guard try TestSupport.interopEnabled(["gguf", "numpy"]) else { return }
        let d = TestSupport.scratchDirectory("gguf-py")
        try TestSupport.runPython(try String(contentsOfFile: TestSupport.repoRoot + "/Tests/Interop/gguf_interop.py", encoding: .utf8),
                                  ["fixture", d])
        let g = try GGUFFile(path: d + "/tiny.gguf")
        #expect(g.version == 3)
        #expect(g["test.u8"] == .uint8(200))
        #expect(g["test.i8"] == .int8(-100))
        #expect(g["test.u16"] == .uint16(60000))
        #expect(g["test.i16"] == .int16(-30000))
        #expect(g["test.u32"] == .uint32(4_000_000_000))
        #expect(g["test.i32"] == .int32(-2_000_000_000))
        #expect(g["test.f32"] == .float32(0.1))
        #expect(g["test.u64"] == .uint64(18_000_000_000_000_000_000))
        #expect(g["test.i64"] == .int64(-9_000_000_000_000_000_000))
        #expect(g["test.f64"] == .float64(0.1))
        #expect(g["test.bool"] == .bool(true))
        #expect(g["test.str"] == .string("héllo ✓"))
        #expect(g["test.arr_i32"] == .array(.int32, [.int32(1), .int32(-2), .int32(3)]))
        #expect(try g.strings("test.arr_str") == ["a", "bc", ""])
        #expect(g["test.arr_f32"] == .array(.float32, [.float32(0.5), .float32(-1.25)]))

        let expected = try #require(try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: d + "/expected.json"))).objectValue)
        #expect(g.dataOffset == expected["data_offset"]?.intValue)
        let infos = try #require(expected["tensors"]?.objectValue)
        var seen = Set<String>()
        for (name, e) in infos.entries {
            let info = try #require(g.info(name))
            #expect(info.type.description == e["type"]?.stringValue, "\(name) type")
            #expect(info.shape == e["shape"]?.arrayValue?.compactMap(\.intValue), "\(name) shape")
            let want = try Data(contentsOf: URL(fileURLWithPath: "\(d)/expected/\(name).f32"))
            let got = try g.dequantized(name)
            #expect(Data(got.rawBytes) == want, "\(name): dequantised bits differ from gguf.quants.dequantize")
            seen.insert(info.type.description)
        }
        #expect(Set(GGUFQuants.supported.map(\.description)).isSubset(of: seen))
    }

    @Test func unsupportedQuantisationIsAClearError() throws {
        var g = GGUFBuilder()
        g.bytes.append(contentsOf: Array("GGUF".utf8)); g.u32(3); g.u64(1); g.u64(0)
        g.tensorInfo("q", ne: [32], type: 7, offset: 0)  // Q5_1
        g.pad()
        g.bytes.append(contentsOf: [UInt8](repeating: 0, count: 24))
        let p = TestSupport.scratchDirectory("gguf-q5") + "/q.gguf"
        try g.write(p)
        let f = try GGUFFile(path: p)
        #expect(f.info("q")?.byteCount == 24)
        let e = #expect(throws: ModelIOError.self) { try f.dequantized("q") }
        #expect(e?.message.contains("tensor 'q': dequantisation of Q5_1 is not supported") == true, "\(String(describing: e))")
    }
}

/// Broken GGUF files: each must be rejected with a message naming the problem.
@Suite("GGUF malformed files")
struct MalformedGGUFTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let expect: String
        let bytes: [UInt8]
        var testDescription: String { name }
    }

    static let valid = GGUFBuilder.valid()

    static let cases: [Case] = [
        Case(name: "empty", expect: "too small", bytes: []),
        Case(name: "bad magic", expect: "bad magic", bytes: GGUFBuilder.valid(magic: Array("GGML".utf8))),
        Case(name: "safetensors given as GGUF", expect: "not a GGUF file", bytes: [8, 0, 0, 0, 0, 0, 0, 0] + Array("{}      ".utf8)),
        Case(name: "version 1", expect: "version 1 is not supported", bytes: GGUFBuilder.valid(version: 1)),
        Case(name: "version 4", expect: "unsupported GGUF version 4", bytes: GGUFBuilder.valid(version: 4)),
        Case(name: "big-endian", expect: "big-endian", bytes: GGUFBuilder.valid(version: UInt32(3).byteSwapped)),
        Case(name: "truncated in the header", expect: "truncated", bytes: Array(valid.prefix(20))),
        Case(name: "truncated in a key", expect: "truncated", bytes: Array(valid.prefix(40))),
        Case(name: "truncated in tensor infos", expect: "truncated", bytes: Array(valid.prefix(valid.count - 120))),
        Case(name: "truncated tensor data", expect: "run past the end of the file", bytes: GGUFBuilder.valid(truncateData: 4)),
        Case(name: "huge tensor count", expect: "tensor count 1000000000 cannot fit", bytes: GGUFBuilder.valid(tensorCount: 1_000_000_000)),
        Case(name: "huge metadata count", expect: "metadata count 1000000000 cannot fit", bytes: GGUFBuilder.valid(kvCount: 1_000_000_000)),
        Case(name: "metadata count one too many", expect: "n_dims 0 is outside 1...4", bytes: GGUFBuilder.valid(kvCount: 3)),
        Case(name: "tensor count one too many", expect: "n_dims 0 is outside 1...4", bytes: GGUFBuilder.valid(tensorCount: 3)),
        Case(name: "unknown metadata type", expect: "metadata 'x': unknown value type 13",
             bytes: GGUFBuilder.valid(extraKV: { $0.string("x"); $0.u32(13); $0.u32(0) }, extraCount: 1)),
        Case(name: "unknown array element type", expect: "unknown array element type 99",
             bytes: GGUFBuilder.valid(extraKV: { $0.string("x"); $0.u32(9); $0.u32(99); $0.u64(1) }, extraCount: 1)),
        Case(name: "array count past the end", expect: "array count 1000000000000 cannot fit",
             bytes: GGUFBuilder.valid(extraKV: { $0.string("x"); $0.u32(9); $0.u32(4); $0.u64(1_000_000_000_000) }, extraCount: 1)),
        Case(name: "string length past the end", expect: "string length 99999999999 at offset",
             bytes: GGUFBuilder.valid(extraKV: { $0.string("x"); $0.u32(8); $0.u64(99_999_999_999) }, extraCount: 1)),
        Case(name: "invalid UTF-8", expect: "not valid UTF-8",
             bytes: GGUFBuilder.valid(extraKV: { $0.string("x"); $0.u32(8); $0.u64(2); $0.u8(0xC3); $0.u8(0x28) }, extraCount: 1)),
        Case(name: "bool not 0 or 1", expect: "bool byte is 2",
             bytes: GGUFBuilder.valid(extraKV: { $0.string("x"); $0.u32(7); $0.u8(2) }, extraCount: 1)),
        Case(name: "duplicate key", expect: "duplicate metadata key 'test.value'",
             bytes: GGUFBuilder.valid(extraKV: { $0.kvU32("test.value", 1) }, extraCount: 1)),
        Case(name: "alignment not a power of two", expect: "general.alignment 24 is not a power of two",
             bytes: GGUFBuilder.valid(extraKV: { $0.kvU32("general.alignment", 24) }, extraCount: 1)),
        Case(name: "alignment of the wrong type", expect: "general.alignment must be uint32",
             bytes: GGUFBuilder.valid(extraKV: { $0.kvString("general.alignment", "32") }, extraCount: 1)),
        Case(name: "unknown tensor type", expect: "tensor 'a': unknown ggml type 77", bytes: GGUFBuilder.valid(aType: 77)),
        Case(name: "row not a whole number of blocks", expect: "ne[0] = 4 is not a multiple of the Q8_0 block size 32",
             bytes: GGUFBuilder.valid(aType: 8)),
        Case(name: "misaligned offset", expect: "offset 20 is not a multiple of the alignment 32", bytes: GGUFBuilder.valid(bOffset: 20)),
        Case(name: "overlapping tensors", expect: "overlaps tensor", bytes: GGUFBuilder.valid(bOffset: 0)),
        Case(name: "offset outside the file", expect: "run past the end of the file", bytes: GGUFBuilder.valid(bOffset: 1 << 20)),
        Case(name: "duplicate tensor name", expect: "duplicate tensor name 'a'", bytes: {
            var g = GGUFBuilder()
            g.bytes.append(contentsOf: Array("GGUF".utf8)); g.u32(3); g.u64(2); g.u64(0)
            g.tensorInfo("a", ne: [4], type: 0, offset: 0)
            g.tensorInfo("a", ne: [4], type: 0, offset: 32)
            g.pad(); g.bytes.append(contentsOf: [UInt8](repeating: 0, count: 48))
            return g.bytes
        }()),
        Case(name: "five dimensions", expect: "n_dims 5 is outside 1...4", bytes: {
            var g = GGUFBuilder()
            g.bytes.append(contentsOf: Array("GGUF".utf8)); g.u32(3); g.u64(1); g.u64(0)
            g.tensorInfo("a", ne: [1, 1, 1, 1, 1], type: 0, offset: 0)
            g.pad(); g.bytes.append(contentsOf: [UInt8](repeating: 0, count: 4))
            return g.bytes
        }()),
    ]

    @Test(arguments: cases)
    func rejected(_ c: Case) throws {
        let p = TestSupport.scratchDirectory("gguf-bad") + "/bad.gguf"
        try Data(c.bytes).write(to: URL(fileURLWithPath: p))
        let e = #expect(throws: ModelIOError.self) { _ = try GGUFFile(path: p) }
        #expect(e?.path == p)
        #expect(e?.message.contains(c.expect) == true, "\(c.name): got '\(e?.message ?? "no error")'")
    }

    @Test func validBaselineReads() throws {
        let p = TestSupport.scratchDirectory("gguf-ok") + "/ok.gguf"
        try Data(Self.valid).write(to: URL(fileURLWithPath: p))
        #expect(try GGUFFile(path: p).tensors.count == 2)
    }

    @Test func importCommandRejectsBadInputWithoutPartialOutput() throws {
        let d = TestSupport.scratchDirectory("gguf-cli")
        let bad = d + "/bad.gguf"
        try Data(GGUFBuilder.valid(magic: Array("GGML".utf8))).write(to: URL(fileURLWithPath: bad))
        var r = try TestSupport.longctx(["import", "gguf", bad, "--out", d + "/out"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("bad.gguf: bad magic"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: d + "/out"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: d).sorted() == ["bad.gguf"])

        // a valid GGUF of an architecture import does not handle
        var g = GGUFBuilder()
        g.bytes.append(contentsOf: Array("GGUF".utf8)); g.u32(3); g.u64(0); g.u64(1)
        g.kvString("general.architecture", "gpt2")
        let other = d + "/gpt2.gguf"
        try g.write(other)
        r = try TestSupport.longctx(["import", "gguf", other, "--out", d + "/out"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("general.architecture 'gpt2' is not supported"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: d + "/out"))

        // an existing --out is refused
        try FileManager.default.createDirectory(atPath: d + "/exists", withIntermediateDirectories: true)
        r = try TestSupport.longctx(["import", "gguf", other, "--out", d + "/exists"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("already exists"), "\(r.stderr)")

        r = try TestSupport.longctx(["import", "gguf", other, "--out", d + "/o2", "--dtype", "int8"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("--dtype must be bf16, f16 or f32"), "\(r.stderr)")
    }
}
