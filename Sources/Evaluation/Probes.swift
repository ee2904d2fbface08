import Basics
import Foundation

/// Passkey retrieval (Mohtashami & Jaggi, landmark attention; YaRN's `eval/passkey.py`): exact strings, the
/// filler split around the key line, key drawn from 1...50000. Lengths are fitted in **tokens** of the target
/// tokenizer on whole filler units (the original scripts count characters); depth is the filler fraction before the key.
public enum Passkey {
    public static let task = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about the important information there."
    /// One filler unit of the original prompt: its five sentences in order.
    public static let filler = fillerSentences.joined(separator: " ")
    public static let question = "What is the pass key? The pass key is"

    public static func keyLine(_ k: Int) -> String { "The pass key is \(k). Remember it. \(k) is the pass key." }

    /// How the key is drawn.
    public enum Keys: Sendable, Equatable {
        /// Uniform in `1...50000` (the original scripts).
        case standard
        /// `count` distinct decimal digits, the first not 0 (e.g. 5 → 12345 … 98765 without a repeated digit): a toy
        /// model that copies by the previous token cannot tell repeated digits apart.
        case distinctDigits(Int)

        public func draw(_ rng: inout SeededRandom) -> Int {
            switch self {
            case .standard: return rng.int(1...50000)
            case .distinctDigits(let count):
                var digits = Array(0...9)
                rng.shuffle(&digits)
                if digits[0] == 0 { digits.swapAt(0, count < 10 ? count : 1) }
                return digits.prefix(min(max(count, 1), 10)).reduce(0) { $0 * 10 + $1 }
            }
        }

        /// Task name of a spec drawing these keys (sample ids and seeds differ by it).
        var taskName: String {
            switch self {
            case .standard: return "passkey"
            case .distinctDigits(let count): return "passkey-distinct\(count)"
            }
        }
    }

    /// The five sentences of ``filler`` (the original scripts' filler), the units of the ``Layout/shuffled`` layout.
    public static let fillerSentences = ["The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.",
                                         "There and back again."]

    /// How the filler and the key line are laid out. Both use only the words of the original prompt.
    public enum Layout: String, Sendable, Equatable, CaseIterable {
        /// The original prompt: the whole five-sentence ``filler`` repeated (one unit each) around ``keyLine(_:)``,
        /// which states the key twice.
        case landmark
        /// One filler sentence a unit, each drawn at random from ``fillerSentences``, around a key line that states
        /// the key once (`The pass key is K. Remember it.`). A model cannot find the key by its distance from a
        /// fixed pattern here; it has to match the question against the key line — the retrieval that longer
        /// contexts then test (the demo's toy base learns this layout, see `Sources/Demo/Recipe.swift`).
        case shuffled

        /// Suffix of the task name (sample ids and seeds differ by layout).
        var nameSuffix: String { self == .landmark ? "" : "-\(rawValue)" }
    }

    /// The key line of `layout` for key `k`.
    public static func keyLine(_ k: Int, layout: Layout) -> String {
        layout == .landmark ? keyLine(k) : "The pass key is \(k). Remember it."
    }

    /// Passkey prompts with the key at `depthPercent` of the filler units. The key is drawn first from the sample's
    /// RNG, then (``Layout/shuffled``) the filler sentences in order, so `n + 1` units extend the prompt of `n`.
    public static func spec(depthPercent: Double, tokensToGenerate: Int = 10, keys: Keys = .standard,
                            layout: Layout = .landmark) -> TaskSpec {
        TaskSpec(name: keys.taskName + layout.nameSuffix, metric: .passkey, tokensToGenerate: tokensToGenerate,
                 incremental: 1, haystack: "passkey-filler") { n, _, rng in
            let key = keys.draw(&rng)
            let units = fillerUnits(n, layout: layout, &rng)
            let before = Int((Double(n) * depthPercent / 100).rounded())
            let prefix = units[..<before].joined(separator: " ")
            let suffix = units[before...].joined(separator: " ")
            let input = [task, prefix, keyLine(key, layout: layout), suffix, question].joined(separator: "\n")
            let off = task.count + 1 + prefix.count + 1
            return SampleParts(input: input, answerPrefix: "", outputs: [String(key)],
                               actualDepthPercent: Double(off) / Double(input.count) * 100)
        }
    }

    /// `n` filler units of `layout`: ``filler`` each (landmark) or sentences drawn from `rng` (shuffled).
    static func fillerUnits(_ n: Int, layout: Layout, _ rng: inout SeededRandom) -> [String] {
        switch layout {
        case .landmark: return Array(repeating: filler, count: n)
        case .shuffled: return (0..<n).map { _ in fillerSentences[rng.int(0...(fillerSentences.count - 1))] }
        }
    }
}

/// Needle-in-a-haystack grid (Kamradt; v2 prompt `context\n\nquestion`), single or multi-needle, over a
/// haystack of essay-like sentences or user text files. The suite (needles, question, expected fragments)
/// is data: `eval/niah.json`.
public struct NIAHSuite: Codable, Sendable {
    public var name: String
    public var needles: [String]
    public var question: String
    /// Lower-cased fragments that must all appear in the answer (score = fraction found).
    public var expected: [String]
    public var tokensToGenerate: Int
    public var lengths: [Int]
    public var depths: [Double]

    enum CodingKeys: String, CodingKey {
        case name, needles, question, expected, lengths, depths
        case tokensToGenerate = "tokens_to_generate"
    }

    public static func load(path: String) throws -> NIAHSuite {
        do {
            let s = try JSONDecoder().decode(NIAHSuite.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
            guard !s.needles.isEmpty, !s.expected.isEmpty else { throw EvalError("needles and expected must be non-empty") }
            guard s.needles.count <= RulerConfig.maxTaskCount else { throw EvalError("at most \(RulerConfig.maxTaskCount) needles") }
            for l in s.lengths where !(1...EvalOutputs.maxLength).contains(l) {
                throw EvalError("length \(l) is outside 1…\(EvalOutputs.maxLength)")
            }
            guard Set(s.lengths).count == s.lengths.count else { throw EvalError("lengths lists a length twice") }
            for d in s.depths where !(d.isFinite && (0...100).contains(d)) { throw EvalError("depth \(d) is outside 0…100") }
            guard (1...4096).contains(s.tokensToGenerate) else { throw EvalError("tokens_to_generate must be in 1…4096, got \(s.tokensToGenerate)") }
            return s
        } catch let e as EvalError { throw EvalError("\(path): \(e.message)") } catch {
            throw EvalError("\(path): invalid NIAH suite: \(error)")
        }
    }

    /// Haystack sentences: from user text files (split after `.`, `?`, `!`), else the essay generator.
    public static func sentences(files: [String], essay: EssayGenerator, minimum: Int) throws -> [String] {
        if files.isEmpty { return essay.sentences(minimum) }
        var text = ""
        for f in files.sorted() {
            guard let t = try? String(contentsOfFile: f, encoding: .utf8) else { throw EvalError("\(f): cannot read haystack text (UTF-8)") }
            text += t + " "
        }
        var out: [String] = [], cur = ""
        for ch in text {
            cur.append(ch == "\n" ? " " : ch)
            if ch == "." || ch == "?" || ch == "!" {
                let s = cur.trimmingCharacters(in: .whitespaces)
                if !s.isEmpty { out.append(s) }
                cur = ""
            }
        }
        if !cur.trimmingCharacters(in: .whitespaces).isEmpty { out.append(cur.trimmingCharacters(in: .whitespaces)) }
        guard !out.isEmpty else { throw EvalError("haystack files contain no text") }
        var all = out
        while all.count < minimum { all += out }   // repeated until long enough (Kamradt)
        return all
    }

    /// The cell at `depthPercent`: needle k at `depth + k * (100 - depth) / N` percent of the sentences.
    public func spec(depthPercent: Double, sentences: [String], haystack: String) -> TaskSpec {
        let needles = self.needles, question = self.question, expected = self.expected
        return TaskSpec(name: name, metric: .stringMatchAll, tokensToGenerate: tokensToGenerate, incremental: 1,
                        haystack: haystack) { n, _, _ in
            var sents = Array(sentences.prefix(n))
            let interval = (100 - depthPercent) / Double(needles.count)
            var firstAt = 0
            for (k, needle) in needles.enumerated() {
                let d = depthPercent + Double(k) * interval
                let pos = d >= 100 ? sents.count : Int(Double(sents.count) * d / 100)
                sents.insert(needle, at: min(pos, sents.count))
                if k == 0 { firstAt = pos }
            }
            let context = sents.joined(separator: " ")
            let before = sents.prefix(firstAt).joined(separator: " ").count
            let input = context + "\n\n" + question
            return SampleParts(input: input, answerPrefix: "", outputs: expected,
                               actualDepthPercent: context.isEmpty ? 0 : Double(before) / Double(context.count) * 100)
        }
    }
}
