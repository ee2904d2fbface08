import Foundation
import ModelIO
import TestSupport
import Testing
import Transformer
@testable import Training

/// Whether the torch interop tests run: true when torch and transformers import; when they do not, false (the tests
/// show as skipped) unless `LONGCTX_INTEROP=1`, where evaluating the condition throws and the test fails.
/// Probed once per test process.
enum TorchInterop {
    static let probe: Result<Bool, Error> = Result { try TestSupport.interopEnabled(["torch", "transformers"]) }
    static func enabled() throws -> Bool { try probe.get() }

    /// Runs Tests/Interop/optimizer_interop.py with `arguments` and decodes its JSON output.
    static func run<T: Decodable>(_ type: T.Type, _ arguments: [String]) throws -> T {
        let script = try String(contentsOfFile: TestSupport.repoRoot + "/Tests/Interop/optimizer_interop.py", encoding: .utf8)
        return try JSONDecoder().decode(T.self, from: Data(TestSupport.runPython(script, arguments).utf8))
    }
}

/// Varied deterministic test values in [−1, 1] (a product of two incommensurate sines; no RNG needed).
func wobble(_ i: Int, _ salt: Double) -> Float {
    Float(sin(Double(i) * 0.618034 + salt) * cos(Double(i) * 1.324718 + 2 * salt))
}

/// ‖a − b‖ / ‖b‖ over f32 values (f64 arithmetic); ‖a − b‖ when b is all zeros.
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var d = 0.0, n = 0.0
    for (x, y) in zip(a, b) { d += (Double(x) - Double(y)) * (Double(x) - Double(y)); n += Double(y) * Double(y) }
    return n == 0 ? d.squareRoot() : (d / n).squareRoot()
}

@Suite struct OptimizerTests {
    /// Tensors of several shapes (sizes with vector-loop tails), named like a Llama layer's parameters so that
    /// Hugging Face's decay rule puts the norm weight and the bias in the no-decay group.
    static let tensors: [(name: String, shape: [Int])] = [
        ("model.layers.0.self_attn.q_proj.weight", [64, 48]),
        ("model.layers.0.input_layernorm.weight", [48]),
        ("model.layers.0.mlp.up_proj.weight", [3, 4, 7]),
        ("model.layers.0.self_attn.q_proj.bias", [13]),
        ("model.embed_tokens.weight", [5, 3]),
    ]

    struct Reference: Decodable {
        struct Step: Decodable { let lr: Double; let norm: Double; let params: [[Double]]; let m: [[Double]]; let v: [[Double]] }
        let params0: [[Double]]
        let grads: [[[Double]]]
        let steps: [Step]
    }

    static func floats(_ tensors: [[Double]]) -> [Float] { tensors.flatMap { $0.map(Float.init) } }

    /// Runs `gradScales.count` AdamW steps with clipping and `schedule` from step `start` in torch and here, and
    /// checks, after every step, each tensor's parameters and moments to 1e-6 relative and the norm and lr.
    func compareWithTorch(schedule: LearningRateSchedule, start: Int, gradScales: [Double], maxNorm: Double,
                          options: AdamWOptions) throws {
        let slices = ParameterSlice.contiguous(Self.tensors.map { ($0.name, $0.shape.reduce(1, *)) })
        #expect(slices.map(\.decays) == [true, false, true, false, true])
        let config: [String: Any] = [
            "seed": 7, "shapes": Self.tensors.map(\.shape), "grad_scales": gradScales, "decays": slices.map(\.decays),
            "lr": schedule.peak, "betas": [options.beta1, options.beta2], "eps": options.eps,
            "weight_decay": options.weightDecay, "kind": schedule.kind.rawValue, "warmup": schedule.warmupSteps,
            "total": schedule.totalSteps, "min_ratio": schedule.minRatio, "start": start, "max_norm": maxNorm,
        ]
        let json = String(decoding: try JSONSerialization.data(withJSONObject: config), as: UTF8.self)
        let ref = try TorchInterop.run(Reference.self, ["adamw", json])
        #expect(ref.steps.count == gradScales.count)

        var params = Self.floats(ref.params0)
        var adam = AdamW(slices: slices, options: options)
        var clipped = 0
        for (k, step) in ref.steps.enumerated() {
            var grads = Self.floats(ref.grads[k])
            let norm = GradientClipping.clipGradientNorm(&grads, slices: slices, maxNorm: maxNorm)
            if Double(norm) > maxNorm { clipped += 1 }
            let lr = schedule.learningRate(at: start + k)
            #expect(abs(lr - step.lr) <= 1e-15 * abs(step.lr), "lr at step \(start + k)")
            #expect(abs(Double(norm) - step.norm) <= 1e-6 * step.norm, "grad norm at step \(k): \(norm) vs \(step.norm)")
            adam.update(parameters: &params, gradients: grads, learningRate: lr)
            for (i, s) in slices.enumerated() {
                let tag = "step \(k) \(s.name)"
                #expect(relativeError(Array(params[s.range]), step.params[i].map(Float.init)) <= 1e-6, "params, \(tag)")
                #expect(relativeError(Array(adam.m[s.range]), step.m[i].map(Float.init)) <= 1e-6, "exp_avg, \(tag)")
                #expect(relativeError(Array(adam.v[s.range]), step.v[i].map(Float.init)) <= 1e-6, "exp_avg_sq, \(tag)")
            }
        }
        #expect(adam.step == gradScales.count)
        // Both branches of the clip coefficient (scaled down, and the ≤ 1 coefficient of a small norm) were taken.
        if gradScales.count > 1 { #expect(clipped > 0 && clipped < gradScales.count) }
    }

    @Test(.enabled(if: try TorchInterop.enabled()))
    func oneStepWithClippingAndWarmupMatchesTorch() throws {
        // Step 3 of a 10-step warmup (lr = 0.3 · peak): clipping active, weight decay on three of five tensors.
        let schedule = LearningRateSchedule(kind: .cosine, peak: 1e-2, warmupSteps: 10, totalSteps: 100)
        try compareWithTorch(schedule: schedule, start: 3, gradScales: [2.0], maxNorm: 1.0,
                             options: AdamWOptions(learningRate: 1e-2, weightDecay: 0.1))
    }

    @Test(.enabled(if: try TorchInterop.enabled()))
    func tenStepsWithChangingGradientsMatchTorch() throws {
        // Moments and bias corrections over time; gradient scales so that some steps clip and some do not; non-default
        // betas and eps; a cosine schedule with warmup and a floor, crossing from warmup into decay.
        let schedule = LearningRateSchedule(kind: .cosine, peak: 3e-3, warmupSteps: 3, totalSteps: 10, minRatio: 0.1)
        try compareWithTorch(schedule: schedule, start: 0,
                             gradScales: [1.5, 0.01, 0.3, 4.0, 0.02, 1.0, 0.05, 2.5, 0.7, 0.001], maxNorm: 1.0,
                             options: AdamWOptions(learningRate: 3e-3, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.05))
    }

    @Test(.enabled(if: try TorchInterop.enabled()))
    func schedulesMatchTransformersAtEveryStep() throws {
        // warmup 7, decay ending at step 90 of a 100-step run (so the steps after the end are covered too).
        let cases: [LearningRateSchedule] = ScheduleKind.allCases.map {
            LearningRateSchedule(kind: $0, peak: 2e-4, warmupSteps: 7, totalSteps: 90)
        } + [
            LearningRateSchedule(kind: .cosine, peak: 1e-3, warmupSteps: 10, totalSteps: 100, minRatio: 0.1),
            LearningRateSchedule(kind: .linear, peak: 1e-3, warmupSteps: 0, totalSteps: 100),
            LearningRateSchedule(kind: .constant, peak: 1e-3, warmupSteps: 1, totalSteps: 100),
        ]
        let config: [String: Any] = ["steps": 100, "cases": cases.map {
            ["kind": $0.kind.rawValue, "lr": $0.peak, "warmup": $0.warmupSteps, "total": $0.totalSteps, "min_ratio": $0.minRatio]
        }]
        let json = String(decoding: try JSONSerialization.data(withJSONObject: config), as: UTF8.self)
        let ref = try TorchInterop.run([[Double]].self, ["schedules", json])
        #expect(ref.count == cases.count)
        for (schedule, lrs) in zip(cases, ref) {
            #expect(lrs.count == 100)
            for (step, expected) in lrs.enumerated() {
                let got = schedule.learningRate(at: step)
                #expect(abs(got - expected) <= 1e-7 * abs(expected), "\(schedule.kind) step \(step): \(got) vs \(expected)")
            }
        }
    }

    @Test(.enabled(if: try TorchInterop.enabled()))
    func decayRuleMatchesHuggingFaceTrainer() throws {
        struct Model: Decodable { let names: [String]; let decay: [String] }
        let ref = try TorchInterop.run([String: Model].self, ["decay"])
        #expect(ref.keys.sorted() == ["llama", "qwen2", "qwen3"])
        for (model, r) in ref {
            let expected = Set(r.decay)
            #expect(expected.count < r.names.count, "\(model): some parameters are excluded from decay")
            for name in r.names {
                #expect(AdamW.huggingFaceDecays(name) == expected.contains(name), "\(model): \(name)")
            }
        }
    }

    @Test func clippingScalesToMaxNormAndReturnsTheNorm() {
        let slices = ParameterSlice.contiguous([("a", 2), ("b", 1)])
        var g: [Float] = [3, 4, 12]  // norms 5 and 12: total 13
        let norm = GradientClipping.clipGradientNorm(&g, slices: slices, maxNorm: 1.3)
        #expect(norm == 13)
        let coef = Float(1) / (13 + Float(1e-6)) * Float(1.3)
        #expect(g == [3 * coef, 4 * coef, 12 * coef])
        var small: [Float] = [0.3, 0.4, 0]
        GradientClipping.clipGradientNorm(&small, slices: slices, maxNorm: 1.0)
        #expect(small == [0.3, 0.4, 0])  // coefficient clamped to 1
    }

    /// The trainer's store maps to one slice per transformers tensor (stacked q/k/v and gate/up split back), tiling
    /// the buffer, with the store's decay flags equal to Hugging Face Trainer's rule.
    @Test(arguments: ["llama", "qwen2"])
    func storeSlicesAreTransformersTensors(architecture: String) throws {
        var spec = RandomModelSpec()
        spec.architecture = architecture
        let scratch = TestSupport.scratchDirectory("slices"), dir = scratch + "/model"
        defer { FileOps.remove(scratch) }
        try spec.write(to: dir)
        let store = ParameterStore(configuration: try TransformerConfiguration(directory: ModelDirectory(path: dir)))
        let slices = store.parameterSlices
        ParameterSlice.checkTiling(slices, total: store.count)
        #expect(slices.map(\.name).sorted() == store.huggingFaceArrays(of: store.values).map(\.name))
        #expect(slices.contains { $0.name.hasSuffix("k_proj.bias") } == (architecture == "qwen2"))
        for s in slices { #expect(s.decays == AdamW.huggingFaceDecays(s.name), "\(s.name)") }
        var adam = AdamW(store: store)
        store.gradients.update(repeating: 0.5, count: store.count)
        let norm = GradientClipping.clipGradientNorm(store, maxNorm: 1)
        #expect(abs(Double(norm) - 0.5 * Double(store.count).squareRoot()) <= 1e-6 * Double(norm))
        adam.update(store, learningRate: 1e-3)
        #expect(adam.step == 1 && adam.m[0] == store.gradients[0] * Float(1 - 0.9))
    }

    @Test func threadedUpdateIsIdentical() {
        let slices = ParameterSlice.contiguous([("w", 200_001), ("model.norm.weight", 999), ("b", 70_000)])
        let n = slices.last!.range.upperBound
        let p0 = (0..<n).map { wobble($0, 0) }
        var a = AdamW(slices: slices, options: AdamWOptions(weightDecay: 0.1)), b = a
        var pa = p0, pb = p0
        for step in 1...3 {
            let g = (0..<n).map { wobble($0, Double(step)) }
            a.update(parameters: &pa, gradients: g, learningRate: 1e-3, threads: 1)
            b.update(parameters: &pb, gradients: g, learningRate: 1e-3, threads: 3)
        }
        #expect(pa.map(\.bitPattern) == pb.map(\.bitPattern))
        #expect(a.m.map(\.bitPattern) == b.m.map(\.bitPattern) && a.v.map(\.bitPattern) == b.v.map(\.bitPattern))
        #expect(pa[200_001] != p0[200_001])
    }
}

@Suite struct TrainingStateTests {
    struct Extra: Codable, Sendable, Equatable {
        var rngState: UInt64
        var spare: Float?
        var cursor: [String: [Int]]
    }

    static let progress = TrainingCheckpointInfo(
        modelIdentity: "sha256:abc", stagesHash: "sha256:def", stageIndex: 1, step: 1234, tokensSeen: 5_000_000_123,
        optimizerStep: 1234, optimizer: AdamWOptions(learningRate: 3e-5, beta2: 0.95, weightDecay: 0.1),
        extra: Extra(rngState: 0xe220_a839_7b1d_cdaf, spare: -0.123456789, cursor: ["domain0": [3, 17], "domain1": [0, 2]]))

    /// Arrays with awkward bit patterns: ±0, subnormals, infinities, NaN payloads, and random values.
    static let arrays: [(name: String, values: [Float])] = {
        let special: [Float] = [0, -0.0, .leastNonzeroMagnitude, -.leastNormalMagnitude, .infinity, -.infinity,
                                Float(bitPattern: 0x7fc0_1234), Float(bitPattern: 0xffa0_0001), .greatestFiniteMagnitude]
        return [("weights", special + (0..<10_000).map { wobble($0, 1) }),
                ("m", (0..<10_009).map { wobble($0, 2) * 1e-3 }),
                ("v", (0..<10_009).map { abs(wobble($0, 3)) * 1e-7 }),
                ("empty", [])]
    }()

    func written() throws -> (dir: String, path: String) {
        let dir = TestSupport.scratchDirectory("state")
        let path = dir + "/state.lcts"
        try TrainingStateFile.write(to: path, metadata: Self.progress, arrays: Self.arrays)
        return (dir, path)
    }

    func read(_ path: String) throws -> TrainingStateContents<TrainingCheckpointInfo<Extra>> {
        try TrainingStateFile.read(path, metadata: TrainingCheckpointInfo<Extra>.self)
    }

    /// The error message `body` throws (a `ModelIOError` naming the file).
    func errorMessage(_ path: String, _ body: () throws -> Void) -> String {
        do { try body(); return "no error" }
        catch let e as ModelIOError { #expect(e.path == path || e.path.hasPrefix(path + " (")); return e.description }
        catch { return "unexpected error type: \(error)" }
    }

    @Test func roundTripIsBitExact() throws {
        let (dir, path) = try written()
        defer { FileOps.remove(dir) }
        let state = try read(path)
        #expect(state.arrayNames == ["weights", "m", "v", "empty"])
        for (name, values) in Self.arrays {
            #expect(try state.array(name, count: values.count).map(\.bitPattern) == values.map(\.bitPattern), "\(name)")
        }
        let p = state.metadata, q = Self.progress
        #expect(p.extra == q.extra && p.optimizer == q.optimizer)
        #expect(p.modelIdentity == q.modelIdentity && p.stagesHash == q.stagesHash && p.stageIndex == q.stageIndex)
        #expect(p.step == q.step && p.tokensSeen == q.tokensSeen && p.optimizerStep == q.optimizerStep)
        #expect(try FileOps.listDirectory(dir) == ["state.lcts"])  // no temporary file left
        // Deterministic bytes: writing the same state again gives the same file.
        let again = dir + "/again.lcts"
        try TrainingStateFile.write(to: again, metadata: Self.progress, arrays: Self.arrays)
        #expect(try FileOps.read(again) == FileOps.read(path))
        try p.checkResumable(modelIdentity: "sha256:abc", stagesHash: "sha256:def", path: path)
        #expect(errorMessage(path) { try p.checkResumable(modelIdentity: "sha256:xyz", stagesHash: "sha256:def", path: path) }
            .contains("is for model sha256:abc, not sha256:xyz"))
        #expect(errorMessage(path) { try p.checkResumable(modelIdentity: "sha256:abc", stagesHash: "sha256:000", path: path) }
            .contains("another stages file"))
    }

    @Test func missingArrayAndWrongCountAreNamed() throws {
        let (dir, path) = try written()
        defer { FileOps.remove(dir) }
        let state = try read(path)
        #expect(errorMessage(path) { _ = try state.array("master") } ==
                "\(path): training state has no array 'master' (it has weights, m, v, empty)")
        #expect(errorMessage(path) { _ = try state.array("m", count: 10) }.contains("array 'm' has 10009 elements, expected 10"))
    }

    /// Rewrites the file at `path` with `edit` applied to its bytes.
    func corrupt(_ path: String, _ edit: (inout [UInt8]) -> Void) throws {
        var bytes = [UInt8](try FileOps.read(path))
        edit(&bytes)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// (offset, byte count) of each zstd frame in a training-state file: the header's, then each array's.
    static func frameOffsets(_ bytes: [UInt8]) -> [(offset: Int, count: Int)] {
        var out = [(offset: Int, count: Int)](), at = 16
        while at + 8 <= bytes.count {
            let n = bytes[at ..< at + 8].reversed().reduce(0) { $0 << 8 | Int($1) }
            out.append((at + 8, n))
            at += 8 + n
        }
        return out
    }

    @Test func corruptFilesGiveClearErrors() throws {
        let (dir, path) = try written()
        defer { FileOps.remove(dir) }
        let good = [UInt8](try FileOps.read(path))
        func check(_ edit: (inout [UInt8]) -> Void, _ expected: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            try corrupt(path) { $0 = good; edit(&$0) }
            let message = errorMessage(path) { _ = try read(path) }
            #expect(message.contains(expected), "\(message)", sourceLocation: sourceLocation)
        }
        try check({ $0[0] = UInt8(ascii: "X") }, "not a training-state file (wrong magic bytes")
        try check({ $0 = Array("{\"step\": 1}".utf8) }, "not a training-state file (wrong magic bytes")
        try check({ $0[8] = 2 }, "training state format version 2; this build reads version 1")
        try check({ $0.removeLast($0.count - 12) }, "truncated training state: 12 bytes, shorter than its 16-byte prefix")
        try check({ $0.removeLast($0.count - 30) }, "truncated training state: the header needs")
        try check({ $0.removeLast(3) }, "truncated training state: array 'empty' needs")
        try check({ $0.removeLast(5000) }, "truncated training state: array 'v' needs")
        try check({ $0.append(0) }, "1 unexpected bytes after the last array")
        // A flipped byte in the middle of the second array's frame: zstd's checksum (or its decoder) catches it.
        let frames = Self.frameOffsets(good)
        let mFrame = frames[2].offset + frames[2].count / 2
        try check({ $0[mFrame] ^= 0x55 }, "corrupt zstd data")
        try check({ $0[mFrame] ^= 0x55 }, "(array 'm')")
        try check({ $0[40] ^= 0x10 }, "(header)")
        // An empty file and a missing one.
        try check({ $0 = [] }, "truncated training state: 0 bytes")
        FileOps.remove(path)
        #expect(errorMessage(path) { _ = try read(path) }.contains("cannot open"))
    }

    @Test func headerOfAnotherShapeIsNamed() throws {
        let (dir, path) = try written()
        defer { FileOps.remove(dir) }
        struct Other: Codable { var learningRateSchedule: Int }
        let message = errorMessage(path) { _ = try TrainingStateFile.read(path, metadata: Other.self) }
        #expect(message.contains("header does not decode: missing key 'learningRateSchedule'"), "\(message)")
    }

    @Test func failedWriteLeavesThePreviousFileAndNoTemporary() throws {
        let (dir, path) = try written()
        defer { FileOps.remove(dir) }
        let before = try FileOps.read(path)
        var bad = Self.progress
        bad.extra.spare = .nan  // JSON cannot hold NaN: encoding fails before anything is written
        #expect(throws: ModelIOError.self) { try TrainingStateFile.write(to: path, metadata: bad, arrays: Self.arrays) }
        #expect(try FileOps.read(path) == before)
        #expect(try FileOps.listDirectory(dir) == ["state.lcts"])
        #expect(throws: ModelIOError.self) {
            try TrainingStateFile.write(to: dir + "/missing-dir/state.lcts", metadata: Self.progress, arrays: Self.arrays)
        }
        #expect(try FileOps.listDirectory(dir) == ["state.lcts"])
    }
}
