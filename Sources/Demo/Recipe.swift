import Basics
import Evaluation
import Foundation
import RoPE

/// The toy setting of act two: model shape, the base's training recipe, the progressive extension and the grids.
/// Every number the demo trains or evaluates with comes from here (and the seed), so two runs with the same recipe
/// and seed write the same `summary.json`.
public struct ToyRecipe: Sendable, Equatable {
    // Model.
    public var layers = 2
    public var hidden = 128
    public var heads = 4
    public var intermediate = 512
    public var ropeTheta = 10000.0
    /// The base's trained context length (`max_position_embeddings` of the base).
    public var trainedLength = 256
    /// Passkeys: distinct digits (a 2-layer model copies by the previous token; repeated digits confuse it).
    public var keys = Passkey.Keys.distinctDigits(5)
    /// The prompt layout of the base's corpus, the extension's corpus and every act-two grid. Measured: on the
    /// landmark prompt (the key line stated twice between copies of one fixed five-sentence filler) the base
    /// learns to pick digits at a fixed distance in layer 0, which holds only up to its 256 tokens, and no
    /// extension recipe rebuilt it (2K stayed ≤ 16 %); on the shuffled layout it learns to match the question
    /// against the key line in layer 1 (key-line attention ≈ 1), which training at longer lengths extends.
    public var layout = Passkey.Layout.shuffled

    // The base's training (`--from-scratch`): one stage at `trainedLength`, answer-only loss on passkey prompts.
    public var baseSteps = 1500
    public var baseLearningRate = 2e-3
    public var baseWarmup = 100
    /// Packed tokens per step: 20 sequences of 256 ≈ 32 prompts of 60…256 tokens.
    public var baseTokensPerStep = 5120
    public var baseRecords = 20000

    // The progressive extension (act two c): `extensionSteps[i]` steps in stage `i` (the last entry for the stages
    // past the list), each stage's RoPE from `extensionRope`.
    public var extensionLengths = [512, 1024, 2048]
    /// Measured on the shipped base (θ plan, 50 prompts a length at 256 / 512 / 1K / 2K): 40 / 40 / 80 steps
    /// give 96 / 96 / 92 / 96 %, 40 / 40 / 120 give 100 / 100 / 100 / 98 %; with the base's own RoPE, 30 / 30 / 100
    /// give 100 / 100 / 100 / 90 %.
    public var extensionSteps = [40, 40, 120]
    /// AdamW's peak; measured: 1e-4 and 2e-4 leave the loss where the base had it after 40 steps, 2e-3 learns.
    public var extensionLearningRate = 2e-3
    public var extensionWarmup = 8
    /// Packed tokens per step of each stage (16 sequences at 512 and 1K, 8 at 2K; ≈ 16–30 prompts a step).
    public var extensionTokensPerStep = [8192, 16384, 16384]
    public var extensionRecords = 4000
    /// The RoPE of every extension stage: the θ schedule of `rope plan --method theta` for each stage's length
    /// (θ 55959 / 313145 / 1752339 for 512 / 1K / 2K), as Gradient's and Llama 3's long-context recipes raise θ.
    public var extensionRope = StageRopeChoice.theta
    /// Ring-attention workers each sequence of the extension's stages is split over (1: single process).
    public var ringWorkers = 2

    // LoRA extraction of extended − base (act two e).
    public var loraRank = 64

    // Grids.
    public var gridDepths = 5
    public var gridPerDepth = 4

    public init() {}

    /// The final context length: the last extension stage (8× the trained length).
    public var finalLength: Int { extensionLengths.last ?? trainedLength }
    /// The grid's lengths: the trained length doubled up to the final length.
    public var gridLengths: [Int] {
        var lengths = [trainedLength]
        while lengths[lengths.count - 1] < finalLength { lengths.append(lengths[lengths.count - 1] * 2) }
        return lengths
    }

    /// Steps of extension stage `i`.
    public func steps(stage i: Int) -> Int { extensionSteps.isEmpty ? 0 : extensionSteps[min(i, extensionSteps.count - 1)] }

    /// The stages file of the base's training.
    public func baseStagesYAML(seed: UInt64) -> String {
        Self.header(seed: seed) + """
        stages:
          - name: base-\(trainedLength)
            seq_len: \(trainedLength)
            steps: \(baseSteps)
            lr: \(baseLearningRate)
            schedule: cosine
            warmup_steps: \(min(baseWarmup, max(1, baseSteps / 10)))
            min_lr_ratio: 0.1
            tokens_per_step: \(baseTokensPerStep)

        """
    }

    /// The stages file of the progressive extension: per stage `extensionRope` (the model's RoPE, or the plan of
    /// `rope plan --method M` for the stage's length).
    public func extensionStagesYAML(seed: UInt64) -> String {
        var text = Self.header(seed: seed) + "stages:\n"
        for (i, length) in extensionLengths.enumerated() {
            text += """
              - name: \(extensionRope.rawValue)-\(formatLength(length))
                seq_len: \(length)\(extensionRope.planMethod.map { "\n    plan: {method: \($0)}" } ?? "")
                steps: \(steps(stage: i))
                lr: \(extensionLearningRate)
                schedule: cosine
                warmup_steps: \(min(extensionWarmup, steps(stage: i)))
                min_lr_ratio: 0.1
                tokens_per_step: \(extensionTokensPerStep[min(i, extensionTokensPerStep.count - 1)])

            """
            if ringWorkers > 1 { text += "    ring: \(ringWorkers)\n" }
        }
        return text
    }

    /// Shared keys: AdamW as the issue's recipe, no attention across packed samples, positions reset per sample,
    /// uniform document sampling.
    static func header(seed: UInt64) -> String {
        """
        # Written by `longctx demo` (Sources/Demo/Recipe.swift).
        seed: \(seed)
        weight_decay: 0.1
        betas: [0.9, 0.95]
        eps: 1e-8
        grad_clip: 1.0
        recompute: false
        save_every: 0
        doc_mask: true
        reset_positions: true
        sampling: {length_exponent: 0, short_threshold: 1, short_weight: 1}

        """
    }
}

/// The RoPE of the demo's extension stages. Measured on the shipped base (shuffled layout; 20 prompts a length at
/// 256 / 512 / 1K / 2K after 40 steps a stage): the θ plan 75 / 80 / 85 / 85 %, YaRN 95 / 65 / 100 / 85 %, the
/// base's own RoPE 85 / 85 / 75 / 55 % (it needs 120 steps at 2K for 95 %). The landmark-layout base of earlier
/// sessions broke under any change of its frequencies (first-step loss ≈ 8 under the θ plan); this one does not.
public enum StageRopeChoice: String, Sendable, Equatable, CaseIterable {
    /// The model's own RoPE (`max_position_embeddings` raised to the stage's length).
    case keep
    /// `rope plan --method theta` for the stage's length.
    case theta
    /// `rope plan --method yarn` for the stage's length.
    case yarn
    /// `rope plan --method linear` (position interpolation) for the stage's length.
    case linear

    /// The `plan: {method: …}` of the stage, `nil` for `keep`.
    public var planMethod: String? { self == .keep ? nil : rawValue }
}
