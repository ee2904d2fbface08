import Evaluation
import Foundation
import Tokenizers
import Transformer

/// A short retrieval check of a model directory on the built-in engine, as a training stage ends: at each length,
/// `samples` passkey prompts (or NIAH prompts from `suite`) with the key at depths spread evenly from 0 to 100 %,
/// prompted without a chat template and scored exactly as `longctx eval` scores them.
public enum RetrievalCheck {
    public struct Row: Sendable, Equatable {
        public var length: Int
        /// Mean score in 0…1.
        public var accuracy: Double
        public var samples: Int
    }

    /// The depths of `samples` prompts: evenly spaced over 0…100 % (one prompt: 50 %).
    public static func depths(samples: Int) -> [Double] {
        samples == 1 ? [50] : (0..<samples).map { Double($0) * 100 / Double(samples - 1) }
    }

    /// Accuracy per length (see ``results(modelDirectory:lengths:samples:perDepth:suite:seed:keys:layout:progress:)``).
    public static func run(modelDirectory: String, lengths: [Int], samples: Int, suite: NIAHSuite? = nil,
                           seed: UInt64 = 42, keys: Passkey.Keys = .standard) async throws -> [Row] {
        let results = try await results(modelDirectory: modelDirectory, lengths: lengths, samples: samples,
                                        suite: suite, seed: seed, keys: keys)
        return rows(results, lengths: lengths)
    }

    /// Mean score per length of `results`.
    public static func rows(_ results: [SampleResult], lengths: [Int]) -> [Row] {
        lengths.map { length in
            let scores = results.filter { $0.length == length }.map { $0.score ?? 0 }
            return Row(length: length, accuracy: scores.reduce(0, +) / Double(max(1, scores.count)), samples: scores.count)
        }
    }

    /// Every scored prompt: per length, `samples` depths evenly spread over 0…100 % and `perDepth` prompts at each
    /// (their own keys); `keys` and `layout` pick the passkeys and the prompt layout (a toy model trained on
    /// distinct-digit keys in the shuffled layout is checked on those).
    /// `progress` sees each result as it is scored.
    public static func results(modelDirectory: String, lengths: [Int], samples: Int, perDepth: Int = 1,
                               suite: NIAHSuite? = nil, seed: UInt64 = 42, keys: Passkey.Keys = .standard,
                               layout: Passkey.Layout = .landmark,
                               progress: (SampleResult) -> Void = { _ in }) async throws -> [SampleResult] {
        let lm = try LanguageModel.load(directory: modelDirectory)
        // One prompt at a time, prefilled in the model's own chunks (the serving default of 128 tokens a step, there so
        // that a long prompt does not hold up others, makes every matrix product 128 rows tall).
        let backend = EngineBackend(lm, model: (modelDirectory as NSString).lastPathComponent, maxActive: 1,
                                    prefillChunk: lm.model.prefillChunk)
        let maker = SampleMaker(counter: TokenizerCounter(tokenizer: lm.tokenizer), format: .base, seed: seed)
        let sentences = try suite.map { _ in
            try NIAHSuite.sentences(files: [], essay: EssayGenerator(), minimum: max((lengths.max() ?? 0) / 4, 64))
        }
        var results: [SampleResult] = []
        for length in lengths {
            for depth in depths(samples: samples) {
                let spec = suite.map { $0.spec(depthPercent: depth, sentences: sentences ?? [], haystack: EssayGenerator.identity) }
                    ?? Passkey.spec(depthPercent: depth, keys: keys, layout: layout)
                for sample in try maker.samples(spec, length: length, count: perDepth, depth: depth) {
                    let started = Date()
                    let reply = try await backend.complete(CompletionRequest(prompt: sample.prompt, maxTokens: sample.tokensToGenerate))
                    let result = SampleResult(sample: sample, prediction: reply.text, servedPromptTokens: nil, error: nil,
                                              attempts: 1, seconds: Date().timeIntervalSince(started))
                    results.append(result)
                    progress(result)
                }
            }
        }
        return results
    }
}
