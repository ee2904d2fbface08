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
    /// The largest `n >= lo` with `fits(n)`, assuming `fits` is (nearly) monotone decreasing in `n`:
    /// doubles from `hint` to bracket, then bisects. Nil when `fits(lo)` is false.
    public static func largest(lo: Int, hint: Int, cap: Int = 1 << 26, fits: (Int) -> Bool) -> Int? {
        guard fits(lo) else { return nil }
        var good = lo
        var bad = max(hint, lo + 1)
        while bad <= cap && fits(bad) {
            good = bad
            bad = bad &* 2
        }
        if bad > cap { return good }
        while bad - good > 1 {
            let mid = good + (bad - good) / 2
            if fits(mid) { good = mid } else { bad = mid }
        }
        return good
    }
}
