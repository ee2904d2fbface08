import ArgumentParser
import Foundation
import LoRA

struct LoraCombine: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "combine",
        abstract: "Re-compress several LoRA adapters into one (cat, svd, ties, dare_linear, dare_ties).",
        discussion: """
            cat is exact (ranks add up); svd takes a truncated SVD of Σ wᵢ·sᵢ·Bᵢ·Aᵢ applied factor by factor, exact \
            at rank ≥ Σ rᵢ. ties/dare work on the dense deltas with PEFT's or mergekit's semantics (--semantics; \
            they differ when weights are not all 1), then compress by SVD.
            """)

    @Option(help: "Adapter directory (repeatable).") var adapter: [String]
    @Option(help: "Weight per adapter (default 1 each).") var weight: [Double] = []
    @Option(help: "Output adapter directory (must not exist).") var out: String
    @Option(help: "cat, svd, ties, dare_linear or dare_ties.") var method = "cat"
    @Option(help: "TIES/DARE semantics: peft or mergekit.") var semantics = "peft"
    @Option(help: "Rank of the result (svd: default Σ ranks; ties/dare: default the largest rank).") var rank: Int?
    @Option(help: "TIES/DARE density (fraction kept).") var density = 0.5
    @Flag(name: .customLong("sign-by-count"), help: "Elect signs by counting (PEFT 'frequency', mergekit 'count').") var signByCount = false
    @Option(help: "Seed (DARE masks, randomized SVD).") var seed: UInt64 = 0
    @Flag(help: "Exact LAPACK SVD.") var exact = false
    @Flag(help: "Print the report as JSON.") var json = false

    func run() async throws {
        var o = CombineOptions()
        guard let m = CombineMethod(rawValue: method) else { throw ValidationError("--method must be one of \(CombineMethod.allCases.map(\.rawValue).joined(separator: ", "))") }
        guard let s = MergeSemantics(rawValue: semantics) else { throw ValidationError("--semantics must be peft or mergekit") }
        guard weight.isEmpty || weight.count == adapter.count else { throw ValidationError("give one --weight per --adapter or none") }
        o.method = m; o.semantics = s; o.rank = rank; o.density = density; o.majoritySignByCount = signByCount
        o.seed = seed; o.exact = exact; o.weights = weight.isEmpty ? nil : weight
        let r = try LoRACombiner.combine(adapters: adapter, out: out, options: o) { Output.progress($0) }
        Output.progressDone()
        if json { try Output.json(r); return }
        let worst = r.modules.map(\.relativeError).max() ?? 0
        print("wrote \(out): \(r.method) (\(r.semantics == "exact" ? "exact re-compression" : "\(r.semantics) semantics")), \(r.modules.count) modules, max rank \(r.modules.map(\.rank).max() ?? 0), worst relative error \(String(format: "%.3g", worst))")
    }
}
