import Foundation
import Testing
import TestSupport
@testable import ModelIO

/// Issue 16: GGUF metadata is checked against the tensors present before anything is sized from it, and
/// `rope.freq_base` / the RMS epsilon must be usable numbers — a clear error, nothing written.
@Suite("hardening: GGUF metadata")
struct HardeningGGUFTests {
    /// A tiny llama GGUF: hidden 8, one layer's attn_norm and token_embd (vocab 10), with `blockCount` and `freqBase`.
    static func file(blockCount: UInt32, freqBase: Float) -> [UInt8] {
        var g = GGUFBuilder()
        g.bytes.append(contentsOf: Array("GGUF".utf8))
        g.u32(3)
        g.u64(2)   // tensors
        g.u64(9)   // metadata entries
        g.kvString("general.architecture", "llama")
        g.kvU32("llama.block_count", blockCount)
        g.kvU32("llama.embedding_length", 8)
        g.kvU32("llama.feed_forward_length", 16)
        g.kvU32("llama.attention.head_count", 2)
        g.kvU32("llama.context_length", 64)
        g.kvF32("llama.rope.freq_base", freqBase)
        g.kvF32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        g.kvU32("test.value", 1)
        g.tensorInfo("token_embd.weight", ne: [8, 10], type: 0, offset: 0)
        g.tensorInfo("blk.0.attn_norm.weight", ne: [8], type: 0, offset: 320)
        g.pad()
        for i in 0..<88 { g.f32(Float(i) * 0.01) }
        return g.bytes
    }

    static func importing(_ bytes: [UInt8]) throws -> (TestSupport.ProcessResult, String) {
        let dir = TestSupport.scratchDirectory("gguf-hard")
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/m.gguf"))
        let r = try TestSupport.longctx(["import", "gguf", dir + "/m.gguf", "--out", dir + "/out"])
        #expect(!FileManager.default.fileExists(atPath: dir + "/out"))
        return (r, dir)
    }

    @Test func hugeBlockCountIsRefusedAtOnce() throws {
        let start = Date()
        let (r, _) = try Self.importing(Self.file(blockCount: 0xFFFF_FFFF, freqBase: 10000))
        #expect(r.status == 1)
        #expect(r.stderr.contains("llama.block_count' is 4294967295 but the file has tensors for 1 layer(s)"), "\(r.stderr)")
        #expect(Date().timeIntervalSince(start) < 5)
    }

    @Test(arguments: [Float.nan, .infinity, 0, -1])
    func unusableRopeFreqBaseIsRefused(_ base: Float) throws {
        let (r, _) = try Self.importing(Self.file(blockCount: 1, freqBase: base))
        #expect(r.status == 1)
        #expect(r.stderr.contains("llama.rope.freq_base' must be a finite number > 1"), "\(r.stderr)")
    }
}
