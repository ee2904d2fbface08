import Foundation
import Testing
import RoPE

@Suite("planning")
struct PlanningTests {
    /// Rows of the fixture's `meta.gradient_ai_theta_check` (θ = 500000, L0 = 8192).
    static var gradientRows: [FixtureValue] { GoldenFixture.meta["gradient_ai_theta_check"]!["rows"]!.array! }

    @Test("θ schedule equals the fixture's critical-dimension θ and rounds to Gradient's released θ")
    func thetaScheduleMatchesFixture() throws {
        #expect(Self.gradientRows.count == 5)
        for row in Self.gradientRows {
            let target = row["target_len"]!.int!
            let theta = RoPE.criticalDimensionTheta(theta: 500000, trainedLength: 8192, targetLength: target)
            let expected = row["critical_dim_rule_theta"]!.double!
            #expect(theta == expected, "L = \(target)")
            if let released = row["released_config_rope_theta"]?.double {
                #expect(theta.rounded(.toNearestOrAwayFromZero) == released, "L = \(target)")
            }
            // bloc97's NTK-aware θ·s^(d/(d−2)) is a different rule; the fixture records it too.
            let ntk = RoPE.ntkAwareBase(theta: 500000, factor: Double(target) / 8192, rotaryDim: 128)
            #expect(abs(ntk - row["ntk_aware_theta_d128"]!.double!) <= 1e-9 * ntk)
        }
    }

    @Test("θ plan reproduces 283461213, 3580165449, 45218125210 to the integer",
          arguments: [(262_144, 283_461_213.0), (1_048_576, 3_580_165_449.0), (4_194_304, 45_218_125_210.0)])
    func thetaPlanIntegers(_ target: Int, _ released: Double) throws {
        let llama3 = RopeConfiguration(theta: 500000, headDim: 128, maxPositionEmbeddings: 8192)
        let plan = try RoPE.plan(from: llama3, targetLength: target, method: .theta)
        #expect(plan.final.configuration.theta == released)
        #expect(plan.final.configuration.ropeType == .default)
        #expect(plan.final.configuration.maxPositionEmbeddings == target)
        // The rule keeps YaRN's critical dimension (1 rotation) fixed.
        let before = RoPE.yarnCorrectionDim(rotations: 1, rotaryDim: 128, base: 500000, originalLength: 8192)
        let after = RoPE.yarnCorrectionDim(rotations: 1, rotaryDim: 128, base: plan.final.exactTheta,
                                           originalLength: target)
        #expect(abs(before - after) < 1e-12)
        // Without rounding the exact value is kept.
        let exact = try RoPE.plan(from: llama3, targetLength: target, method: .theta,
                                  options: RopePlanOptions(roundTheta: false))
        #expect(exact.final.configuration.theta == exact.final.exactTheta)
        #expect(abs(exact.final.exactTheta - released) < 0.5)
    }

    @Test("YaRN plan for Llama-3.1 → 1M with UltraLong betas")
    func ultraLong() throws {
        let source = try resolve(llama31Config)
        let plan = try RoPE.plan(from: source, targetLength: 1_048_576, method: .yarn,
                                 options: RopePlanOptions(betaFast: 4, betaSlow: 1))
        #expect(plan.trainedLength == 8192)
        #expect(!plan.notes.isEmpty)  // replaces the llama3 scaling
        let config = plan.final.configuration
        #expect(config.ropeType == .yarn && config.factor == 128 && config.originalMaxPositionEmbeddings == 8192)
        #expect(config.theta == 500000 && config.betaFast == 4 && config.betaSlow == 1)
        let frequencies = plan.final.frequencies
        // rope.md §3.3: cd(4) = 28.223 → low 28, cd(1) = 34.984 → high 35, attention 0.1·ln 128 + 1.
        #expect(frequencies.yarnRamp?.low == 28 && frequencies.yarnRamp?.high == 35)
        #expect(abs(frequencies.attentionFactor - 1.4852030263919618) < 1e-15)
        let table = plan.dimensionTable()
        #expect(table.count == 64)
        #expect(table[0...28].allSatisfy { $0.regime == .kept })
        #expect(table[29...34].allSatisfy { $0.regime == .blended })
        #expect(table[35...63].allSatisfy { $0.regime == .interpolated })
        #expect(abs(table[63].scale - 128) < 1e-4)
        #expect(abs(table[0].originalWavelength - 2 * Double.pi) < 1e-12)
        #expect(abs(table[0].rotationsInTrainedLength - 8192 / (2 * Double.pi)) < 1e-9)
        // Default betas interpolate from pair 18 (rope.md §3.3: "Versus default β=32 (low 18)").
        let defaults = try RoPE.plan(from: source, targetLength: 1_048_576, method: .yarn)
        #expect(defaults.final.frequencies.yarnRamp?.low == 18)
        #expect(defaults.final.configuration.betaFast == nil)
    }

    @Test("multi-stage plan 8K → 32K → 128K → 512K → 1M", arguments: RopePlanMethod.allCases)
    func stages(_ method: RopePlanMethod) throws {
        let source = RopeConfiguration(theta: 500000, headDim: 128, maxPositionEmbeddings: 8192)
        let plan = try RoPE.plan(from: source, targetLength: 1 << 20, method: method,
                                 stages: [32768, 131072, 524288])
        #expect(plan.stages.map(\.targetLength) == [32768, 131072, 524288, 1 << 20])
        #expect(plan.stages.map(\.ratio) == [4, 16, 64, 128])
        for stage in plan.stages {
            let config = stage.configuration
            #expect(config.maxPositionEmbeddings == stage.targetLength)
            switch method {
            case .yarn, .linear, .llama3:
                #expect(config.factor == stage.ratio && config.theta == 500000)
            case .ntk:
                #expect(config.ropeType == .default)
                #expect(config.theta == RoPE.ntkAwareBase(theta: 500000, factor: stage.ratio, rotaryDim: 128))
            case .theta:
                #expect(config.theta == RoPE.criticalDimensionTheta(theta: 500000, trainedLength: 8192,
                                                                     targetLength: stage.targetLength).rounded())
            }
        }
        // Longer stages never speed any pair up.
        for (a, b) in zip(plan.stages, plan.stages.dropFirst()) {
            #expect(zip(a.frequencies.invFreq, b.frequencies.invFreq).allSatisfy { $0 >= $1 })
        }
        // Stage-by-stage θ equals θ from scratch (the rule is transitive).
        if method == .theta {
            let viaStage = RoPE.criticalDimensionTheta(theta: plan.stages[2].exactTheta, trainedLength: 524288,
                                                       targetLength: 1 << 20)
            #expect(abs(viaStage - plan.final.exactTheta) <= 1e-9 * viaStage)
        }
    }

    @Test("llama3 plan with custom bands; linear plan interpolates every pair")
    func llama3AndLinear() throws {
        let source = RopeConfiguration(theta: 500000, headDim: 128, maxPositionEmbeddings: 8192)
        let llama = try RoPE.plan(from: source, targetLength: 65536, method: .llama3,
                                  options: RopePlanOptions(lowFreqFactor: 2, highFreqFactor: 8))
        #expect(llama.final.configuration.lowFreqFactor == 2 && llama.final.configuration.highFreqFactor == 8)
        #expect(llama.final.configuration.originalMaxPositionEmbeddings == 8192)
        let linear = try RoPE.plan(from: source, targetLength: 32768, method: .linear)
        #expect(linear.dimensionTable().allSatisfy { $0.regime == .interpolated })
        let theta = try RoPE.plan(from: source, targetLength: 32768, method: .theta)
        let rows = theta.dimensionTable()
        #expect(rows[0].regime == .kept && rows[1].regime == .blended && rows[63].regime == .interpolated)
    }

    @Test("plan argument errors")
    func errors() {
        let source = RopeConfiguration(theta: 500000, headDim: 128, maxPositionEmbeddings: 8192)
        #expect(throws: RopeError.invalidArgument(name: "target", message: "8192 must exceed the trained context length 8192")) {
            try RoPE.plan(from: source, targetLength: 8192, method: .yarn)
        }
        #expect(throws: RopeError.self) {
            try RoPE.plan(from: source, targetLength: 1 << 20, method: .yarn, stages: [131072, 32768])
        }
        #expect(throws: RopeError.self) {
            try RoPE.plan(from: source, targetLength: 65536, method: .yarn, stages: [131072])
        }
        #expect(throws: RopeError.self) {
            try RoPE.plan(from: source, targetLength: 65536, method: .yarn, options: RopePlanOptions(betaFast: 1, betaSlow: 2))
        }
        let noLength = RopeConfiguration(theta: 500000, headDim: 128)
        #expect(throws: RopeError.self) { try RoPE.plan(from: noLength, targetLength: 65536, method: .yarn) }
        let override = try? RoPE.plan(from: noLength, targetLength: 65536, method: .yarn,
                                      options: RopePlanOptions(trainedLength: 4096))
        #expect(override?.final.configuration.factor == 16)
    }

    @Test("SVG plot is well-formed and has one marker per pair and panel")
    func svg() throws {
        let source = try resolve(llama31Config)
        let plan = try RoPE.plan(from: source, targetLength: 1 << 20, method: .yarn)
        let svg = RoPE.dimensionPlotSVG(rows: plan.dimensionTable(), title: "Llama <3.1> → 1M",
                                        trainedLength: 8192, targetLength: 1 << 20)
        #expect(svg.hasPrefix("<svg"))
        #expect(svg.hasSuffix("</svg>\n"))
        #expect(svg.components(separatedBy: "<circle cx=").count - 1 == 2 * 64 + RopeRegime.allCases.count)
        #expect(svg.contains("Llama &lt;3.1&gt;"))
        #expect(!svg.contains("nan") && !svg.contains("inf"))
    }
}
