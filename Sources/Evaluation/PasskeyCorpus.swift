import Basics
import Foundation

/// A supervised training corpus of passkey prompts (``Passkey``'s exact strings, in either ``Passkey/Layout``): each record is the prompt the
/// evaluation sends (plain, no chat template) and the completion `" KEY"`. Deterministic from the seed.
///
/// Record `i`: its own RNG from `(seed, "passkey-corpus", i)`; a depth uniform in 0…100 %; a filler count uniform
/// in `0…maxUnits`, where `maxUnits` is the most filler units whose prompt and completion fit `maxTokens` (so token
/// lengths are close to uniform between the empty-filler prompt and `maxTokens`); the key from `keys`.
public struct PasskeyCorpus: Sendable {
    public struct Record: Sendable, Equatable, Codable {
        public var prompt: String
        public var completion: String
    }

    public let counter: any TokenCounting
    public let keys: Passkey.Keys
    public let layout: Passkey.Layout
    public let seed: UInt64

    public init(counter: any TokenCounting, keys: Passkey.Keys, layout: Passkey.Layout = .landmark, seed: UInt64) {
        self.counter = counter
        self.keys = keys
        self.layout = layout
        self.seed = seed
    }

    /// The largest filler count whose longest record (prompt + completion + 1 token for the end of document) fits
    /// `maxTokens`; `nil` when even the empty-filler prompt does not.
    public func maxUnits(maxTokens: Int) -> Int? {
        let probeKey = keys == .standard ? 50000 : Int(String("9876543210".prefix(keyDigits)))!
        let fits = { (n: Int) -> Bool in
            var rng = SeededRandom(["\(self.seed)", "passkey-corpus-probe"])
            let filler = Passkey.fillerUnits(n, layout: self.layout, &rng).joined(separator: " ")
            let input = [Passkey.task, filler, Passkey.keyLine(probeKey, layout: self.layout), "", Passkey.question].joined(separator: "\n")
            return self.counter.tokenCount(input + " \(probeKey)") + 1 <= maxTokens
        }
        guard fits(0) else { return nil }
        var low = 0, high = 1
        while fits(high) { low = high; high *= 2 }
        while high - low > 1 {
            let mid = (low + high) / 2
            if fits(mid) { low = mid } else { high = mid }
        }
        return low
    }

    var keyDigits: Int {
        if case .distinctDigits(let count) = keys { return count }
        return 5
    }

    /// `count` records with prompts and completions of at most `maxTokens` tokens together.
    public func records(count: Int, maxTokens: Int) throws -> [Record] {
        guard let units = maxUnits(maxTokens: maxTokens) else {
            throw EvalError("passkey corpus: \(maxTokens) tokens cannot hold even a prompt without filler")
        }
        return (0..<count).map { record(index: $0, maxUnits: units, maxTokens: maxTokens) }
    }

    /// Record `index`: drawn as described above, then the filler shrunk unit by unit while it does not fit (the
    /// probe in ``maxUnits(maxTokens:)`` uses one key; another key can take more tokens).
    func record(index: Int, maxUnits: Int, maxTokens: Int) -> Record {
        var rng = SeededRandom(["\(seed)", "passkey-corpus", "\(index)"])
        let depth = rng.uniform() * 100
        var units = rng.int(0...maxUnits)
        let state = rng
        while true {
            var r = state
            let parts = Passkey.spec(depthPercent: depth, keys: keys, layout: layout).build(units, index, &r)
            let record = Record(prompt: parts.input, completion: " " + parts.outputs[0])
            if units == 0 || counter.tokenCount(record.prompt + record.completion) + 1 <= maxTokens { return record }
            units -= 1
        }
    }

    /// Records as JSONL (`{"prompt": …, "completion": …}` per line), the supervised format of `longctx train`.
    public static func jsonl(_ records: [Record]) -> String {
        records.map { r in
            JSONValue.object(JSONObject([("prompt", .string(r.prompt)), ("completion", .string(r.completion))])).serialized(indent: nil)
        }.joined(separator: "\n") + "\n"
    }
}
