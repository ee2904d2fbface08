import Foundation
import LoRA
import Testing
import TestSupport
@testable import ModelIO
@testable import TensorCore

/// Issue 16: non-finite numbers never become a silently NaN/Inf model — merge weights, lora_alpha and factor
/// values are checked, and extraction refuses a NaN/Inf weight naming the tensor instead of handing it to LAPACK.
@Suite("hardening: LoRA non-finite values", .serialized)
struct HardeningLoRATests {
    static func adapter() throws -> (root: String, base: String, tuned: String, adapter: String) {
        let root = TestSupport.scratchDirectory("lora-hard")
        let (base, tuned) = try Pair.make(root, layers: 1)
        var o = ExtractionOptions()
        o.policy.maxRank = 4
        try LoRAExtractor.extract(base: base, tuned: tuned, out: root + "/adapter", options: o)
        return (root, base, tuned, root + "/adapter")
    }

    @Test func mergeRefusesNonFiniteWeightsAndResults() throws {
        let (root, base, _, adapter) = try Self.adapter()
        for w in [Double.nan, .infinity, 1e39] {
            #expect { try LoRAMerger.merge(model: base, adapters: [adapter], weights: [w], out: root + "/m") } throws: { e in
                (e as? ModelIOError)?.message.contains("must be a finite number of magnitude at most 1e6") == true
            }
        }
        let r = try TestSupport.longctx(["lora", "merge", "--base", base, "--adapter", adapter, "--weight", "nan", "--out", root + "/m"])
        #expect(r.status != 0, "\(r.stderr)")
        // lora_alpha so large that α/r overflows f32: the first merged matrix is infinite; named, nothing written.
        let cfgPath = adapter + "/adapter_config.json"
        var cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: cfgPath))) as! [String: Any]
        cfg["lora_alpha"] = 1e300
        cfg["alpha_pattern"] = [String: Any]()
        try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: cfgPath))
        #expect { try LoRAMerger.merge(model: base, adapters: [adapter], out: root + "/m2") } throws: { e in
            let m = (e as? ModelIOError)?.message ?? ""
            return m.contains("NaN or infinite") && m.contains("module '")
        }
        #expect(!FileManager.default.fileExists(atPath: root + "/m2"))
    }

    @Test func extractRefusesAnInfiniteWeightNamingTheTensor() throws {
        let (root, base, tuned, _) = try Self.adapter()
        // Overwrite the first element of one tuned tensor with +Inf (f32 bits 0x7f800000), in place.
        let ck = try Checkpoint(directory: tuned)
        let name = try #require(ck.names.first { $0.hasSuffix("layers.0.self_attn.q_proj.weight") })
        let shard = tuned + "/" + ck.shardName(of: name)!
        let file = try SafetensorsFile(path: shard)
        let info = try #require(file.entries.first { $0.name == name })
        #expect(info.dtype == .f32)
        let offset = file.dataStart + info.dataOffsets.lowerBound
        let h = try #require(FileHandle(forWritingAtPath: shard))
        try h.seek(toOffset: UInt64(offset))
        try h.write(contentsOf: Data([0x00, 0x00, 0x80, 0x7f]))
        try h.close()
        #expect { try LoRAExtractor.extract(base: base, tuned: tuned, out: root + "/bad", options: ExtractionOptions()) } throws: { e in
            let m = "\(e)"
            return m.contains(name) && m.contains("NaN or infinite")
        }
        #expect(!FileManager.default.fileExists(atPath: root + "/bad"))
    }
}
