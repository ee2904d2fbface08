import Basics
import Evaluation
import Foundation
import RoPE

/// Act one's grid: a real model (SmolLM2-135M-Instruct, trained at 8K) inside and beyond its window.
public struct ActOneGrid: Sendable, Equatable {
    public var modelName = "smollm2-135m-instruct"
    public var lengths: [Int]
    public var depths: Int
    public var perDepth: Int
    /// Target of the training-free YaRN plan (`rope plan --method yarn --target`).
    public var yarnTarget: Int

    public init(lengths: [Int], depths: Int, perDepth: Int, yarnTarget: Int) {
        self.lengths = lengths
        self.depths = depths
        self.perDepth = perDepth
        self.yarnTarget = yarnTarget
    }

    /// Sized for the 15-minute budget on two cores (release build and download included): 8K and 12K, one prompt
    /// each with the key at 50 % depth (≈ 1.5 min of prefill per model on 2 cores).
    public static let quick = ActOneGrid(lengths: [8192, 12288], depths: 1, perDepth: 1, yarnTarget: 16384)
    /// `--full`: 4K to 16K, five depths, two prompts each.
    public static let full = ActOneGrid(lengths: [4096, 8192, 12288, 16384], depths: 5, perDepth: 2, yarnTarget: 16384)
}

/// Act one's measurements: the model as is and with the YaRN plan.
public struct ActOneResult: Sendable {
    public var grid: ActOneGrid
    public var base: PhaseResult
    public var yarn: PhaseResult
    public var plan: RopePlan
}

public enum ActOne {
    public static func run(model: String, grid: ActOneGrid, work: String, seed: UInt64,
                           log: @escaping @Sendable (String) -> Void) async throws -> ActOneResult {
        let yarnModel = (work as NSString).appendingPathComponent("act-one-yarn")
        let plan = try DemoSteps.applyPlan(base: model, method: .yarn, target: grid.yarnTarget, out: yarnModel)
        func run(_ key: String, _ title: String, _ directory: String) async throws -> PhaseResult {
            try await DemoSteps.grid(key: key, title: title, modelDirectory: directory, lengths: grid.lengths,
                                     depths: grid.depths, perDepth: grid.perDepth, keys: .standard, layout: .landmark, seed: seed, log: log)
        }
        let base = try await run("act_one.base", "\(grid.modelName) as is", model)
        let yarn = try await run("act_one.yarn", "\(grid.modelName) + YaRN ×\(RoPE.formatNumber(plan.final.ratio)), no training", yarnModel)
        return ActOneResult(grid: grid, base: base, yarn: yarn, plan: plan)
    }
}
