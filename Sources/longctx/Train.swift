import ArgumentParser
import Basics
import Distributed
import DistributedMPI
import EvalBackends
import Evaluation
import Foundation
import ModelIO
import Training

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Progressive continued pretraining: the stages of a YAML file (lengths, RoPE, budgets, schedules), packed documents with document masks, checkpoints per stage, exact resume; full fine-tuning or LoRA.")

    @Option(help: "Model directory (or a known short name such as smollm2-135m-instruct).") var model: String
    @Option(help: "Training data: a .txt/.md file (one document), a .jsonl file (a `text` field per line), a directory of them, or a corpus from `longctx data pack`; repeat for several domains (PATH or PATH@WEIGHT).")
    var data: [String] = []
    @Option(help: "Stages file (YAML); see eval/stages/.") var stages: String
    @Option(help: "Output directory: stage-K/ and final/ model directories, train.jsonl, state.lcts, report.html.") var out: String?
    @Flag(help: "Continue the run in --out from its last training state (bit-identical to an uninterrupted run).") var resume = false
    @Option(help: "Parallel workers (a resumed run must use the same number).") var workers = max(1, ProcessInfo.processInfo.activeProcessorCount)
    @Option(name: .customLong("held-out"), help: "Held-out data for the stages' short-context loss check (check.max_loss_increase).")
    var heldOut: [String] = []
    @Option(name: .customLong("data-parallel"), help: "Rings that take different sequences of each step, gradients summed over all (data parallelism): --ring P --data-parallel D runs P·D workers in this process; under mpirun it is -np / --ring.")
    var dataParallel: Int?
    @OptionGroup var lora: LoRAOptions
    @OptionGroup var estimate: EstimateOptions

    func validate() throws {
        if !estimate.estimate && out == nil { throw ValidationError("--out DIR is required (or --estimate to plan without training)") }
    }

    func run() throws {
        if estimate.estimate { return try estimate.run(model: try ModelResolver.resolve(model), stages: stages, workers: workers) }
        let out = out!
        let request = TrainRequest(model: try ModelResolver.resolve(model), data: try data.map(DomainSpec.init(parsing:)),
                                   stagesPath: stages, out: out, resume: resume, workers: workers,
                                   lora: try lora.configuration(), loraMerge: lora.merge,
                                   heldOut: try heldOut.map(DomainSpec.init(parsing:)))
        let stageCount = try TrainingStages.load(path: stages).stages.count
        let progress = TrainingProgress(stageCount: stageCount)
        if MPICommunicator.launchedByMPI {
            // Ranks other than 0 write nothing and print nothing.
            guard try MPITraining.train(request, ring: estimate.ring, dataParallel: dataParallel, progress: progress,
                                        check: Self.retrievalCheck) != nil else { return }
        } else if estimate.ring > 1 || (dataParallel ?? 1) > 1 {
            try RingTraining.train(request, ring: estimate.ring, dataParallel: dataParallel ?? 1, progress: progress,
                                   check: Self.retrievalCheck)
        } else {
            try Trainer(request).run(progress: progress, check: Self.retrievalCheck)
        }
        print("wrote \((out as NSString).appendingPathComponent("stage-\(stageCount)")) and \((out as NSString).appendingPathComponent("final")); log \((out as NSString).appendingPathComponent("train.jsonl"))")
    }

    /// A stage's check on the built-in engine (passkey, or NIAH with eval/niah.json), run to completion from this
    /// synchronous command.
    static func retrievalCheck(_ check: StageCheck, _ directory: String) throws -> [StageCheckResult.LengthResult] {
        let suite = check.task == .niah ? try NIAHSuite.load(path: DataFile.locate("eval/niah.json")) : nil
        let rows = try waitFor {
            try await RetrievalCheck.run(modelDirectory: directory, lengths: check.lengths, samples: check.samples, suite: suite)
        }
        return rows.map { .init(length: $0.length, accuracy: $0.accuracy, samples: $0.samples) }
    }
}

/// `longctx train --estimate`: the per-stage plan for a ring of ranks, from this machine's measured rates or given ones.
struct EstimateOptions: ParsableArguments {
    @Flag(help: "Print per stage the FLOPs per step, memory and traffic per rank and the expected step time; train nothing (only config.json of --model is read).")
    var estimate = false
    @Option(help: "Workers each sequence is sharded over (ring attention): threads of this process, or ranks of `mpirun -np N … --ring P` (P divides N; the N / P rings are data parallelism); with --estimate, the ranks to plan for.")
    var ring = 1
    @Option(name: .customLong("rank-tflops"), help: "With --estimate: sustained TFLOP/s of one rank (default: measured here with --workers threads).")
    var rankTFLOPs: Double?
    @Option(name: .customLong("rank-memory"), help: "With --estimate: memory of one rank, e.g. 80G.") var rankMemory: String?
    @Option(name: .customLong("link-gbps"), help: "With --estimate: GB/s one rank sends to its neighbour (default: memory copy rate here).")
    var linkGBps: Double?
    @Option(name: .customLong("rank-memory-gbps"), help: "With --estimate: GB/s of one rank's memory (default: measured here).")
    var memoryGBps: Double?
    @Flag(help: "With --estimate: print JSON.") var json = false

    func run(model: String, stages: String, workers: Int) throws {
        let memory = try rankMemory.map { text -> Double in
            guard let bytes = parseLength(text), bytes > 0 else { throw ValidationError("--rank-memory: expected a size such as 80G, got '\(text)'") }
            return Double(bytes)
        }
        for (name, value) in [("--rank-tflops", rankTFLOPs), ("--link-gbps", linkGBps), ("--rank-memory-gbps", memoryGBps)] {
            if let value, !(value.isFinite && value > 0) { throw ValidationError("\(name) must be a positive number, got \(value)") }
        }
        let (rows, capacity) = try TrainingEstimate.plan(modelDirectory: model, stagesPath: stages, ring: ring) { configuration, keyLengths in
            var c = rankTFLOPs != nil && linkGBps != nil && memoryGBps != nil
                ? RankCapacity(matmulFLOPs: 0, attentionFLOPs: 0, attentionBackwardFLOPs: 0, memoryBytes: memory,
                               linkBytesPerSecond: 0, memoryBytesPerSecond: 0, source: "")
                : RankCapacity.measure(configuration: configuration, workers: workers, keyLengths: keyLengths, memoryBytes: memory)
            if let t = rankTFLOPs {
                c.matmulFLOPs = t * 1e12; c.attentionFLOPs = t * 1e12; c.attentionBackwardFLOPs = t * 1e12
                c.source = "given"
            }
            if let l = linkGBps { c.linkBytesPerSecond = l * 1e9 }
            if let m = memoryGBps { c.memoryBytesPerSecond = m * 1e9 }
            return c
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            struct Plan: Encodable { let capacity: RankCapacity; let stages: [StageEstimate] }
            print(String(decoding: try encoder.encode(Plan(capacity: capacity, stages: rows)), as: UTF8.self))
        } else {
            print(TrainingEstimate.table(rows, capacity: capacity), terminator: "")
        }
    }
}

/// LoRA mode of `longctx train` (LongLoRA-style); off unless `--lora-rank` is given.
struct LoRAOptions: ParsableArguments {
    @Option(name: .customLong("lora-rank"), help: "Train LoRA factors of this rank instead of every weight.") var rank: Int?
    @Option(name: .customLong("lora-alpha"), help: "lora_alpha (scale s = alpha/rank).") var alpha: Double = 16
    @Option(name: .customLong("lora-targets"), help: "Projections to adapt: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj.")
    var targets = "q_proj,k_proj,v_proj,o_proj"
    @Option(name: .customLong("lora-trainable"), help: "Also train these in full (LongLoRA): norms, embed.") var trainable = ""
    @Flag(name: .customLong("lora-rslora"), help: "rsLoRA scaling (s = alpha/√rank).") var rsLoRA = false
    @Flag(name: .customLong("lora-merge"), help: "Also write each stage's merged model beside its adapter.") var merge = false

    func configuration() throws -> LoRATrainingConfig? {
        guard let rank else {
            guard !merge else { throw ValidationError("--lora-merge needs --lora-rank (LoRA mode)") }
            return nil
        }
        let config = LoRATrainingConfig(rank: rank, alpha: alpha,
                                        targets: try LoRATrainingConfig.list(targets, option: "--lora-targets"),
                                        trainable: try LoRATrainingConfig.list(trainable, option: "--lora-trainable"),
                                        rsLoRA: rsLoRA)
        try config.validate()
        return config
    }
}

/// Runs async work to completion from synchronous code on the main thread (the work runs on the concurrency pool).
func waitFor<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var result: Result<T, Error>!
    Task {
        do { result = .success(try await body()) } catch { result = .failure(error) }
        done.signal()
    }
    done.wait()
    return try result.get()
}
