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

    // The base's training (`--from-scratch`): one stage at `trainedLength`, answer-only loss on passkey prompts.
    public var baseSteps = 1500
    public var baseLearningRate = 2e-3
    public var baseWarmup = 100
    /// Packed tokens per step: 20 sequences of 256 ≈ 32 prompts of 60…256 tokens.
    public var baseTokensPerStep = 5120
    public var baseRecords = 20000

    // The progressive extension (act two c): θ plan per stage, `extensionSteps` steps each.
    public var extensionLengths = [512, 1024, 2048]
    public var extensionSteps = 40
    public var extensionLearningRate = 1e-3
    public var extensionTokensPerStep = 8192
    public var extensionRecords = 4000
    /// Ring-attention workers for the extension's stages (1: single process).
    public var ringWorkers = 1

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

    /// The stages file of the progressive extension: per stage the θ plan of `rope plan --method theta`.
    public func extensionStagesYAML(seed: UInt64) -> String {
        var text = Self.header(seed: seed) + "stages:\n"
        for length in extensionLengths {
            text += """
              - name: theta-\(formatLength(length))
                seq_len: \(length)
                plan: {method: theta}
                steps: \(extensionSteps)
                lr: \(extensionLearningRate)
                schedule: cosine
                warmup_steps: \(max(1, extensionSteps / 10))
                min_lr_ratio: 0.1
                tokens_per_step: \(extensionTokensPerStep)

            """
            if ringWorkers > 1 { text += "    ring: \(ringWorkers)\n" }
        }
        return text
    }

    /// Shared keys: AdamW as the recipe, no attention across packed samples, positions reset per sample,
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
