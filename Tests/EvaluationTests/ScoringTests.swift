import Basics
import Foundation
import Testing
import TestSupport
@testable import Evaluation

/// Scoring against RULER's definitions (scripts/eval/evaluate.py + synthetic/constants.py, as recorded in the
/// reference notes): postprocess = strip, control characters → "\n", strip; string_match_all = mean over
/// references of case-insensitive substring; string_match_part = max; task score = round(mean × 100, 2).
@Suite struct ScoringTests {
    @Test func ruleredgeCases() {
        // Plain substring: no word boundaries, case-insensitive.
        #expect(Scoring.score(.stringMatchAll, prediction: "1234567", references: ["123456"]) == 1)
        #expect(Scoring.score(.stringMatchAll, prediction: "The ANSWER is Foo-Bar", references: ["foo-bar", "baz"]) == 0.5)
        #expect(Scoring.score(.stringMatchPart, prediction: "The ANSWER is Foo-Bar", references: ["foo-bar", "baz"]) == 1)
        #expect(Scoring.score(.stringMatchPart, prediction: "nothing", references: ["foo", "baz"]) == 0)
        // Control characters become newlines, then the whole is stripped: a reference spanning them cannot match.
        #expect(Scoring.postprocess("\u{01}\u{02} abc\tdef \u{1f}") == "abc\ndef")
        #expect(Scoring.score(.stringMatchAll, prediction: "abc\tdef", references: ["abc def"]) == 0)
        #expect(Scoring.score(.stringMatchAll, prediction: "abc\tdef", references: ["abc\ndef"]) == 1)
        // Empty prediction scores 0 for both metrics.
        #expect(Scoring.score(.stringMatchAll, prediction: "  \n", references: ["x"]) == 0)
        #expect(Scoring.score(.stringMatchPart, prediction: "", references: ["x"]) == 0)
        // Task score: round(mean * 100, 2).
        #expect(Scoring.taskScore([1, 0, 0]) == 33.33)
        #expect(Scoring.taskScore([1, 1, 0]) == 66.67)
        #expect(Scoring.taskScore([0.25, 0.5]) == 37.5)
    }

    @Test func passkeyFirstInteger() {
        #expect(Scoring.score(.passkey, prediction: " 42917. Remember it.", references: ["42917"]) == 1)
        #expect(Scoring.score(.passkey, prediction: " 042917", references: ["42917"]) == 1)   // int() of the digits
        #expect(Scoring.score(.passkey, prediction: " 4291 7", references: ["42917"]) == 0)
        #expect(Scoring.score(.passkey, prediction: "is 1 and 42917", references: ["42917"]) == 0)
        #expect(Scoring.score(.passkey, prediction: "no digits", references: ["42917"]) == 0)
    }

    /// The same definitions written in Python from RULER's text, over random predictions with control
    /// characters, mixed case and unicode, must agree exactly (scores and the rounded task score).
    @Test(.enabled(if: TestSupport.interopCanRun(["json"]), "needs Python json (LONGCTX_INTEROP=1 makes their absence a failure)")) func agreesWithPythonDefinitions() throws {
        guard try TestSupport.interopEnabled(["json"]) else { return }
        var rng = SeededRandom(seed: 11)
        let alphabet = Array("abcXYZ 01\t\n\u{01}\u{1f}éÉß-")
        var cases: [[String: Any]] = []
        for _ in 0..<300 {
            let refs = (0..<rng.int(1...4)).map { _ in rng.letters(rng.int(1...3), from: alphabet) }
            let pred = rng.letters(rng.int(0...30), from: alphabet)
            cases.append(["pred": pred, "refs": refs])
        }
        let data = try JSONSerialization.data(withJSONObject: cases)
        let dir = TestSupport.scratchDirectory("score")
        try data.write(to: URL(fileURLWithPath: dir + "/cases.json"))
        let out = try TestSupport.runPython("""
        import json, re, sys
        cases = json.load(open(sys.argv[1]))
        def post(p):
            p = p.strip()
            p = re.sub(r'[\\x00-\\x1f]', '\\n', p)
            return p.strip()
        alls, parts = [], []
        for c in cases:
            p = post(c['pred'])
            alls.append(sum([1.0 if r.lower() in p.lower() else 0.0 for r in c['refs']]) / len(c['refs']))
            parts.append(max([1.0 if r.lower() in p.lower() else 0.0 for r in c['refs']]))
        print(json.dumps({'all': alls, 'part': parts,
                          'all_score': round(sum(alls) / len(alls) * 100, 2),
                          'part_score': round(sum(parts) / len(parts) * 100, 2)}))
        """, [dir + "/cases.json"])
        let py = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
        let pyAll = py["all"] as! [Double], pyPart = py["part"] as! [Double]
        var all: [Double] = [], part: [Double] = []
        for c in cases {
            all.append(Scoring.score(.stringMatchAll, prediction: c["pred"] as! String, references: c["refs"] as! [String]))
            part.append(Scoring.score(.stringMatchPart, prediction: c["pred"] as! String, references: c["refs"] as! [String]))
        }
        #expect(all == pyAll)
        #expect(part == pyPart)
        #expect(Scoring.taskScore(all) == py["all_score"] as! Double)
        #expect(Scoring.taskScore(part) == py["part_score"] as! Double)
    }
}

/// Aggregation against RULER's published table (README @ c3f5e3b): effective length with the 85.6 threshold and
/// wAvg inc/dec (weights 1..6 / 6..1, divided by 21) reproduce the published columns within ±0.1.
@Suite struct SummaryTests {
    @Test(arguments: [
        // model, 4K…128K, effective, wAvg inc, wAvg dec
        ("Llama3.1-8B-Instruct", [95.5, 93.8, 91.6, 87.4, 84.7, 77.0], 32768, 85.4, 91.3),
        ("GPT-4-1106-preview", [96.6, 96.3, 95.2, 93.2, 87.0, 81.2], 65536, 89.0, 94.1),
        ("Gradient-8B-1048k", [92.8, 90.3, 85.7, 79.9, 76.3, 69.5], 16384, 78.5, 86.3),
        ("Mistral-7B-Instruct-v0.2", [93.6, 91.2, 87.2, 75.4, 49.0, 13.8], 16384, 55.6, 81.2),
        ("Qwen2-72B-Instruct", [96.9, 96.1, 94.9, 94.1, 79.8, 53.7], 32768, 79.6, 92.3),
    ])
    func publishedTable(_ model: String, _ scores: [Double], _ eff: Int, _ inc: Double, _ dec: Double) {
        let lengths = [4096, 8192, 16384, 32768, 65536, 131072]
        let (e, i, d) = EvalSummary.lengthStats(lengths: lengths, scores: scores, threshold: 85.6)
        #expect(e == eff, "\(model)")
        #expect(abs(i! - inc) <= 0.1, "\(model)")
        #expect(abs(d! - dec) <= 0.1, "\(model)")
    }

    @Test func belowThresholdAtFirstLength() {
        // LWM-Text-Chat-1M: 82.3 at 4K → "<4K".
        let (e, _, _) = EvalSummary.lengthStats(lengths: [4096, 8192], scores: [82.3, 78.4], threshold: 85.6)
        #expect(e == nil)
    }
}
