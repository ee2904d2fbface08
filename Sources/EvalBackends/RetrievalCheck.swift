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

    public static func run(modelDirectory: String, lengths: [Int], samples: Int, suite: NIAHSuite? = nil,
                           seed: UInt64 = 42) async throws -> [Row] {
        let lm = try LanguageModel.load(directory: modelDirectory)
        let backend = EngineBackend(lm, model: (modelDirectory as NSString).lastPathComponent)
        let maker = SampleMaker(counter: TokenizerCounter(tokenizer: lm.tokenizer), format: .base, seed: seed)
        let sentences = try suite.map { _ in
            try NIAHSuite.sentences(files: [], essay: EssayGenerator(), minimum: max((lengths.max() ?? 0) / 4, 64))
        }
        var rows: [Row] = []
        for length in lengths {
            var scores: [Double] = []
            for depth in depths(samples: samples) {
                let spec = suite.map { $0.spec(depthPercent: depth, sentences: sentences ?? [], haystack: EssayGenerator.identity) }
                    ?? Passkey.spec(depthPercent: depth)
                for sample in try maker.samples(spec, length: length, count: 1, depth: depth) {
                    let reply = try await backend.complete(CompletionRequest(prompt: sample.prompt, maxTokens: sample.tokensToGenerate))
                    scores.append(Scoring.score(sample.metric, prediction: reply.text, references: sample.outputs))
                }
            }
            rows.append(Row(length: length, accuracy: scores.reduce(0, +) / Double(max(1, scores.count)), samples: scores.count))
        }
        return rows
    }
}
