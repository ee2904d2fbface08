import Basics

/// One prepared evaluation prompt with its references and fitted length.
public struct EvalSample: Codable, Sendable, Equatable {
    /// Stable identity used for resuming: `task/length/index` (+ `/d<depth>` for depth grids).
    public var id: String
    public var task: String
    /// Target token budget (prompt + tokens to generate).
    public var length: Int
    public var index: Int
    public var depthPercent: Double?
    /// Where the (first) needle really starts, as a percentage of the context's characters.
    public var actualDepthPercent: Double?
    /// Task text without the answer prefix.
    public var input: String
    public var answerPrefix: String
    /// The exact string sent to the model (prompt format applied).
    public var prompt: String
    public var outputs: [String]
    public var metric: Metric
    public var tokensToGenerate: Int
    /// Tokens of `prompt` counted with the target tokenizer.
    public var promptTokens: Int
    /// Haystack units (lines, sentences, words, documents) in the context.
    public var units: Int
    public var haystack: String
}

/// What a generator returns for a given number of haystack units.
public struct SampleParts: Sendable {
    public var input: String
    public var answerPrefix: String
    public var outputs: [String]
    public var actualDepthPercent: Double?
    public init(input: String, answerPrefix: String, outputs: [String], actualDepthPercent: Double? = nil) {
        self.input = input
        self.answerPrefix = answerPrefix
        self.outputs = outputs
        self.actualDepthPercent = actualDepthPercent
    }
}

/// A task at one length: how to build a sample from `units` haystack units and a random source.
public struct TaskSpec: Sendable {
    public var name: String
    public var metric: Metric
    public var tokensToGenerate: Int
    /// RULER's `incremental`: units dropped per retry when a sample does not fit.
    public var incremental: Int
    public var haystack: String
    public var build: @Sendable (_ units: Int, _ index: Int, _ rng: inout SeededRandom) -> SampleParts

    public init(name: String, metric: Metric, tokensToGenerate: Int, incremental: Int, haystack: String,
                build: @escaping @Sendable (Int, Int, inout SeededRandom) -> SampleParts) {
        self.name = name
        self.metric = metric
        self.tokensToGenerate = tokensToGenerate
        self.incremental = incremental
        self.haystack = haystack
        self.build = build
    }
}

/// Turns task specs into length-fitted samples.
public struct SampleMaker: Sendable {
    public let counter: any TokenCounting
    public let format: PromptFormat
    public let seed: UInt64

    public init(counter: any TokenCounting, format: PromptFormat, seed: UInt64 = 42) {
        self.counter = counter
        self.format = format
        self.seed = seed
    }

    func rng(_ spec: TaskSpec, _ length: Int, _ index: Int, _ depth: Double?) -> SeededRandom {
        SeededRandom(["\(seed)", spec.name, "\(length)", "\(index)", depth.map { "\($0)" } ?? "-"])
    }

    func tokens(_ p: SampleParts) -> Int { counter.tokenCount(format.render(p.input, p.answerPrefix)) }

    /// `count` samples of `spec` whose prompt tokens + tokens to generate fit in `length`.
    /// The unit count is found once by bisection on sample 0 (RULER's search), then each sample steps down by
    /// `incremental` units while it does not fit (RULER's per-sample retry).
    ///
    /// Lazily: only samples whose id `wanted` accepts are built, at most `limit` of them (nothing at all — not even
    /// the fitting — when none is wanted), so a resumed or `--limit`ed run never prepares prompts it will not send.
    public func samples(_ spec: TaskSpec, length: Int, count: Int, depth: Double? = nil,
                        idSuffix: String = "", wanted: (String) -> Bool = { _ in true },
                        limit: Int = .max) throws -> [EvalSample] {
        var todo: [Int] = []
        for i in 0..<count {
            if todo.count >= limit { break }
            if wanted(Self.sampleID(spec.name, length, i, depth) + idSuffix) { todo.append(i) }
        }
        guard !todo.isEmpty else { return [] }
        let budget = length - spec.tokensToGenerate
        let probeCount = { (n: Int) -> Int in
            var r = self.rng(spec, length, 0, depth)
            return self.tokens(spec.build(n, 0, &r))
        }
        // Estimate tokens per unit to bracket the search: grow the probe until it adds enough tokens to measure
        // (a task's first units can add none, e.g. words merged into one token), and never start the search
        // above 2 units per budget token — every RULER unit costs at least one token.
        var r0 = rng(spec, length, 0, depth)
        let t0 = tokens(spec.build(0, 0, &r0))
        var small = max(spec.incremental, 1)
        var t1 = t0
        for _ in 0..<12 {
            var r1 = rng(spec, length, 0, depth)
            t1 = tokens(spec.build(small, 0, &r1))
            if t1 - t0 >= 64 || t1 > budget / 4 { break }
            small *= 4
        }
        let perUnit = max(Double(t1 - t0) / Double(small), 0.5)
        let hint = min(max(Int(Double(budget - t0) / perUnit), 1), 2 * max(budget, 1))
        guard let units = LengthFit.largest(lo: 0, budget: budget, hint: hint, count: probeCount) else {
            throw EvalError("\(spec.name): a \(length)-token budget cannot hold even an empty context (\(t0) prompt tokens + \(spec.tokensToGenerate) to generate)")
        }
        var out: [EvalSample] = []
        for i in todo {
            var n = units
            while true {
                var r = rng(spec, length, i, depth)
                let parts = spec.build(n, i, &r)
                let prompt = format.render(parts.input, parts.answerPrefix)
                let t = counter.tokenCount(prompt)
                if t <= budget || n == 0 {
                    guard t <= budget else {
                        throw EvalError("\(spec.name) sample \(i): does not fit \(length) tokens even with an empty context")
                    }
                    out.append(EvalSample(id: Self.sampleID(spec.name, length, i, depth) + idSuffix, task: spec.name, length: length, index: i,
                                          depthPercent: depth, actualDepthPercent: parts.actualDepthPercent,
                                          input: parts.input, answerPrefix: parts.answerPrefix, prompt: prompt,
                                          outputs: parts.outputs, metric: spec.metric,
                                          tokensToGenerate: spec.tokensToGenerate, promptTokens: t, units: n,
                                          haystack: spec.haystack))
                    break
                }
                n = max(0, n - max(spec.incremental, 1))
            }
        }
        return out
    }
}

extension SampleMaker {
    /// The id of sample `index` of task `task` at `length` (and `depth`): `task/length/index[/dDEPTH]`.
    public static func sampleID(_ task: String, _ length: Int, _ index: Int, _ depth: Double?) -> String {
        "\(task)/\(length)/\(index)" + (depth.map { "/d\(formatDepth($0))" } ?? "")
    }
}

func formatDepth(_ d: Double) -> String {
    d == d.rounded() ? String(Int(d)) : String(d)
}

/// Python `str.format` for named fields: one pass, so braces inside substituted values are left alone.
func pyFormat(_ template: String, _ fields: [String: String]) -> String {
    var out = ""
    var i = template.startIndex
    while i < template.endIndex {
        let c = template[i]
        if c == "{", let close = template[i...].firstIndex(of: "}") {
            let name = String(template[template.index(after: i)..<close])
            if let v = fields[name] {
                out += v
                i = template.index(after: close)
                continue
            }
        }
        out.append(c)
        i = template.index(after: i)
    }
    return out
}
