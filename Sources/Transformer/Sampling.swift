import Basics
import Foundation
import ModelIO

/// Decoding settings, named as OpenAI's and transformers' `generate` name them.
public struct GenerationParameters: Sendable, Codable, Equatable {
    /// Most tokens to generate.
    public var maxTokens: Int
    /// 0 selects greedy decoding (argmax); otherwise logits are divided by it before sampling.
    public var temperature: Float
    /// Keep only the `topK` most likely tokens (0: all).
    public var topK: Int
    /// Keep the smallest set of most likely tokens whose probability reaches `topP` (1: all).
    public var topP: Float
    /// Seed of the sampling random stream (SplitMix64): same seed, same tokens.
    public var seed: UInt64
    /// Generation stops when the decoded text contains one of these; the text is cut before it.
    public var stopStrings: [String]
    /// Extra stop token ids, besides the tokenizer's end-of-sequence ids.
    public var stopTokenIds: [Int]

    public init(maxTokens: Int = 128, temperature: Float = 0, topK: Int = 0, topP: Float = 1, seed: UInt64 = 0,
                stopStrings: [String] = [], stopTokenIds: [Int] = []) {
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
        self.stopStrings = stopStrings
        self.stopTokenIds = stopTokenIds
    }
}

/// Picks the next token from a logit row, following transformers' order of logits warpers:
/// temperature, then top-k, then top-p (`TopPLogitsWarper`: drop tokens whose cumulative probability in
/// ascending order is ≤ 1 − top_p, always keeping the most likely one), then a categorical draw.
/// Greedy (`temperature == 0`) is `argmax`, first index on ties (as `torch.argmax`).
public struct Sampler: Sendable {
    public let parameters: GenerationParameters
    private var rng: SeededRandom

    public init(_ parameters: GenerationParameters) {
        self.parameters = parameters
        rng = SeededRandom(seed: parameters.seed)
    }

    public mutating func next(_ logits: ArraySlice<Float>) -> Int {
        let base = logits.startIndex
        if parameters.temperature <= 0 {
            var best = base, bestValue = -Float.infinity
            for i in logits.indices where logits[i] > bestValue { best = i; bestValue = logits[i] }
            return best - base
        }
        let kept = candidates(logits)
        var u = rng.uniform()
        for c in kept {
            u -= c.probability
            if u < 0 { return c.id }
        }
        return kept[kept.count - 1].id
    }

    /// The tokens sampling may pick after temperature, top-k and top-p, most likely first, with their
    /// renormalised probabilities (`temperature > 0`).
    public func candidates(_ logits: ArraySlice<Float>) -> [(id: Int, probability: Double)] {
        let base = logits.startIndex
        let temperature = parameters.temperature > 0 ? parameters.temperature : 1
        var sorted = logits.indices.map { (id: $0 - base, logit: logits[$0] / temperature) }
        sorted.sort { $0.logit > $1.logit || ($0.logit == $1.logit && $0.id < $1.id) }
        if parameters.topK > 0 && parameters.topK < sorted.count {
            sorted.removeLast(sorted.count - parameters.topK)
        }
        let mx = sorted[0].logit
        var probs = sorted.map { Double(Foundation.exp($0.logit - mx)) }
        var total = probs.reduce(0, +)
        if parameters.topP < 1 {
            // Ascending cumulative mass: drop while it stays ≤ 1 − top_p; the most likely token always stays.
            var cumulative = 0.0
            var keep = probs.count
            for i in stride(from: probs.count - 1, through: 1, by: -1) {
                cumulative += probs[i] / total
                if cumulative <= Double(1 - parameters.topP) { keep = i } else { break }
            }
            probs.removeLast(probs.count - keep)
            sorted.removeLast(sorted.count - keep)
            total = probs.reduce(0, +)
        }
        return zip(sorted, probs).map { (id: $0.id, probability: $1 / total) }
    }
}

/// Why generation ended: a stop token or stop string (`stop`), or `maxTokens` reached (`length`).
public enum FinishReason: String, Sendable, Codable { case stop, length }

/// Token-level result of ``TransformerModel/generate(promptIds:parameters:stopTokenIds:cache:onToken:)``.
public struct TokenGeneration: Sendable {
    public var promptIds: [Int]
    public var generatedIds: [Int]
    public var finishReason: FinishReason
    /// Wall time of the prompt's forward pass (first token's logits included).
    public var prefillSeconds: Double
    /// Wall time of the remaining steps.
    public var decodeSeconds: Double
    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptIds.count) / prefillSeconds : 0 }
    /// Decode rate over the tokens produced after the first.
    public var decodeTokensPerSecond: Double {
        decodeSeconds > 0 ? Double(max(0, generatedIds.count - 1)) / decodeSeconds : 0
    }
}

extension TransformerModel {
    /// Tokens generation may produce: `maxTokens` capped at the model's context, so a huge request never sizes
    /// a cache beyond what the model can attend to.
    public func generationBudget(_ maxTokens: Int) -> Int {
        min(max(maxTokens, 0), configuration.contextLength ?? (1 << 20))
    }

    /// `positions` if a key/value cache that large fits in memory (see ``TransformerConfiguration/checkedCacheCapacity(_:)``).
    public func checkedCacheCapacity(_ positions: Int) throws -> Int { try configuration.checkedCacheCapacity(positions) }

    /// Generates up to `parameters.maxTokens` tokens after `promptIds`. `onToken` sees each new id (the stop
    /// token included) and returns `false` to stop (a stop string matched). Stop tokens end generation and are
    /// kept in `generatedIds`, as transformers does. (A ``TokenStepper`` run to the end, the prompt in one call.)
    public func generate(promptIds: [Int], parameters: GenerationParameters, stopTokenIds: Set<Int>,
                         cache: KVCache? = nil, onToken: (Int) throws -> Bool = { _ in true }) throws -> TokenGeneration {
        var stepper = try TokenStepper(model: self, promptIds: promptIds, parameters: parameters,
                                       stopTokenIds: stopTokenIds, cache: cache)
        while !stepper.isFinished { try stepper.step(self, onToken: onToken) }
        return stepper.result
    }
}

/// One sequence's generation, advanced a step at a time — a chunk of the prompt, or one new token — so a scheduler
/// can interleave several sequences on one model (each has its own ``KVCache``; the model runs one forward call at
/// a time). Run to the end it computes exactly ``TransformerModel/generate(promptIds:parameters:stopTokenIds:cache:onToken:)``:
/// `logits = forward(prompt)`, then per step sample an id, report it, stop on a stop id / `false` / the budget,
/// else `logits = forward([id])`.
public struct TokenStepper: Sendable {
    public let promptIds: [Int]
    public private(set) var generatedIds: [Int] = []
    /// nil while generating.
    public private(set) var finishReason: FinishReason?
    let stopTokenIds: Set<Int>
    let budget: Int
    let cache: KVCache
    /// Prompt tokens per forward call during prefill.
    let chunk: Int
    private var prefilled = 0
    private var logits: [Float] = []
    private var sampler: Sampler
    private var prefillTime = Duration.zero, decodeTime = Duration.zero

    /// `prefillChunk`: prompt tokens per step (nil: the whole prompt in one step; give a chunk only where
    /// ``TransformerModel/chunkedPrefillIsExact``). The cache (prompt + `maxTokens`, capped at the context) is
    /// allocated here unless given.
    public init(model: TransformerModel, promptIds: [Int], parameters: GenerationParameters, stopTokenIds: Set<Int>,
                cache: KVCache? = nil, prefillChunk: Int? = nil) throws {
        guard !promptIds.isEmpty else { throw EngineError("the prompt has no tokens") }
        guard parameters.maxTokens >= 0 else { throw EngineError("max tokens must be >= 0, got \(parameters.maxTokens)") }
        self.promptIds = promptIds
        self.stopTokenIds = stopTokenIds
        budget = model.generationBudget(parameters.maxTokens)
        self.cache = try cache ?? model.makeCache(capacity: model.checkedCacheCapacity(promptIds.count + max(budget, 1)))
        chunk = max(1, prefillChunk ?? promptIds.count)
        sampler = Sampler(parameters)
    }

    public var isFinished: Bool { finishReason != nil }
    /// Whether the prompt has been run (generation proper has begun).
    public var isPrefilled: Bool { prefilled == promptIds.count }
    /// Tokens still to run: the prompt's not yet prefilled plus the generation budget left (`maxTokens`, capped at
    /// the context; an upper bound, as a stop may come sooner); 0 once finished. A scheduler's measure of remaining work.
    public var remainingTokens: Int {
        finishReason == nil ? promptIds.count - prefilled + max(0, budget - generatedIds.count) : 0
    }

    /// One step: the next prompt chunk, or one token (sampled from the last logits, passed to `onToken`, then run
    /// unless it ends generation). Does nothing once finished.
    public mutating func step(_ model: TransformerModel, onToken: (Int) throws -> Bool) throws {
        guard finishReason == nil else { return }
        let clock = ContinuousClock()
        let t0 = clock.now
        if prefilled < promptIds.count {
            let n = min(chunk, promptIds.count - prefilled)
            let last = prefilled + n == promptIds.count
            logits = try model.forward(Array(promptIds[prefilled..<(prefilled + n)]), cache: cache, logits: last ? .last : .none)
            prefilled += n
            prefillTime += clock.now - t0
            if last && budget == 0 { finishReason = .length }
            return
        }
        defer { decodeTime += clock.now - t0 }
        let id = sampler.next(logits[...])
        generatedIds.append(id)
        let keepGoing = try onToken(id)
        if stopTokenIds.contains(id) || !keepGoing { finishReason = .stop; return }
        if generatedIds.count == budget { finishReason = .length; return }
        logits = try model.forward([id], cache: cache, logits: .last)
    }

    /// What was generated so far (finish reason `length` while unfinished).
    public var result: TokenGeneration {
        func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
        return TokenGeneration(promptIds: promptIds, generatedIds: generatedIds, finishReason: finishReason ?? .length,
                               prefillSeconds: seconds(prefillTime), decodeSeconds: seconds(decodeTime))
    }
}
