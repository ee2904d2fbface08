/// Counts the tokens a model sees for a complete prompt string.
///
/// Implemented over the target model's own tokenizer (`tokenizer.json`) by the CLI; the count must be the one
/// the backend will feed the model (special tokens included when the tokenizer adds them).
public protocol TokenCounting: Sendable {
    func tokenCount(_ text: String) -> Int
}

/// A whitespace word counter: one token per whitespace-separated word. For tests of the fitting logic only.
public struct WordTokenCounter: TokenCounting {
    public init() {}
    public func tokenCount(_ text: String) -> Int {
        var n = 0, inWord = false
        for b in text.utf8 {
            let space = b == 32 || b == 10 || b == 9 || b == 13
            if !space && !inWord { n &+= 1 }
            inWord = !space
        }
        return n
    }
}

/// How a task's text and answer prefix become the string sent to the model.
public struct PromptFormat: Sendable {
    public let name: String
    public let render: @Sendable (_ input: String, _ answerPrefix: String) -> String

    public init(name: String, render: @escaping @Sendable (String, String) -> String) {
        self.name = name
        self.render = render
    }

    /// RULER's `base` template: `input + answer_prefix`.
    public static let base = PromptFormat(name: "base") { $0 + $1 }

    /// A chat template rendered around the task text as one user message; the answer prefix follows the
    /// generation prompt, i.e. it opens the assistant turn (RULER's placement).
    public static func chat(name: String, wrap: @escaping @Sendable (String) -> String) -> PromptFormat {
        PromptFormat(name: name) { wrap($0) + $1 }
    }
}

/// Budget search shared by every generator.
public enum LengthFit {
    /// The largest `n >= lo` with `count(n) <= budget`, for a `count` that grows (nearly) monotonically and
    /// (nearly) linearly with `n` — the token count of a prompt holding `n` haystack units. Each probe narrows a
    /// bracket [fits, does not fit]; the next probe is the linear interpolation of the budget crossing, taken just
    /// below it after a miss and just above it after a fit (so the crossing is usually bracketed to one unit in
    /// three to five probes), with a bisection step whenever interpolation fails to halve the bracket twice in a
    /// row. Before a bracket exists, it extrapolates from the probes so far with a doubling safety margin.
    /// Nil when `count(lo) > budget`. Deterministic: the same `count` gives the same probes.
    public static func largest(lo: Int, budget: Int, hint: Int, cap: Int = 1 << 26, count: (Int) -> Int) -> Int? {
        let c0 = count(lo)
        guard c0 <= budget else { return nil }
        var good = lo, cGood = c0
        var bad: Int? = nil, cBad = 0
        var next = min(max(hint, lo + 1), cap)
        var margin = 1
        var slowSteps = 0
        while true {
            if let b = bad, b - good <= 1 { return good }
            if bad == nil && good >= cap { return good }
            next = min(max(next, good + 1), (bad ?? (cap + 1)) - 1)
            let width = (bad ?? Int.max) - good
            let c = count(next)
            let fit = c <= budget
            if fit { good = next; cGood = c } else { bad = next; cBad = c }
            if let b = bad {
                if b - good <= 1 { return good }
                slowSteps = (b - good) * 2 > width ? slowSteps + 1 : 0
                if slowSteps >= 2 {
                    next = good + (b - good) / 2
                    slowSteps = 0
                    continue
                }
                let est = Double(good) + Double(budget - cGood) * Double(b - good) / Double(max(cBad - cGood, 1))
                next = fit ? Int(est.rounded(.up)) + 1 : Int(est.rounded(.down))
            } else {
                // No upper bound yet: extrapolate the per-unit cost, overshoot by a margin that doubles each time.
                let slope = Double(cGood - c0) / Double(max(good - lo, 1))
                if slope <= 0 {
                    next = good &* 2
                } else {
                    next = good + Int((Double(budget - cGood) / slope).rounded(.up)) + margin
                    margin &*= 2
                }
            }
        }
    }
}
