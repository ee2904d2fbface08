import Basics
import Foundation
import ModelIO
import RoPE
import Yams

/// The needle test run at the end of a stage (Llama 3's rule: move on only when the needle is found and the
/// short-context loss has held).
public struct StageCheck: Sendable, Equatable {
    public enum Task: String, Sendable, Codable, CaseIterable { case passkey, niah }
    public var task: Task
    /// Context lengths to test (default: the stage's `seq_len`).
    public var lengths: [Int]
    /// Samples per length (default 5).
    public var samples: Int
    /// Fraction of samples that must be answered correctly (default 1.0: "perfectly solves").
    public var minAccuracy: Double
    /// Largest allowed rise of the held-out short-context loss over the base model's, as a fraction of the base
    /// loss (0.02 = 2 %); `nil`: the short-context loss is not checked.
    public var maxLossIncrease: Double?
}

/// What a stage does to RoPE.
public enum StageRopeSpec: Sendable, Equatable {
    /// Keep the model's RoPE as it is (only `max_position_embeddings` grows to `seq_len`).
    case keep
    /// Explicit settings as in `config.json`: `rope_theta` (`theta`) and/or `rope_type` (`type`) with the
    /// `rope_scaling` parameters (`factor`, `original_max_position_embeddings`, `beta_fast`, …) in transformers'
    /// spelling. They replace the model's RoPE entirely (a scaling not written here is dropped).
    case explicit(type: RopeType?, theta: Double?, parameters: JSONObject)
    /// Ask the RoPE planner (`longctx rope plan`) for the stage's length, from the model's unscaled RoPE.
    case plan(method: RopePlanMethod, options: RopePlanOptions)
}

/// One stage of a progressive schedule. Build with ``TrainingStages``.
public struct StageSpec: Sendable, Equatable {
    /// Stage name (default `stage-K`, 1-based).
    public var name: String
    /// 0-based position in the file.
    public var index: Int
    /// Tokens per packed sequence.
    public var seqLen: Int
    public var rope: StageRopeSpec
    /// Optimizer steps of the stage (given, or `ceil(tokens / tokens_per_step)`).
    public var steps: Int
    /// The `tokens` budget when the stage was given one (then ``steps`` is derived from it).
    public var tokenBudget: Int?
    /// Peak learning rate.
    public var lr: Double
    public var schedule: ScheduleKind
    public var warmupSteps: Int
    /// Floor of cosine/linear decay as a fraction of `lr` (ProLong: 0.1).
    public var minLRRatio: Double
    /// Tokens per optimizer step (default `seq_len`); a multiple of `seq_len`, accumulated over
    /// ``sequencesPerStep`` sequences.
    public var tokensPerStep: Int
    public var check: StageCheck?
    /// Workers each sequence is sharded over (ring attention); `nil`: the run's (`--ring N`, or `mpirun -np N`).
    public var ring: Int? = nil
    /// How a sequence is dealt to the ring's workers (default zigzag, which balances causal work).
    public var layout: SequenceLayoutKind = .zigzag

    public var sequencesPerStep: Int { tokensPerStep / seqLen }
    public var totalTokens: Int { steps * tokensPerStep }
}

/// A parsed stages file (YAML): global optimizer and data options and the list of stages.
///
/// ```yaml
/// seed: 1                 # data order and any other randomness (default 0)
/// weight_decay: 0.1       # AdamW decoupled weight decay (default 0.1)
/// betas: [0.9, 0.95]      # AdamW betas (default [0.9, 0.95])
/// eps: 1e-8               # AdamW epsilon (default 1e-8)
/// grad_clip: 1.0          # global-norm clipping, 0 = off (default 1.0)
/// recompute: true         # per-layer activation recomputation (default false)
/// save_every: 100         # training-state checkpoint every N steps, 0 = stage ends only (default 100)
/// doc_mask: true          # no attention across documents (default true)
/// reset_positions: false  # positions restart at each document (default false)
/// sampling: {length_exponent: 0, short_threshold: 4096, short_weight: 0.1}   # LengthSampling (defaults shown)
/// stages:
///   - name: 16k
///     seq_len: 16K                      # 16384; K = 1024, M = 1024²
///     plan: {method: yarn}              # or rope: {theta: 1e6} / rope: {type: yarn, factor: 4, …}; neither = keep
///     steps: 200                        # or tokens: 100M
///     lr: 2e-5
///     schedule: cosine                  # cosine | linear | constant (default constant)
///     warmup_steps: 20                  # default 0
///     min_lr_ratio: 0.1                 # default 0
///     tokens_per_step: 1M               # default seq_len
///     check: {task: passkey, lengths: [16K], samples: 5, min_accuracy: 1.0, max_loss_increase: 0.02}
///     ring: 2                           # workers per sequence (ring attention); default: the run's --ring / mpirun -np
///     layout: zigzag                    # zigzag | contiguous (default zigzag)
/// ```
/// Every error names the file, the line, the stage and the key.
public struct TrainingStages: Sendable, Equatable {
    public var path: String
    public var seed: UInt64
    public var weightDecay: Double
    public var betas: (Double, Double)
    public var eps: Double
    public var gradClip: Double
    public var recompute: Bool
    public var saveEvery: Int
    public var documentMask: Bool
    public var resetPositions: Bool
    public var sampling: LengthSampling
    public var stages: [StageSpec]

    /// Packing options of every stage.
    public var packing: PackingOptions { PackingOptions(documentMask: documentMask, resetPositions: resetPositions) }

    public static func == (a: TrainingStages, b: TrainingStages) -> Bool {
        a.path == b.path && a.seed == b.seed && a.weightDecay == b.weightDecay && a.betas == b.betas && a.eps == b.eps
            && a.gradClip == b.gradClip && a.recompute == b.recompute && a.saveEvery == b.saveEvery
            && a.documentMask == b.documentMask && a.resetPositions == b.resetPositions && a.sampling == b.sampling
            && a.stages == b.stages
    }

    /// Reads and validates a stages file.
    public static func load(path: String) throws -> TrainingStages {
        let data: Data
        do { data = try FileOps.read(path) } catch { throw TrainingInputError(path, "cannot read: \(error)") }
        guard let text = String(data: data, encoding: .utf8) else { throw TrainingInputError(path, "not valid UTF-8") }
        return try TrainingStages(yaml: text, path: path)
    }

    /// Parses stages from YAML text; `path` is used in error messages.
    public init(yaml: String, path: String) throws {
        let root = try StagesYAML.compose(yaml, path: path)
        let reader = StagesYAML(path: path)
        let top = try reader.mapping(root, "top level", allowed: Self.topKeys)
        self.path = path
        seed = try top["seed"].map { try reader.unsigned($0, "seed") } ?? 0
        weightDecay = try top["weight_decay"].map { try reader.number($0, "weight_decay", min: 0) } ?? 0.1
        betas = try top["betas"].map { try reader.betas($0) } ?? (0.9, 0.95)
        eps = try top["eps"].map { try reader.number($0, "eps", min: 0, exclusive: true) } ?? 1e-8
        gradClip = try top["grad_clip"].map { try reader.number($0, "grad_clip", min: 0) } ?? 1.0
        recompute = try top["recompute"].map { try reader.bool($0, "recompute") } ?? false
        saveEvery = try top["save_every"].map { try reader.integer($0, "save_every", min: 0) } ?? 100
        documentMask = try top["doc_mask"].map { try reader.bool($0, "doc_mask") } ?? true
        resetPositions = try top["reset_positions"].map { try reader.bool($0, "reset_positions") } ?? false
        sampling = try top["sampling"].map { try reader.sampling($0) } ?? LengthSampling()
        guard let stageList = top["stages"] else { throw reader.error(root, "stages", "required key is missing") }
        let items = try reader.sequence(stageList, "stages")
        guard !items.isEmpty else { throw reader.error(stageList, "stages", "needs at least one stage") }
        stages = try items.enumerated().map { try reader.stage($0.element, index: $0.offset) }
        try Self.checkOrder(stages, reader: reader, nodes: items)
    }

    static let topKeys = ["seed", "weight_decay", "betas", "eps", "grad_clip", "recompute", "save_every", "doc_mask",
                          "reset_positions", "sampling", "stages"]

    static func checkOrder(_ stages: [StageSpec], reader: StagesYAML, nodes: [StagesYAMLNode]) throws {
        var names = Set<String>()
        for (index, stage) in stages.enumerated() {
            guard names.insert(stage.name).inserted else {
                throw reader.error(nodes[index], StagesYAML.stageLabel(index, stage.name) + ".name", "duplicate stage name")
            }
            if index > 0 && stage.seqLen <= stages[index - 1].seqLen {
                throw reader.error(nodes[index], StagesYAML.stageLabel(index, stage.name) + ".seq_len",
                                   "\(stage.seqLen) does not exceed the previous stage's \(stages[index - 1].seqLen); lengths must increase")
            }
        }
    }
}
