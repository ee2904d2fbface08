import Basics
import Foundation
import Testing
import TestSupport
@testable import Evaluation

@Suite struct ProbeTests {
    /// The passkey prompt is the landmark-attention string layout: task, prefix filler, key line, suffix, question.
    @Test func passkeyLayout() throws {
        let maker = SampleMaker(counter: WordTokenCounter(), format: .base)
        for depth in [0.0, 50.0, 100.0] {
            let s = try maker.samples(Passkey.spec(depthPercent: depth), length: 600, count: 2, depth: depth)
            for x in s {
                let lines = x.input.components(separatedBy: "\n")
                #expect(lines.count == 5)
                #expect(lines[0] == Passkey.task)
                #expect(lines[2] == Passkey.keyLine(Int(x.outputs[0])!))
                #expect(lines[4] == Passkey.question)
                let key = Int(x.outputs[0])!
                #expect((1...50000).contains(key))
                let units = lines[1].isEmpty ? 0 : lines[1].components(separatedBy: Passkey.filler).count - 1
                let after = lines[3].isEmpty ? 0 : lines[3].components(separatedBy: Passkey.filler).count - 1
                #expect(units + after == x.units)
                #expect(units == Int((Double(x.units) * depth / 100).rounded()))
                #expect(x.promptTokens + x.tokensToGenerate <= 600)
                #expect(x.promptTokens + x.tokensToGenerate > 600 - 20)   // one filler unit is 19 words
            }
        }
    }

    @Test func niahDepthsAndFit() throws {
        let suite = try NIAHSuite.load(path: TestSupport.repoRoot + "/eval/niah-multi.json")
        let sents = try NIAHSuite.sentences(files: [], essay: EssayGenerator(), minimum: 2000)
        let maker = SampleMaker(counter: WordTokenCounter(), format: .base)
        var lastDepth = -1.0
        for d in [0.0, 25.0, 50.0, 75.0, 100.0] {
            let s = try maker.samples(suite.spec(depthPercent: d, sentences: sents, haystack: EssayGenerator.identity),
                                      length: 2000, count: 1, depth: d)[0]
            for n in suite.needles { #expect(s.input.contains(n)) }
            #expect(s.input.hasSuffix("\n\n" + suite.question))
            #expect(s.promptTokens + s.tokensToGenerate <= 2000)
            #expect(s.actualDepthPercent! >= lastDepth)
            #expect(abs(s.actualDepthPercent! - d) < 3)
            lastDepth = s.actualDepthPercent!
            #expect(s.id == "niah_multi/2000/0/d\(Int(d))")
        }
    }

    @Test func generationIsDeterministic() throws {
        let suite = RulerSuite(config: try RulerConfig.load(path: TestSupport.repoRoot + "/eval/ruler.json"))
        let maker = SampleMaker(counter: WordTokenCounter(), format: .base, seed: 3)
        for t in ["niah_multikey_1", "vt", "cwe", "fwe"] {
            let a = try maker.samples(suite.spec(t, length: 2048, maker: maker), length: 2048, count: 2)
            let b = try maker.samples(suite.spec(t, length: 2048, maker: maker), length: 2048, count: 2)
            #expect(a == b)
            #expect(a[0].input != a[1].input)
        }
    }

    @Test func lengthFitMatchesBruteForce() {
        var rng = SeededRandom(seed: 5)
        for _ in 0..<200 {
            let limit = rng.int(0...5000), hint = rng.int(1...9000)
            let got = LengthFit.largest(lo: 0, budget: limit, hint: hint) { $0 }
            #expect(got == limit)
        }
        #expect(LengthFit.largest(lo: 3, budget: 2, hint: 10) { $0 } == nil)
    }

    @Test func qaFromSquadAndHotpot() throws {
        let dir = TestSupport.scratchDirectory("qa")
        let squad: [String: Any] = ["data": [["title": "t", "paragraphs": (0..<30).map { i in
            ["context": "Paragraph \(i) says the colour of box \(i) is shade\(i).",
             "qas": [["question": "What colour is box \(i)?", "answers": [["text": "shade\(i)"]], "is_impossible": false],
                     ["question": "Unanswerable \(i)?", "answers": [], "is_impossible": true]]] }]]]
        try JSONSerialization.data(withJSONObject: squad).write(to: URL(fileURLWithPath: dir + "/squad.json"))
        let ds = try QADataset.squad(path: dir + "/squad.json")
        #expect(ds.items.count == 30)
        let suite = RulerSuite(config: try RulerConfig.load(path: TestSupport.repoRoot + "/eval/ruler.json"), qa: ["squad": ds])
        let maker = SampleMaker(counter: WordTokenCounter(), format: .base)
        let s = try maker.samples(suite.spec("qa_1", length: 300, maker: maker), length: 300, count: 3)
        for x in s {
            #expect(x.input.hasPrefix("Answer the question based on the given documents. Only give me the answer and do not output any other words.\n\nThe following are given documents.\n\nDocument 1:\n"))
            #expect(x.input.hasSuffix("\n\nQuestion: What colour is box \(x.index)?"))
            #expect(x.answerPrefix == " Answer:")
            #expect(x.outputs == ["shade\(x.index)"])
            #expect(x.input.contains("Paragraph \(x.index) says"))
            #expect(x.promptTokens + 32 <= 300)
        }
        #expect(throws: EvalError.self) { try suite.spec("qa_2", length: 300, maker: maker) }
    }
}

@Suite struct StoreTests {
    func sample(_ i: Int) -> EvalSample {
        EvalSample(id: "t/100/\(i)", task: "t", length: 100, index: i, depthPercent: nil, actualDepthPercent: nil,
                   input: "x", answerPrefix: "", prompt: "x", outputs: ["abc"], metric: .stringMatchAll,
                   tokensToGenerate: 4, promptTokens: 1, units: 0, haystack: "h")
    }

    @Test func resumeSkipsScoredRetriesFailedAndSurvivesTornLine() throws {
        let path = TestSupport.scratchDirectory("store") + "/results.jsonl"
        do {
            let s = try ResultStore(path: path)
            try s.append(SampleResult(sample: sample(0), prediction: "ABC!", servedPromptTokens: 1, error: nil, attempts: 1, seconds: 0))
            try s.append(SampleResult(sample: sample(1), prediction: nil, servedPromptTokens: nil, error: "HTTP 500", attempts: 3, seconds: 0))
        }
        // A run killed mid-write leaves a torn line.
        let h = FileHandle(forWritingAtPath: path)!
        h.seekToEndOfFile(); h.write(Data("{\"id\":\"t/100/2\",\"sco".utf8)); h.closeFile()
        let s = try ResultStore(path: path)
        #expect(s.isDone("t/100/0"))
        #expect(!s.isDone("t/100/1"))   // failed → retried
        #expect(!s.isDone("t/100/2"))   // torn → redone
        #expect(s.results.count == 2)
        #expect(s.results[0].score == 1)
        #expect(s.results[1].score == nil && s.results[1].status == "failed" && s.results[1].error == "HTTP 500")
        try s.append(SampleResult(sample: sample(1), prediction: "no", servedPromptTokens: 1, error: nil, attempts: 1, seconds: 0))
        let again = try ResultStore(path: path)
        #expect(again.results.count == 2)
        #expect(again.results[1].status == "ok" && again.results[1].score == 0)
        // Every complete line is valid JSON; the torn fragment stayed on its own line.
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 4)
    }

    @Test func reportsAgree() throws {
        var results: [SampleResult] = []
        for (li, l) in [100, 200].enumerated() {
            for (di, d) in [0.0, 50.0, 100.0].enumerated() {
                var s = sample(li * 10 + di)
                s.length = l; s.depthPercent = d; s.id = "niah/\(l)/0/d\(Int(d))"; s.task = "niah"
                let hit = (li + di) % 2 == 0
                results.append(SampleResult(sample: s, prediction: hit ? "abc" : "zzz", servedPromptTokens: nil, error: nil, attempts: 1, seconds: 0))
            }
        }
        var f = sample(99); f.task = "niah"; f.length = 200; f.depthPercent = 50; f.id = "niah/200/1/d50"
        results.append(SampleResult(sample: f, prediction: nil, servedPromptTokens: nil, error: "timeout after 1.0 s", attempts: 4, seconds: 4))
        let sum = EvalSummary(results: results, threshold: 50)
        #expect(sum.cells.map(\.score) == [66.67, 33.33])
        #expect(sum.cells[1].failed == 1)
        #expect(sum.effectiveLength == 100)
        #expect(sum.depthGrid.count == 6)
        let csv = sum.csv()
        #expect(csv.contains("niah,100,66.67,3,0,0,1.0\n"))
        #expect(csv.contains("niah,200,33.33,3,1,0,1.0\n"))
        let svg = Report.heatmapSVG(sum, title: "t")
        #expect(svg.components(separatedBy: "<rect x=").count - 1 == 6 + 10)
        #expect(svg.contains("depth 50%, 200 tokens: 1.00"))
        #expect(svg.contains("depth 0%, 200 tokens: 0.00"))
        let html = Report.html(sum, results: results, title: "t", config: ["backend": "b"])
        #expect(html.contains("timeout after 1.0 s"))
        #expect(html.contains("<svg"))
    }
}
