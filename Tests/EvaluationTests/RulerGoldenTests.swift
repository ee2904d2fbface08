import Foundation
import Testing
import TestSupport
@testable import Evaluation

/// Our RULER prompts side by side with prompts recorded from RULER's own scripts (Fixtures/ruler, README there).
/// Random parts (keys, values, names, word lists) and haystack repetition counts differ by design; everything
/// else — instruction text, needle sentences, separators, few-shot layout, answer prefix, number and shape of
/// references — must be identical after `canonical` replaces the random parts with placeholders.
@Suite struct RulerGoldenTests {
    struct Golden: Decodable {
        let input: String
        let outputs: [String]
        let length: Int
        let answer_prefix: String
    }

    static func golden(_ name: String) throws -> [Golden] {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/ruler/\(name)", withExtension: "jsonl"))
        let text = try String(contentsOf: url, encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(Golden.self, from: Data($0.utf8)) }
    }

    /// The recorded samples used RULER's config with essay haystacks replaced by noise (HOW.md); mirror that.
    static func goldenConfig() throws -> RulerConfig {
        var cfg = try RulerConfig.load(path: TestSupport.repoRoot + "/eval/ruler.json")
        for t in ["niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multivalue", "niah_multiquery"] {
            cfg.tasks[t]!.args.typeHaystack = "noise"
        }
        return cfg
    }

    static func sub(_ s: String, _ pattern: String, _ with: String) -> String {
        let re = try! NSRegularExpression(pattern: pattern, options: [.dotMatchesLineSeparators])
        return re.stringByReplacingMatches(in: s, range: NSRange(s.startIndex..., in: s), withTemplate: with)
    }

    /// Replaces random content by placeholders, drops noise lines, collapses repeated lines.
    static func canonical(_ task: String, _ text: String) -> String {
        var s = text
        s = sub(s, "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", "<UUID>")
        if task.hasPrefix("niah") {
            s = sub(s, "\\b\\d{7}\\b", "<NUM>")
            s = sub(s, "for [^\\n]*? is: ", "for <KEY> is: ")
            s = sub(s, "for [^\\n]*? mentioned", "for <QUERY> mentioned")
        } else if task == "vt" {
            s = sub(s, "VAR [A-Z]{3,5}", "VAR <V>")
            s = sub(s, "\\b\\d{5}\\b", "<N5>")
            s = sub(s, "they are:  [A-Z]{3}( [A-Z]{3}){4}\\n", "they are:  <NAMES>\n")
        } else if task == "cwe" {
            s = sub(s, "most often\\.\\n1\\. [^\\n]*?\\nQuestion", "most often.\n<LIST>\nQuestion")
            s = sub(s, "are: 1\\. [^\\n]*?\\n", "are: <ANSWER>\n")
        } else if task == "fwe" {
            s = sub(s, "coded words\\. [^\\n]*?\\nQuestion", "coded words. <CODED>\nQuestion")
        }
        var lines: [String] = []
        for l in s.components(separatedBy: "\n") where l != RulerSuite.noiseLine {
            if lines.last != l { lines.append(l) }
        }
        return lines.joined(separator: "\n")
    }

    static func shape(_ task: String, _ output: String) -> String {
        if output.range(of: "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", options: .regularExpression) != nil { return "uuid" }
        if output.range(of: "^\\d{7}$", options: .regularExpression) != nil { return "7 digits" }
        if output.range(of: "^[A-Z]{5}$", options: .regularExpression) != nil { return "5 capitals" }
        if output.range(of: "^[a-z]{6}$", options: .regularExpression) != nil && task == "fwe" { return "6 letters" }
        return "word"
    }

    static let cases: [(String, Int)] = [
        ("niah_single_1", 1024), ("niah_single_3", 1024), ("niah_multikey_1", 1024), ("niah_multikey_2", 1024),
        ("niah_multikey_3", 1024), ("niah_multivalue", 1024), ("niah_multiquery", 1024), ("vt", 1024),
        ("cwe", 1024), ("fwe", 1024), ("cwe", 4096), ("vt", 4096),
    ]

    @Test(arguments: cases)
    func promptMatchesRecordedRuler(_ task: String, _ length: Int) throws {
        let goldens = try Self.golden("\(length)-\(task)")
        let suite = RulerSuite(config: try Self.goldenConfig())
        let maker = SampleMaker(counter: WordTokenCounter(), format: .base)
        let spec = try suite.spec(task, length: length, maker: maker)
        let ours = try maker.samples(spec, length: length, count: goldens.count)
        for (g, o) in zip(goldens, ours) {
            #expect(Self.canonical(task, o.input) == Self.canonical(task, g.input))
            #expect(Self.canonical(task, o.answerPrefix) == Self.canonical(task, g.answer_prefix))
            #expect(o.outputs.count == g.outputs.count)
            #expect(o.outputs.map { Self.shape(task, $0) } == g.outputs.map { Self.shape(task, $0) })
            // Every reference occurs in the prompt (niah, vt) as in RULER's samples.
            if task.hasPrefix("niah") || task == "vt" {
                for r in o.outputs { #expect(o.input.contains(r)) }
                for r in g.outputs { #expect(g.input.contains(r)) }
            }
            #expect(o.promptTokens + o.tokensToGenerate <= length)
        }
    }

    @Test func tokensToGenerateAndMetricsMatchRuler() throws {
        // RULER constants.py: niah 128, vt 30, cwe 120, fwe 50, qa 32; string_match_all except qa (part).
        let cfg = try RulerConfig.load(path: TestSupport.repoRoot + "/eval/ruler.json")
        let expected: [String: (Int, Metric)] = ["niah": (128, .stringMatchAll), "variable_tracking": (30, .stringMatchAll),
                                                 "common_words_extraction": (120, .stringMatchAll),
                                                 "freq_words_extraction": (50, .stringMatchAll), "qa": (32, .stringMatchPart)]
        for (f, (t, m)) in expected {
            #expect(cfg.families[f]?.tokensToGenerate == t)
            #expect(cfg.families[f]?.metric == m)
        }
        #expect(cfg.order.count == 13)
        #expect(cfg.threshold == 85.6)
        // Length within RULER's fitting tolerance: recorded lengths are within a few % below the budget.
        for (task, length) in Self.cases {
            for g in try Self.golden("\(length)-\(task)") { #expect(g.length <= length) }
        }
    }

    @Test func fittingIsTightForEachTask() throws {
        let suite = RulerSuite(config: try RulerConfig.load(path: TestSupport.repoRoot + "/eval/ruler.json"))
        let counter = WordTokenCounter()
        let maker = SampleMaker(counter: counter, format: .base)
        for task in ["niah_single_1", "niah_single_2", "niah_multikey_2", "niah_multikey_3", "niah_multivalue", "vt", "cwe", "fwe"] {
            let spec = try suite.spec(task, length: 4096, maker: maker)
            let s = try maker.samples(spec, length: 4096, count: 1)
            for x in s {
                #expect(x.promptTokens + x.tokensToGenerate <= 4096, "\(task)")
                // One more unit would not fit for sample 0 (bisection found the largest count).
                if x.index == 0 {
                    var r = maker.rng(spec, 4096, 0, nil)
                    let bigger = spec.build(x.units + 1, 0, &r)
                    #expect(counter.tokenCount(bigger.input + bigger.answerPrefix) + x.tokensToGenerate > 4096, "\(task)")
                }
            }
        }
    }
}
