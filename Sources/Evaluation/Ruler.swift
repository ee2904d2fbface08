import Basics
import Foundation

/// RULER's synthetic tasks (NVIDIA/RULER @ c3f5e3b, `scripts/data/synthetic/*.py`) as `TaskSpec`s.
/// Templates, answer prefixes, needle formats, counts, few-shot construction and fitting units follow RULER;
/// randomness comes from `SeededRandom` and words from `WordLists` (so keys/values differ from RULER's files).
public struct RulerSuite: Sendable {
    public static let noiseLine = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."

    public let config: RulerConfig
    public let essay: EssayGenerator
    /// QA datasets by RULER dataset name (`squad`, `hotpotqa`), supplied by the user.
    public var qa: [String: QADataset]

    public init(config: RulerConfig, essay: EssayGenerator = EssayGenerator(), qa: [String: QADataset] = [:]) {
        self.config = config
        self.essay = essay
        self.qa = qa
    }

    /// The spec of `task` at `length`. vt's few-shot example is fitted with `maker` (500 tokens, as RULER).
    public func spec(_ task: String, length: Int, maker: SampleMaker) throws -> TaskSpec {
        let (t, fam) = try config.family(of: task)
        let a = t.args
        switch t.family {
        case "niah": return try niah(task, a, fam, length)
        case "variable_tracking": return try variableTracking(task, a, fam, length, maker)
        case "common_words_extraction": return commonWords(task, a, fam, length)
        case "freq_words_extraction": return freqWords(task, a, fam, length)
        case "qa":
            let name = a.dataset ?? "squad"
            guard let ds = qa[name] else {
                throw EvalError("\(task) needs a \(name) file (pass --qa-\(name) FILE: \(name == "squad" ? "SQuAD v2.0 dev JSON" : "HotpotQA dev distractor JSON"))")
            }
            return qaTask(task, fam, length, ds)
        default: throw EvalError("\(task): unknown family \(t.family)")
        }
    }

    // MARK: niah

    static func needleValue(_ type: String, _ rng: inout SeededRandom) -> String {
        switch type {
        case "numbers": return String(rng.int(1_000_000...9_999_999))
        case "uuids": return rng.uuid()
        default: return WordLists.key(&rng)
        }
    }

    /// RULER's singular rewrite when exactly one value is asked for (a blind `str.replace` chain).
    static func singular(_ s: String) -> String {
        s.replacingOccurrences(of: "Some", with: "A").replacingOccurrences(of: "are all", with: "is")
            .replacingOccurrences(of: "are", with: "is").replacingOccurrences(of: "answers", with: "answer")
    }

    /// Inserts `items` into `lines` at `positions` (indices into the original array, RULER's descending insert).
    static func insert(_ items: [String], into lines: inout [String], at positions: [Int]) {
        for (p, item) in zip(positions.sorted(by: >), items) { lines.insert(item, at: p) }
    }

    func niah(_ task: String, _ a: RulerConfig.Args, _ fam: RulerConfig.Family, _ length: Int) throws -> TaskSpec {
        let hay = a.typeHaystack ?? "noise", typeK = a.typeNeedleK ?? "words", typeV = a.typeNeedleV ?? "numbers"
        let k0 = a.numNeedleK ?? 1, v = a.numNeedleV ?? 1, q = a.numNeedleQ ?? 1
        let k = max(k0, q)
        let single = q * v == 1
        let template = single ? Self.singular(fam.template) : fam.template
        let prefix = single ? Self.singular(fam.answerPrefix) : fam.answerPrefix
        let typeShown = single ? String(typeV.dropLast()) : typeV
        let incremental = hay == "essay" ? 500 : (length < 4096 ? 5 : 25)
        let essay = self.essay
        let words: [String] = hay == "essay" ? essay.sentences(max(length / 8, 64)) : []
        return TaskSpec(name: task, metric: fam.metric, tokensToGenerate: fam.tokensToGenerate,
                        incremental: incremental, haystack: hay == "essay" ? EssayGenerator.identity : "ruler-\(hay)") { n, _, rng in
            var keys: [String] = []
            var values: [[String]] = []
            var needles: [String] = []
            for _ in 0..<k {
                let key = Self.needleValue(typeK, &rng)
                keys.append(key)
                var vs: [String] = []
                for _ in 0..<v {
                    let value = Self.needleValue(typeV, &rng)
                    vs.append(value)
                    needles.append("One of the special magic \(typeV) for \(key) is: \(value).")
                }
                values.append(vs)
            }
            rng.shuffle(&needles)
            var context: String
            switch hay {
            case "essay":
                // n = words of essay text; needles at depths drawn from linspace(0, 100, 40), between sentences.
                var sents: [String] = []
                var count = 0, i = 0
                var pool = words
                while count < n {
                    if i == pool.count { pool += essay.sentences(pool.count * 2).suffix(pool.count) }
                    let s = pool[i]
                    let w = s.split(separator: " ")
                    if count + w.count <= n { sents.append(s) } else { sents.append(w[0..<(n - count)].joined(separator: " ")) }
                    count += w.count
                    i += 1
                }
                let depths = (0..<40).map { (Double($0) * 100.0 / 39.0).rounded() }
                let chosen = rng.sample(depths.count, min(needles.count, depths.count)).map { depths[$0] }
                let positions = chosen.map { Int(Double(sents.count) * $0 / 100) }.sorted()
                var parts: [String] = []
                var last = 0
                for (j, p) in positions.enumerated() {
                    parts.append(sents[last..<p].joined(separator: " "))
                    parts.append(needles[j])
                    last = p
                }
                parts.append(sents[last...].joined(separator: " "))
                context = parts.filter { !$0.isEmpty }.joined(separator: " ")
            case "needle":
                var lines: [String] = []
                for _ in 0..<n {
                    lines.append("One of the special magic \(typeV) for \(Self.needleValue(typeK, &rng)) is: \(Self.needleValue(typeV, &rng)).")
                }
                Self.insert(needles, into: &lines, at: rng.sample(n + needles.count, needles.count).map { min($0, n) })
                context = lines.joined(separator: "\n")
            default:
                var lines = [String](repeating: Self.noiseLine, count: n)
                let pos = n >= needles.count ? rng.sample(n, needles.count) : (0..<needles.count).map { _ in 0 }
                Self.insert(needles, into: &lines, at: pos)
                context = lines.joined(separator: "\n")
            }
            let qIdx = rng.sample(k, q)
            let qKeys = qIdx.map { keys[$0] }
            let query = qKeys.count == 1 ? qKeys[0] : qKeys.dropLast().joined(separator: ", ") + ", and " + qKeys.last!
            let outputs = qIdx.flatMap { values[$0] }
            let f = ["type_needle_v": typeShown, "context": context, "query": query]
            let input = pyFormat(template, f)
            let depth = outputs.first.flatMap { o in input.range(of: o).map { Double(input.distance(from: input.startIndex, to: $0.lowerBound)) / Double(max(input.count, 1)) * 100 } }
            return SampleParts(input: input, answerPrefix: pyFormat(prefix, f), outputs: outputs, actualDepthPercent: depth)
        }
    }

    // MARK: variable tracking

    static let upper = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ")

    static func distinctNames(_ count: Int, letters: Int, _ rng: inout SeededRandom) -> [String] {
        var seen = Set<String>(), out: [String] = []
        while out.count < count {
            let s = rng.letters(letters, from: upper)
            if seen.insert(s).inserted { out.append(s) }
        }
        return out
    }

    /// One vt prompt: chain lines inserted in order among `n` noise lines.
    static func vtText(_ template: String, _ prefix: String, names: [String], chains: Int, hops: Int, value: String,
                       n: Int, _ rng: inout SeededRandom) -> (String, String) {
        var chainLines: [String] = []
        for c in 0..<chains {
            let vars = Array(names[(c * (hops + 1))..<((c + 1) * (hops + 1))])
            chainLines.append("VAR \(vars[0]) = \(value)")
            for h in 1...hops { chainLines.append("VAR \(vars[h]) = VAR \(vars[h - 1]) ") }
        }
        let positions = (n + chainLines.count > 0) ? rng.sample(n + chainLines.count, chainLines.count).sorted() : []
        var lines: [String] = []
        var ci = 0, ni = 0
        for slot in 0..<(n + chainLines.count) {
            if ci < positions.count && positions[ci] == slot { lines.append(chainLines[ci]); ci += 1 } else { lines.append(noiseLine); ni += 1 }
        }
        let context = lines.joined(separator: "\n").replacingOccurrences(of: ". \n", with: ".\n")
        let f = ["context": context, "query": value, "num_v": String(hops + 1)]
        return (pyFormat(template, f), pyFormat(prefix, f))
    }

    func variableTracking(_ task: String, _ a: RulerConfig.Args, _ fam: RulerConfig.Family, _ length: Int,
                          _ maker: SampleMaker) throws -> TaskSpec {
        let chains = a.numChains ?? 1, hops = a.numHops ?? 4
        let template = fam.template, prefix = fam.answerPrefix
        // The in-context example: 3-letter names, value 12345, fitted to 500 tokens with nothing to generate.
        var exRng = SeededRandom(["vt-example", "\(maker.seed)"])
        let exNames = Self.distinctNames(chains * (hops + 1), letters: 3, &exRng)
        let exState = exRng
        let exN = LengthFit.largest(lo: 0, budget: 500, hint: 10) { n in
            var r = exState
            let (i, p) = Self.vtText(template, prefix, names: exNames, chains: chains, hops: hops, value: "12345", n: n, &r)
            return maker.counter.tokenCount(maker.format.render(i, p))
        } ?? 0
        var r = exState
        let (exInput, exPrefix) = Self.vtText(template, prefix, names: exNames, chains: chains, hops: hops, value: "12345", n: exN, &r)
        let example = exInput + exPrefix + " " + exNames.joined(separator: " ") + "\n"
        return TaskSpec(name: task, metric: fam.metric, tokensToGenerate: fam.tokensToGenerate,
                        incremental: length < 4096 ? 5 : 10, haystack: "ruler-noise") { n, _, rng in
            var ex = example
            let fresh = Self.distinctNames(exNames.count, letters: 3, &rng)
            for (old, new) in zip(exNames, fresh) { ex = ex.replacingOccurrences(of: old, with: new) }
            ex = ex.replacingOccurrences(of: "12345", with: String(rng.int(10000...99998)))
            let names = Self.distinctNames(chains * (hops + 1), letters: 5, &rng)
            let value = String(rng.int(10000...99998))
            let (input, p) = Self.vtText(template, prefix, names: names, chains: chains, hops: hops, value: value, n: n, &rng)
            return SampleParts(input: ex + "\n" + input, answerPrefix: p, outputs: Array(names[0...hops]))
        }
    }

    // MARK: common words extraction

    static func wordPool(_ needed: Int, _ rng: inout SeededRandom) -> [String] {
        var pool = WordLists.commonWordPool
        var r = SeededRandom(seed: 42)
        r.shuffle(&pool)
        if needed > pool.count {
            var seen = Set(pool)
            while pool.count < needed {
                let w = WordLists.pseudoWord(&rng)
                if seen.insert(w).inserted { pool.append(w) }
            }
        }
        return pool
    }

    static func cweList(_ words: [String], common: Int, freqC: Int, freqU: Int, _ rng: inout SeededRandom) -> String {
        var list: [String] = []
        for (i, w) in words.enumerated() { list += Array(repeating: w, count: i < common ? freqC : freqU) }
        rng.shuffle(&list)
        return list.enumerated().map { "\($0.offset + 1). \($0.element)" }.joined(separator: " ")
    }

    func commonWords(_ task: String, _ a: RulerConfig.Args, _ fam: RulerConfig.Family, _ length: Int) -> TaskSpec {
        let numCw = a.numCw ?? 10
        let small = length < 4096
        let (shotWords, shotC, shotU) = small ? (20, 3, 1) : (40, 10, 3)
        let (freqC, freqU) = small ? (6, 1) : (a.freqCw ?? 30, a.freqUcw ?? 3)
        let template = fam.template, prefix = fam.answerPrefix
        return TaskSpec(name: task, metric: fam.metric, tokensToGenerate: fam.tokensToGenerate,
                        incremental: 10, haystack: "ruler-words") { n, _, rng in
            let nWords = max(n, numCw)
            var extra = SeededRandom(seed: 4242)
            let pool = Self.wordPool(nWords + shotWords, &extra)
            let picks = rng.sample(pool.count, shotWords + nWords).map { pool[$0] }
            let shot = Array(picks[0..<shotWords]), real = Array(picks[shotWords...])
            let shotInput = pyFormat(template, ["context": Self.cweList(shot, common: numCw, freqC: shotC, freqU: shotU, &rng)])
            let shotAnswer = shot[0..<numCw].enumerated().map { "\($0.offset + 1). \($0.element)" }.joined(separator: " ")
            let example = shotInput + prefix + " " + shotAnswer + "\n"
            let input = pyFormat(template, ["context": Self.cweList(real, common: numCw, freqC: freqC, freqU: freqU, &rng)])
            return SampleParts(input: example + input, answerPrefix: prefix, outputs: Array(real[0..<numCw]))
        }
    }

    // MARK: frequent words extraction

    func freqWords(_ task: String, _ a: RulerConfig.Args, _ fam: RulerConfig.Family, _ length: Int) -> TaskSpec {
        let alpha = a.alpha ?? 2.0
        let maxLen = length - fam.tokensToGenerate
        let vocabSize = max(maxLen / 50, 4)
        // Riemann zeta(alpha) by direct summation with an integral tail estimate.
        var zeta = 0.0
        for k in 1...100_000 { zeta += pow(Double(k), -alpha) }
        zeta += pow(100_000.0, 1 - alpha) / (alpha - 1)
        let z = zeta
        let template = fam.template, prefix = fam.answerPrefix
        let lower = Array("abcdefghijklmnopqrstuvwxyz")
        return TaskSpec(name: task, metric: fam.metric, tokensToGenerate: fam.tokensToGenerate,
                        incremental: max(maxLen / 32, 1), haystack: "ruler-coded-words") { n, _, rng in
            var set = Set<String>()
            while set.count < vocabSize { set.insert(rng.letters(6, from: lower)) }
            var vocab = set.sorted()
            var r42 = SeededRandom(seed: 42)
            r42.shuffle(&vocab)
            vocab[0] = "..."
            var words: [String] = []
            for (i, w) in vocab.enumerated() {
                let c = Int(Double(n) * pow(Double(i + 1), -alpha) / z)
                if c > 0 { words += Array(repeating: w, count: c) }
            }
            rng.shuffle(&words)
            let input = pyFormat(template, ["context": words.joined(separator: " ")])
            return SampleParts(input: input, answerPrefix: prefix, outputs: Array(vocab[1..<4]))
        }
    }

    // MARK: qa

    func qaTask(_ task: String, _ fam: RulerConfig.Family, _ length: Int, _ ds: QADataset) -> TaskSpec {
        let template = fam.template, prefix = fam.answerPrefix
        return TaskSpec(name: task, metric: fam.metric, tokensToGenerate: fam.tokensToGenerate,
                        incremental: 10, haystack: ds.name) { n, index, rng in
            // Sample i uses question i (RULER), wrapping around a short file.
            let qi = index % ds.items.count
            let item = ds.items[qi]
            var docs = item.goldDocuments
            var others = ds.documents.indices.filter { !item.goldDocuments.contains(ds.documents[$0]) }
            rng.shuffle(&others)
            for j in others.prefix(max(0, n - docs.count)) { docs.append(ds.documents[j]) }
            rng.shuffle(&docs)
            let context = docs.enumerated().map { "Document \($0.offset + 1):\n\($0.element)" }.joined(separator: "\n\n")
            let f = ["context": context, "query": item.question]
            return SampleParts(input: pyFormat(template, f), answerPrefix: pyFormat(prefix, f), outputs: item.answers)
        }
    }
}

/// A QA dataset in RULER's shape: questions with answers and gold documents, plus the document pool.
public struct QADataset: Sendable {
    public struct Item: Sendable {
        public var question: String
        public var answers: [String]
        public var goldDocuments: [String]
    }
    public var name: String
    public var items: [Item]
    public var documents: [String]

    /// SQuAD v2.0 JSON (`data[].paragraphs[].{context, qas[].{question, answers[].text, is_impossible}}`);
    /// answerable questions only, as RULER.
    public static func squad(path: String) throws -> QADataset {
        guard let root = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any],
              let data = root["data"] as? [[String: Any]] else {
            throw EvalError("\(path): not a SQuAD file (expected an object with a 'data' array)")
        }
        var docs: [String] = [], items: [Item] = [], seen = Set<String>()
        for article in data {
            for para in article["paragraphs"] as? [[String: Any]] ?? [] {
                guard let ctx = para["context"] as? String else { continue }
                if seen.insert(ctx).inserted { docs.append(ctx) }
                for qa in para["qas"] as? [[String: Any]] ?? [] {
                    if qa["is_impossible"] as? Bool == true { continue }
                    let answers = (qa["answers"] as? [[String: Any]] ?? []).compactMap { $0["text"] as? String }
                    guard let q = qa["question"] as? String, !answers.isEmpty else { continue }
                    items.append(Item(question: q, answers: answers, goldDocuments: [ctx]))
                }
            }
        }
        guard !items.isEmpty else { throw EvalError("\(path): no answerable SQuAD questions") }
        return QADataset(name: "squad:" + URL(fileURLWithPath: path).lastPathComponent, items: items, documents: docs)
    }

    /// HotpotQA dev (distractor) JSON: `[{question, answer, context: [[title, [sentences]]]}]`;
    /// a document is `title\n` + joined sentences (RULER's form).
    public static func hotpot(path: String) throws -> QADataset {
        guard let arr = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [[String: Any]] else {
            throw EvalError("\(path): not a HotpotQA file (expected a JSON array)")
        }
        var docs: [String] = [], items: [Item] = [], seen = Set<String>()
        for e in arr {
            guard let q = e["question"] as? String, let ans = e["answer"] as? String,
                  let ctx = e["context"] as? [[Any]] else { continue }
            var gold: [String] = []
            for pair in ctx {
                guard pair.count == 2, let title = pair[0] as? String, let sents = pair[1] as? [String] else { continue }
                let doc = title + "\n" + sents.joined()
                gold.append(doc)
                if seen.insert(doc).inserted { docs.append(doc) }
            }
            items.append(Item(question: q, answers: [ans], goldDocuments: gold))
        }
        guard !items.isEmpty else { throw EvalError("\(path): no HotpotQA questions") }
        return QADataset(name: "hotpotqa:" + URL(fileURLWithPath: path).lastPathComponent, items: items, documents: docs)
    }
}
