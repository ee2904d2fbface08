import Basics

/// A licence-clean, essay-like haystack: seeded sentences assembled from LongContext's own word lists and
/// sentence patterns (no third-party prose). Used where RULER uses Paul Graham essays and Kamradt's NIAH
/// uses `PaulGrahamEssays/`; its identity (`EssayGenerator.identity`) is recorded in every result.
public struct EssayGenerator: Sendable {
    public static let identity = "longctx-essay-v1"

    public let seed: UInt64
    public init(seed: UInt64 = 7) { self.seed = seed }

    private static let patterns: [String] = [
        "The {adj} {noun} would {verb} the {noun} before the {adj} {noun} could {verb} it.",
        "Most people who {verb} a {noun} never notice how {adj} the {noun} really is.",
        "In the {adj} years, every {noun} was expected to {verb} at least one {noun}.",
        "It is easier to {verb} a {adj} {noun} than to explain why the {noun} matters.",
        "When the {noun} seemed {adj}, the best thing to do was to {verb} the {noun} again.",
        "A {adj} {noun} tends to {verb} slowly, and that is usually a good sign.",
        "Nobody planned for the {noun} to {verb}, but the {adj} {noun} made it inevitable.",
        "If you want to {verb} something {adj}, start with a {noun} and a {noun}.",
        "The question is not whether the {noun} will {verb}, but whether it stays {adj}.",
        "Over time the {adj} {noun} learned to {verb} the {noun} without any help.",
        "Some {noun}s are {adj} by nature; others become {adj} because they {verb} too often.",
        "What surprised me most was how {adj} the {noun} looked after we tried to {verb} it.",
    ]

    /// The first `count` sentences (deterministic in `seed`).
    public func sentences(_ count: Int) -> [String] {
        var rng = SeededRandom(seed: seed)
        var out: [String] = []
        out.reserveCapacity(count)
        for _ in 0..<count { out.append(Self.sentence(&rng)) }
        return out
    }

    static func sentence(_ rng: inout SeededRandom) -> String {
        let p = rng.choice(patterns)
        var s = ""
        var rest = Substring(p)
        while let open = rest.firstIndex(of: "{") {
            s += rest[..<open]
            let close = rest[open...].firstIndex(of: "}")!
            switch rest[rest.index(after: open)..<close] {
            case "adj": s += rng.choice(WordLists.adjectives)
            case "noun": s += rng.choice(WordLists.nouns)
            default: s += rng.choice(WordLists.verbs)
            }
            rest = rest[rest.index(after: close)...]
        }
        s += rest
        return s
    }

    /// Paragraph text of the first `count` sentences (5 sentences per paragraph, blank line between).
    public func text(sentences count: Int) -> String {
        let ss = sentences(count)
        var paras: [String] = []
        var i = 0
        while i < ss.count {
            paras.append(ss[i..<min(i + 5, ss.count)].joined(separator: " "))
            i += 5
        }
        return paras.joined(separator: "\n\n")
    }
}
