import ArgumentParser
import Foundation
import LoRA
import TensorCore

struct LoraExtract: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract",
        abstract: "Extract a PEFT LoRA adapter from a fine-tune and its base (Δ = tuned − base in f32, truncated SVD per module).",
        discussion: """
            Streams tensor pairs through the memory maps, one module at a time. Randomized SVD (q = r + oversampling, \
            power iterations with QR re-orthonormalisation, LAPACK on the small matrix) wherever it is cheaper than \
            LAPACK on the whole delta; --exact forces LAPACK everywhere (mergekit's choice). The adapter directory \
            appears only when complete.
            """)

    @Option(help: "Base model directory.") var base: String
    @Option(help: "Fine-tuned model directory (same architecture and shapes).") var tuned: String
    @Option(help: "Output adapter directory (must not exist).") var out: String
    @Option(help: "Largest rank per module.") var rank = 64
    @Option(name: .customLong("sv-epsilon"), help: "Drop singular values ≤ this (absolute; mergekit --sv-epsilon).") var svEpsilon: Float = 0
    @Option(name: .customLong("sv-relative"), help: "Drop singular values ≤ this fraction of σ₁.") var svRelative: Float = 0
    @Option(help: "Energy target per module: smallest rank keeping this fraction of ‖Δ‖².") var energy: Double?
    @Option(help: "Global LoRA parameter budget (e.g. 20M), allocated by marginal energy per parameter.") var budget: String?
    @Flag(help: "Exact LAPACK SVD for every module.") var exact = false
    @Option(help: "Randomized SVD oversampling (default: half the rank, at least 10).") var oversampling: Int?
    @Option(name: .customLong("power-iterations"), help: "Randomized SVD power iterations.") var powerIterations = 2
    @Option(help: "Random seed of the range finder.") var seed: UInt64 = 0
    @Option(help: "Where σ goes: sqrt (both factors), b (B = U·S) or a (A = S·Vt).") var split = "sqrt"
    @Option(name: .customLong("factor-dtype"), help: "Factor storage: checkpoint, f32, bf16 or f16.") var factorDType = "checkpoint"
    @Option(help: "Rank encoding: portable (rank_pattern only, compensation baked in) or mergekit (alpha_pattern).") var scaling = "portable"
    @Flag(name: .customLong("embed-lora"), help: "LoRA on embeddings and lm_head instead of saving them whole.") var embedLora = false
    @Option(name: .customLong("save-module"), help: "Module saved whole (leaf or full name; repeatable).") var saveModule: [String] = []
    @Option(name: [.customShort("i"), .customLong("include")], help: "Only modules matching this regex (repeatable).") var include: [String] = []
    @Option(name: [.customShort("e"), .customLong("exclude")], help: "Skip modules matching this regex (repeatable).") var exclude: [String] = []
    @Flag(help: "Write only what llama.cpp and vLLM load (LoRA pairs; no modules_to_save).") var serving = false
    @Flag(name: .customLong("skip-undecomposable"), help: "Drop norms and other non-Linear modules instead of saving them.") var skipUndecomposable = false
    @Flag(name: .customLong("delta-in-dtype"), help: "Round Δ to the checkpoint dtype first (mergekit's bf16 subtraction).") var deltaInDtype = false
    @Option(name: .customLong("base-name"), help: "base_model_name_or_path to record (default: --base).") var baseName: String?
    @Flag(help: "Print the report as JSON.") var json = false

    func run() async throws {
        var o = ExtractionOptions()
        o.policy.maxRank = rank
        o.policy.svEpsilon = svEpsilon
        o.policy.relativeThreshold = svRelative
        o.policy.energy = energy
        if let budget {
            guard let b = parseCount(budget) else { throw ValidationError("--budget '\(budget)' is not a count like 20M") }
            o.parameterBudget = b
        }
        o.exact = exact; o.oversampling = oversampling; o.powerIterations = powerIterations; o.seed = seed
        guard let s = FactorSplit(rawValue: split) else { throw ValidationError("--split must be sqrt, b or a") }
        o.split = s
        if factorDType != "checkpoint" {
            guard let d = DType(name: factorDType), [.f32, .bf16, .f16].contains(d) else { throw ValidationError("--factor-dtype must be checkpoint, f32, bf16 or f16") }
            o.factorDType = d
        }
        guard let sc = ScalingMode(rawValue: scaling) else { throw ValidationError("--scaling must be portable or mergekit") }
        o.scaling = sc
        o.embedLoRA = embedLora; o.saveModules = saveModule; o.include = include; o.exclude = exclude
        o.serving = serving; o.skipUndecomposable = skipUndecomposable; o.deltaInCheckpointDType = deltaInDtype; o.baseName = baseName
        let report = try LoRAExtractor.extract(base: base, tuned: tuned, out: out, options: o) { Output.progress($0) }
        Output.progressDone()
        if json { try Output.json(report); return }
        print(ModelCard.table(report), terminator: "")
        print(ModelCard.summary(report))
        for n in report.notes { print("note: \(n)") }
        print("wrote \(out) (\(report.adapterBytes) bytes) in \(String(format: "%.1f", report.seconds)) s")
    }
}
