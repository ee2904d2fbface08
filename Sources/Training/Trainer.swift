import Basics
import Foundation
import ModelIO
import RoPE
import TensorCore
import Tokenizers
import Transformer

/// What `longctx train` was asked to do.
public struct TrainRequest: Sendable {
    public var model: String
    public var data: [DomainSpec]
    public var stagesPath: String
    public var out: String
    public var resume: Bool
    /// Parallel workers (results are bit-identical for a fixed count, which a resumed run must keep).
    public var workers: Int
    /// LoRA mode (LongLoRA-style) instead of full fine-tuning; `nil`: every weight is trained.
    public var lora: LoRATrainingConfig?
    /// In LoRA mode, also write each stage's merged model (`W₀ + s·B·A`) beside its adapter.
    public var loraMerge: Bool
    /// Held-out data for the stages' short-context loss check (`max_loss_increase`).
    public var heldOut: [DomainSpec]

    public init(model: String, data: [DomainSpec], stagesPath: String, out: String, resume: Bool = false,
                workers: Int = max(1, ProcessInfo.processInfo.activeProcessorCount),
                lora: LoRATrainingConfig? = nil, loraMerge: Bool = false, heldOut: [DomainSpec] = []) {
        self.model = model; self.data = data; self.stagesPath = stagesPath; self.out = out
        self.resume = resume; self.workers = workers; self.lora = lora; self.loraMerge = loraMerge
        self.heldOut = heldOut
    }
}

/// Runs a stage's retrieval check (passkey or NIAH at the given lengths) on the model directory just written for
/// the stage, returning the accuracy per length. Supplied by the caller (the CLI runs it on the built-in engine
/// through the evaluation library), so that training does not depend on a backend.
public typealias StageRetrievalCheck = (_ check: StageCheck, _ modelDirectory: String) throws -> [StageCheckResult.LengthResult]

/// What the workers other than rank 0 of a ``TrainingGroup`` throw when rank 0's stage check failed (rank 0 throws
/// ``StageCheckFailed`` with the details and reports it).
public struct StageCheckFailedOnRankZero: Error, CustomStringConvertible {
    public let stage: String
    public var description: String { "stage '\(stage)' failed its check on rank 0" }
}

/// A stage whose check failed: its checkpoint and the training state are written, and `--resume` goes on with the
/// next stage (a deliberate override).
public struct StageCheckFailed: Error, CustomStringConvertible {
    public let stage: String
    public let result: StageCheckResult
    public let directory: String
    public var description: String {
        let found = result.lengths.map { "\($0.length): \(Int(($0.accuracy * 100).rounded())) %" }.joined(separator: ", ")
        var text = "stage '\(stage)' failed its check (\(result.task.rawValue) accuracy \(found); needed \(Int((result.minAccuracy * 100).rounded())) %"
        if let base = result.baseShortLoss, let loss = result.shortLoss, let limit = result.maxLossIncrease {
            text += String(format: "; short-context loss %.4f against the base's %.4f, allowed +%.1f %%", loss, base, limit * 100)
        }
        return text + "); its checkpoint is \(directory); `--resume` continues with the next stage"
    }
}

/// Everything a resumed run needs besides the weights and the optimizer's moments, stored in the training-state
/// file's header.
struct RunState: Codable, Equatable {
    var modelIdentity: String
    var stagesHash: String
    var dataFingerprint: String
    var workers: Int
    var stageIndex: Int
    /// Steps done in the current stage.
    var stageStep: Int
    /// Steps done in the whole run.
    var step: Int
    var tokensSeen: Int
    var optimizerStep: Int
    var cursor: DataCursor
    var elapsedSeconds: Double
    /// The LoRA configuration of a LoRA-mode run (a resumed run must use the same).
    var lora: LoRATrainingConfig?
    /// Each finished stage's check result (`nil` where the stage has no check).
    var checks: [StageCheckResult?] = []
    /// The base model's held-out short-context loss, measured once at the start.
    var baseShortLoss: Double?
    /// Workers each sequence was sharded over (`nil`: one); a resumed run must use the same.
    var ring: Int?
}

/// Progressive continued pretraining: for each stage of a stages file, packed sequences of the stage's length with
/// its RoPE settings, AdamW steps with gradient clipping and the stage's schedule, a training state every
/// `save_every` steps (weights, moments, data cursor; resumable bit-identically) and a Hugging Face model directory
/// at each stage's end, then the stage's check (retrieval accuracy, held-out short-context loss) when it has one.
///
/// Full fine-tuning trains every weight; LoRA mode (``TrainRequest/lora``) trains the factors of the chosen
/// projections (and optionally norms/embedding) and writes a PEFT adapter per stage.
///
/// Output layout: `OUT/stage-K/` (K = 1, 2, …) and `OUT/final/`, each a model directory transformers and `longctx
/// eval` load (in LoRA mode: `adapter/` with the stage's `config.json` and tokenizer, plus the merged weights with
/// ``TrainRequest/loraMerge``); `OUT/train.jsonl` (one record per step); `OUT/state.lcts` (the latest training
/// state); `OUT/report.html` and `OUT/loss.svg`.
public final class Trainer {
    public static let stateName = "state.lcts"

    public let request: TrainRequest
    public let directory: ModelDirectory
    public let stages: TrainingStages
    public let ropes: [ResolvedStageRope]
    public let mixture: DataMixture
    public let model: TrainableModel
    /// LoRA mode's factors and fully trained tensors; `nil` in full fine-tuning.
    public let lora: LoRATrainer?
    /// Held-out sequences for the short-context loss check (empty without `--held-out`).
    let heldOut: [TrainingSequence]
    /// The trained numbers (the store's weights, or LoRA's buffer), their gradients, and the optimizer's slices.
    let trainable: (values: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>, count: Int)
    let slices: [ParameterSlice]
    var optimizer: AdamW
    var state: RunState
    let weightDType: DType
    let baseConfig: JSONObject
    /// The workers sharing each step (sequence parallelism); `nil`: this process trains alone.
    public let group: TrainingGroup?
    /// Whether this worker writes the outputs (rank 0 of a group).
    var writes: Bool { (group?.rank ?? 0) == 0 }

    /// Reads and checks every input (model, tokenizer, stages, data, LoRA options, a state to resume from) before
    /// anything is written, so bad input leaves `out` untouched. With `group`, every worker of the group runs its own
    /// trainer on the same request: each sequence is sharded over the group, gradients are summed, and rank 0 writes.
    public init(_ request: TrainRequest, group: TrainingGroup? = nil) throws {
        self.request = request
        self.group = group
        directory = try ModelDirectory(path: request.model)
        stages = try TrainingStages.load(path: request.stagesPath)
        try Self.checkRing(stages, path: request.stagesPath, workers: group?.size ?? 1, ring: group?.ring ?? 1)
        ropes = try stages.resolveRopes(modelDirectory: directory.path)
        guard !request.data.isEmpty else { throw TrainingInputError("--data", "no training data given") }
        mixture = try DataMixture.load(request.data, modelDirectory: directory.path, sampling: stages.sampling)
        heldOut = try Self.heldOutSequences(request, stages: stages, directory: directory)
        model = try TrainableModel(directory: directory, workers: request.workers, recompute: stages.recompute)
        baseConfig = try FileOps.readJSONObject(directory.configPath).0
        weightDType = try Self.checkpointDType(directory)
        let store = model.parameters
        if let config = request.lora {
            try config.validate()
            let lora = try LoRATrainer(store: store, config: config)
            self.lora = lora
            trainable = (lora.values, lora.gradients, lora.count)
            slices = lora.segments.map { ParameterSlice(name: $0.name, offset: $0.range.lowerBound, count: $0.range.count, decays: $0.decays) }
            if !request.loraMerge, let checked = stages.stages.first(where: { $0.check != nil }) {
                throw TrainingInputError(request.stagesPath, "stage '\(checked.name)' has a check, which runs on the stage's model: in LoRA mode add --lora-merge so that the merged model is written")
            }
        } else {
            guard !request.loraMerge else { throw TrainingInputError("--lora-merge", "only applies in LoRA mode (give --lora-rank)") }
            lora = nil
            trainable = (store.values, store.gradients, store.count)
            slices = store.parameterSlices
        }
        let options = AdamWOptions(learningRate: stages.stages[0].lr, beta1: stages.betas.0, beta2: stages.betas.1,
                                   eps: stages.eps, weightDecay: stages.weightDecay)
        optimizer = AdamW(slices: slices, options: options)
        let identity = try Self.modelIdentity(directory)
        let stagesHash = try SHA256.hex(ofFile: request.stagesPath)
        state = RunState(modelIdentity: identity, stagesHash: stagesHash, dataFingerprint: mixture.fingerprint,
                         workers: request.workers, stageIndex: 0, stageStep: 0, step: 0, tokensSeen: 0,
                         optimizerStep: 0, cursor: mixture.makeCursor(seed: stages.seed), elapsedSeconds: 0,
                         lora: request.lora, ring: group.map(\.size))
        if request.resume { try restore() } else { try checkFreshOutput() }
        lora?.prepare(store)
    }

    /// Every stage's ring size (its `ring`, or the run's) must divide the run's number of workers; the rest of the
    /// workers are data parallelism.
    static func checkRing(_ stages: TrainingStages, path: String, workers: Int, ring: Int) throws {
        for stage in stages.stages {
            let size = stage.ring ?? ring
            guard workers % size != 0 else { continue }
            let how = workers == 1 ? "run with --ring \(size) or under mpirun -np \(size)" : "the run has \(workers) workers (--ring × --data-parallel, or mpirun -np), which ring \(size) does not divide"
            throw TrainingInputError(path, "stage '\(stage.name)': ring \(size): \(how)")
        }
    }

    /// Held-out sequences for `max_loss_increase`: 4 packed sequences of the first stage's length from `--held-out`
    /// (seed 0). Refuses a stages file that asks for the check without held-out data.
    static func heldOutSequences(_ request: TrainRequest, stages: TrainingStages, directory: ModelDirectory) throws -> [TrainingSequence] {
        let wanting = stages.stages.first { $0.check?.maxLossIncrease != nil }
        guard !request.heldOut.isEmpty else {
            if let wanting {
                throw TrainingInputError(request.stagesPath, "stage '\(wanting.name)': check.max_loss_increase needs held-out data (--held-out PATH)")
            }
            return []
        }
        let data = try DataMixture.load(request.heldOut, modelDirectory: directory.path, sampling: .uniform)
        var cursor = data.makeCursor(seed: 0)
        return try (0..<4).map { _ in
            try data.nextSequence(length: stages.stages[0].seqLen, options: stages.packing, cursor: &cursor).trainingSequence
        }
    }

    /// The dtype the checkpoints are written in: the base model's embedding dtype.
    static func checkpointDType(_ directory: ModelDirectory) throws -> DType {
        let checkpoint = try directory.weights()
        return checkpoint.info("model.embed_tokens.weight")?.dtype ?? .f32
    }

    /// A fingerprint of the model: `config.json` and every tensor's name, dtype, shape and bytes' SHA-256 of the
    /// first shard header (cheap; a resumed run must start from the same model).
    static func modelIdentity(_ directory: ModelDirectory) throws -> String {
        var hash = SHA256()
        let config = try FileOps.read(directory.configPath)
        config.withUnsafeBytes { hash.update($0) }
        let checkpoint = try directory.weights()
        for info in checkpoint.infos.sorted(by: { $0.name < $1.name }) {
            let line = "\(info.name) \(info.dtype.rawValue) \(info.shape) \(info.byteCount)\n"
            Data(line.utf8).withUnsafeBytes { hash.update($0) }
            let t = try checkpoint.tensor(info.name)
            hash.update(t.rawBytes)
        }
        return hash.finalizeHex()
    }

    var statePath: String { (request.out as NSString).appendingPathComponent(Self.stateName) }

    func checkFreshOutput() throws {
        if FileOps.exists(request.out) {
            guard FileOps.isDirectory(request.out) else {
                throw TrainingInputError(request.out, "--out exists and is not a directory")
            }
            if FileOps.exists(statePath) || FileOps.exists((request.out as NSString).appendingPathComponent(TrainingLog.fileName)) {
                throw TrainingInputError(request.out, "--out already holds a training run; pass --resume to continue it or choose another directory")
            }
        }
    }

    /// Loads the latest training state and checks that it belongs to this model, stages file, data and worker count.
    func restore() throws {
        guard FileOps.exists(statePath) else {
            throw TrainingInputError(statePath, "--resume: no training state here (it is written every save_every steps and at each stage end)")
        }
        let contents = try TrainingStateFile.read(statePath, metadata: RunState.self)
        let saved = contents.metadata
        guard saved.modelIdentity == state.modelIdentity else {
            throw TrainingInputError(statePath, "--resume: this state was written for another model than \(directory.path)")
        }
        guard saved.stagesHash == state.stagesHash else {
            throw TrainingInputError(statePath, "--resume: this state was written for another stages file than \(request.stagesPath) (its contents changed)")
        }
        guard saved.dataFingerprint == state.dataFingerprint else {
            throw TrainingInputError(statePath, "--resume: the training data differ from the run that wrote this state")
        }
        guard saved.workers == state.workers else {
            throw TrainingInputError(statePath, "--resume: the run used \(saved.workers) workers; resume with --workers \(saved.workers) for identical results")
        }
        guard (saved.ring ?? 1) == (state.ring ?? 1) else {
            throw TrainingInputError(statePath, "--resume: the run sharded sequences over \(saved.ring ?? 1) workers; resume with the same --ring / mpirun -np")
        }
        guard saved.lora == state.lora else {
            let was = saved.lora.map { "LoRA rank \($0.rank), alpha \($0.alpha), targets \($0.targets.map(\.rawValue).joined(separator: ","))" } ?? "full fine-tuning"
            throw TrainingInputError(statePath, "--resume: the run used \(was); resume with the same --lora options")
        }
        try mixture.check(saved.cursor)
        let n = trainable.count
        let weights = try contents.array("weights", count: n)
        weights.withUnsafeBufferPointer { trainable.values.update(from: $0.baseAddress!, count: n) }
        optimizer = AdamW(slices: slices, options: optimizer.options, step: saved.optimizerStep,
                          m: try contents.array("adam_m", count: n), v: try contents.array("adam_v", count: n))
        state = saved
    }

    func saveState() throws {
        state.optimizerStep = optimizer.step
        guard writes else { return }
        let n = trainable.count
        try optimizer.m.withUnsafeBufferPointer { m in
            try optimizer.v.withUnsafeBufferPointer { v in
                try TrainingStateFile.write(to: statePath, metadata: state, arrays: [
                    ("weights", UnsafeBufferPointer(start: trainable.values, count: n)), ("adam_m", m), ("adam_v", v),
                ])
            }
        }
    }

    /// The stage's learning-rate schedule (steps counted within the stage).
    func schedule(_ stage: StageSpec) -> LearningRateSchedule {
        LearningRateSchedule(kind: stage.schedule, peak: stage.lr, warmupSteps: stage.warmupSteps,
                             totalSteps: stage.steps, minRatio: stage.minLRRatio)
    }

    /// Runs (or continues) the whole schedule. `progress` receives each step's record; `check` runs the stages'
    /// retrieval checks (a stage with a check and no `check` closure is an error before any step).
    @discardableResult
    public func run(progress: TrainingProgress? = nil, check: StageRetrievalCheck? = nil) throws -> [TrainingLogRecord] {
        if check == nil, let checked = stages.stages.first(where: { $0.check != nil }) {
            throw TrainingInputError(request.stagesPath, "stage '\(checked.name)' has a check but no checker was given")
        }
        // Every worker has checked the output directory before rank 0 creates anything in it.
        try group?.barrier()
        if writes { try FileOps.makeDirectory(request.out) }
        let log = writes ? try TrainingLog(directory: request.out, resumeAfterStep: request.resume ? state.step : nil) : nil
        if state.baseShortLoss == nil && !heldOut.isEmpty { state.baseShortLoss = try heldOutLoss() }
        let clock = Date()
        let elapsedBefore = state.elapsedSeconds
        let totalSteps = stages.stages.reduce(0) { $0 + $1.steps }
        while state.stageIndex < stages.stages.count {
            let stage = stages.stages[state.stageIndex]
            model.rope = try RopeRuntime(ropes[state.stageIndex].configuration)
            let lr = schedule(stage)
            while state.stageStep < stage.steps {
                let started = Date()
                let (loss, tokens) = try step(stage)
                let seconds = Date().timeIntervalSince(started)
                let times = group?.takeTimes()
                let record = TrainingLogRecord(
                    step: state.step, stage: stage.name, stageIndex: state.stageIndex, stageStep: state.stageStep,
                    seqLen: stage.seqLen, loss: loss, lr: lr.learningRate(at: state.stageStep - 1),
                    gradNorm: Double(lastGradNorm), tokens: state.tokensSeen,
                    tokensPerSecond: Double(tokens) / max(1e-9, seconds),
                    seconds: seconds, elapsed: elapsedBefore + Date().timeIntervalSince(clock),
                    communicationSeconds: times?.communication, computeSeconds: times.map { seconds - $0.communication })
                try log?.append(record)
                if writes { progress?.update(record, stageSteps: stage.steps, remainingSteps: totalSteps - state.step) }
                state.elapsedSeconds = record.elapsed
                if stages.saveEvery > 0 && state.stageStep % stages.saveEvery == 0 && state.stageStep < stage.steps {
                    try saveState()
                }
            }
            try finishStage(stage, check: check)
        }
        guard let log else { return [] }
        let last = stageDirectory(stages.stages.count - 1)
        try writeModel(to: (request.out as NSString).appendingPathComponent("final"), rope: ropes[stages.stages.count - 1],
                       copyOf: last)
        let records = try TrainingLog.read(path: log.path)
        try writeReport(records)
        return records
    }

    /// A stage's end: its model directory, its check, the state (so `--resume` goes on with the next stage even
    /// after a failed check), and the error of a failed check.
    func finishStage(_ stage: StageSpec, check: StageRetrievalCheck?) throws {
        let index = state.stageIndex
        let directory = stageDirectory(index)
        if writes { try writeModel(to: directory, rope: ropes[index]) }
        var result: StageCheckResult?
        // In a group rank 0 runs the check on the checkpoint it wrote; the others wait for its verdict below.
        if let spec = stage.check, let check, writes {
            let lengths = try check(spec, directory)
            let short = spec.maxLossIncrease == nil ? nil : try heldOutLoss()
            result = StageCheckResult(task: spec.task, lengths: lengths, minAccuracy: spec.minAccuracy,
                                      baseShortLoss: state.baseShortLoss, shortLoss: short, maxLossIncrease: spec.maxLossIncrease)
        }
        state.checks = Array(state.checks.prefix(index)) + Array(repeating: nil, count: max(0, index - state.checks.count))
        state.checks.append(result)
        state.stageIndex += 1
        state.stageStep = 0
        try saveState()
        let passed = try group?.shareFromRankZero(result?.passed ?? true) ?? (result?.passed ?? true)
        guard !passed else { return }
        guard let result else { throw StageCheckFailedOnRankZero(stage: stage.name) }
        try writeReport(try TrainingLog.read(path: (request.out as NSString).appendingPathComponent(TrainingLog.fileName)))
        throw StageCheckFailed(stage: stage.name, result: result, directory: directory)
    }

    /// Mean cross-entropy per token of the held-out sequences under the current weights and RoPE.
    func heldOutLoss() throws -> Double {
        var sum = 0.0, count = 0
        for s in heldOut {
            let (l, n) = try model.loss(s)
            sum += l
            count += n
        }
        return sum / Double(max(1, count))
    }

    func writeReport(_ records: [TrainingLogRecord]) throws {
        let reports = stages.stages.enumerated().map { i, s in
            StageReport(stage: s, rope: ropes[i].summary, records: records.filter { $0.stageIndex == i },
                        check: i < state.checks.count ? state.checks[i] : nil)
        }
        var mode = "full fine-tuning"
        if let l = request.lora {
            mode = "LoRA rank \(l.rank), alpha \(l.alpha) on \(l.targets.map(\.rawValue).joined(separator: ","))"
                + (l.trainable.isEmpty ? "" : "; trained in full: \(l.trainable.map(\.rawValue).joined(separator: ","))")
        }
        let config = [("model", directory.path), ("stages", request.stagesPath),
                      ("data", request.data.map(\.path).joined(separator: ", ")), ("mode", mode),
                      ("workers", String(request.workers))]
        try TrainingReport.write(directory: request.out, records: records, stages: reports,
                                 title: "Training \((directory.path as NSString).lastPathComponent)", config: config)
    }

    private var lastGradNorm: Float = 0

    /// One optimizer step: `tokens_per_step / seq_len` packed sequences, the mean cross-entropy over all their
    /// target tokens (as transformers' Trainer with `num_items_in_batch`), clipping, AdamW at the scheduled rate. In
    /// LoRA mode the weight gradients become the factors' gradients and the merged weights are refreshed after the
    /// update.
    func step(_ stage: StageSpec) throws -> (loss: Double, tokens: Int) {
        let sequences = try (0..<max(1, stage.sequencesPerStep)).map { _ in
            try mixture.nextSequence(length: stage.seqLen, options: stages.packing, cursor: &state.cursor).trainingSequence
        }
        let lossTokens = sequences.reduce(0) { $0 + $1.lossTokens }
        let store = model.parameters
        store.zeroGradients()
        var total = 0.0
        for (index, s) in sequences.enumerated() {
            if let group {
                total += try group.accumulateGradients(model: model, sequence: s, index: index,
                                                       lossScale: 1 / Float(max(1, lossTokens)),
                                                       layout: stage.layout, ring: stage.ring ?? group.ring).loss
            } else {
                total += try model.accumulateGradients(s, lossScale: 1 / Float(max(1, lossTokens))).loss
            }
        }
        if let group { total = try group.finishStep(model: model, loss: total) }
        lora?.collectGradients(store)
        let grads = UnsafeMutableBufferPointer(start: trainable.gradients, count: trainable.count)
        if stages.gradClip > 0 {
            lastGradNorm = GradientClipping.clipGradientNorm(grads, slices: slices, maxNorm: stages.gradClip)
        } else {
            lastGradNorm = GradientClipping.globalNorm(UnsafeBufferPointer(grads), slices: slices)
        }
        let lr = schedule(stage).learningRate(at: state.stageStep)
        optimizer.update(parameters: UnsafeMutableBufferPointer(start: trainable.values, count: trainable.count),
                         gradients: UnsafeBufferPointer(grads), learningRate: lr, threads: model.workers)
        lora?.prepare(store)
        state.stageStep += 1
        state.step += 1
        let tokens = sequences.reduce(0) { $0 + $1.count }
        state.tokensSeen += tokens
        return (total / Double(max(1, lossTokens)), tokens)
    }

    public func stageDirectory(_ index: Int) -> String {
        (request.out as NSString).appendingPathComponent("stage-\(index + 1)")
    }

    /// Writes the current weights as a Hugging Face model directory (weights in the base model's dtype, config.json
    /// with the stage's RoPE and `max_position_embeddings`, the tokenizer files copied), through a temporary
    /// directory renamed into place. With `copyOf`, copies that directory's files instead of writing them again.
    func writeModel(to path: String, rope: ResolvedStageRope, copyOf source: String? = nil) throws {
        let tmp = FileOps.temporarySibling(of: path)
        try FileOps.makeDirectory(tmp)
        do {
            if let source {
                for name in try FileOps.listDirectory(source) {
                    try FileManager.default.copyItem(atPath: (source as NSString).appendingPathComponent(name),
                                                     toPath: (tmp as NSString).appendingPathComponent(name))
                }
            } else {
                if lora == nil || request.loraMerge {
                    let tensors = model.parameters.huggingFaceTensors(dtype: weightDType)
                    let specs = tensors.map { TensorSpec(name: $0.name, dtype: $0.tensor.dtype, shape: $0.tensor.shape) }
                    let writer = try CheckpointWriter(directory: tmp, specs: specs)
                    for t in tensors { try writer.append(name: t.name, tensor: t.tensor) }
                    try writer.finish()
                }
                if let lora {
                    try lora.writeAdapter(directory: (tmp as NSString).appendingPathComponent("adapter"), store: model.parameters,
                                          baseModel: directory.path, savedDType: weightDType,
                                          note: "Trained at \(rope.configuration.maxPositionEmbeddings.map(String.init) ?? "?") tokens with RoPE \(rope.summary): use it with the `config.json` beside this folder (the base model's config with that RoPE).")
                }
                let config = try rope.apply(to: baseConfig)
                try FileOps.writeAtomically(JSONValue.object(config).serialized() + "\n",
                                            to: (tmp as NSString).appendingPathComponent("config.json"))
                for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                             "generation_config.json", "chat_template.jinja"] {
                    let src = (directory.path as NSString).appendingPathComponent(name)
                    if FileOps.exists(src) {
                        try FileManager.default.copyItem(atPath: src, toPath: (tmp as NSString).appendingPathComponent(name))
                    }
                }
            }
            FileOps.remove(path)
            try FileOps.rename(tmp, to: path)
        } catch {
            FileOps.remove(tmp)
            throw error
        }
    }
}
