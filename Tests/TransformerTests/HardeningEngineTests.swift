import Foundation
import ModelIO
import Testing
import TestSupport
@testable import Transformer

/// Issue 16, class 1: a huge max-tokens never sizes a cache from the request — `generate` refuses it naming the
/// option and the context, and the engine itself caps generation at the model's context and checks memory first.
@Suite("hardening: generation sizes", .serialized)
struct HardeningEngineTests {
    static let model: String = {
        let dir = TestSupport.scratchDirectory("gen-hard") + "/m"
        _ = try? TestSupport.longctx(["init-model", "--out", dir, "--max-position", "256", "--layers", "1"])
        return dir
    }()

    @Test(arguments: ["1000000000", "9223372036854775807"])
    func cliRefusesMaxTokensBeyondTheContext(_ n: String) throws {
        let r = try TestSupport.longctx(["generate", Self.model, "--prompt", "hello", "--max-tokens", n])
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("--max-tokens \(n)") && r.stderr.contains("context of 256"), "\(r.stderr)")
    }

    @Test func engineCapsAtTheContextAndChecksMemory() throws {
        let m = try TransformerModel(directory: Self.model)
        #expect(m.generationBudget(Int.max) == 256)
        #expect(m.generationBudget(10) == 10)
        #expect(throws: EngineError.self) { _ = try m.checkedCacheCapacity(Int.max / 2) }
        #expect(try m.checkedCacheCapacity(512) == 512)
        // Straight through the engine with an absurd request: bounded, no trap.
        let out = try m.generate(promptIds: [1, 2, 3], parameters: GenerationParameters(maxTokens: Int.max), stopTokenIds: [])
        #expect(out.generatedIds.count <= 256)
        #expect(throws: EngineError.self) {
            _ = try m.generate(promptIds: [1], parameters: GenerationParameters(maxTokens: -1), stopTokenIds: [])
        }
    }

    @Test func initModelRefusesModelsInspectWouldReject() throws {
        let root = TestSupport.scratchDirectory("init-hard")
        for (args, needle) in [(["--layers", "0"], "--layers"), (["--rope-theta", "-1"], "--rope-theta"),
                               (["--max-position", "0"], "--max-position"), (["--heads", "3"], "--heads")] {
            let r = try TestSupport.longctx(["init-model", "--out", root + "/m"] + args)
            #expect(r.status != 0 && r.stderr.contains(needle), "\(args): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: root + "/m"))
        }
    }
}
