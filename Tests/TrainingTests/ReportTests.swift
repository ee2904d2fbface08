import Basics
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import TestSupport
import Testing
@testable import Training

func record(_ step: Int, stage: Int, stageStep: Int, loss: Double) -> TrainingLogRecord {
    TrainingLogRecord(step: step, stage: ["base-256", "yarn-1k"][stage], stageIndex: stage, stageStep: stageStep,
                      seqLen: [256, 1024][stage], loss: loss, lr: 1e-3, gradNorm: 0.5, tokens: step * 1024,
                      tokensPerSecond: 2048, seconds: 0.5, elapsed: Double(step) * 0.5)
}

@Suite struct TrainingLogTests {
    @Test func appendsOneLinePerStepAndResumes() throws {
        let dir = TestSupport.scratchDirectory("log")
        let records = (1...6).map { record($0, stage: $0 <= 3 ? 0 : 1, stageStep: $0 <= 3 ? $0 : $0 - 3, loss: 5 - Double($0) / 10) }
        do {
            let log = try TrainingLog(directory: dir)
            for (n, r) in records.enumerated() {
                try log.append(r)
                // Each line is on disk as soon as append returns (no buffering in user space).
                #expect(try TrainingLog.read(path: dir + "/train.jsonl").count == n + 1)
            }
        }
        let text = try String(contentsOfFile: dir + "/train.jsonl", encoding: .utf8)
        #expect(text.split(separator: "\n").count == 6)
        #expect(text.hasPrefix("{\"elapsed\":0.5,\"grad_norm\":0.5,\"loss\":4.9,\"lr\":0.001,\"seconds\":0.5,\"seq_len\":256,\"stage\":\"base-256\",\"stage_index\":0,\"stage_step\":1,\"step\":1,\"tokens\":1024,\"tokens_per_second\":2048}\n"))
        #expect(try TrainingLog.read(path: dir + "/train.jsonl") == records)
        // Resuming from the checkpoint of step 4 drops steps 5–6 (written after it), then appends.
        let resumed = try TrainingLog(directory: dir, resumeAfterStep: 4)
        try resumed.append(records[4])
        #expect(try TrainingLog.read(path: dir + "/train.jsonl") == Array(records.prefix(5)))
        // A fresh run starts a new log.
        _ = try TrainingLog(directory: dir)
        #expect(try TrainingLog.read(path: dir + "/train.jsonl").isEmpty)
    }

    @Test func malformedLineIsNamed() throws {
        let dir = TestSupport.scratchDirectory("log-bad")
        try "{\"step\": 1}\n".write(toFile: dir + "/train.jsonl", atomically: true, encoding: .utf8)
        #expect(throws: TrainingInputError("\(dir)/train.jsonl:1", "not a training log record")) {
            try TrainingLog.read(path: dir + "/train.jsonl")
        }
    }

    @Test func progressOnTerminalAndPipe() {
        final class Sink: @unchecked Sendable { var text = "" }
        let tty = Sink(), pipe = Sink()
        let bar = TrainingProgress(stageCount: 2, interval: 1, isTerminal: true) { tty.text += $0 }
        let plain = TrainingProgress(stageCount: 2, interval: 1, isTerminal: false) { pipe.text += $0 }
        for step in 1...3 {
            let r = record(step, stage: 0, stageStep: step, loss: 2.5)
            bar.update(r, stageSteps: 3, remainingSteps: 6 - step)
            plain.update(r, stageSteps: 3, remainingSteps: 6 - step)
        }
        #expect(tty.text.hasPrefix("\r\u{1B}[2Kstage 1/2 base-256 256  step 1/3 [======              ]  loss 2.5000  lr 0.001  2.0K tok/s  ETA 3s"))
        #expect(tty.text.hasSuffix("step 3/3 [====================]  loss 2.5000  lr 0.001  2.0K tok/s  ETA 2s\n"))
        // Without a terminal: plain lines, at most one per interval (elapsed 0.5, 1.0, 1.5 s) plus the stage's last.
        #expect(pipe.text == """
            stage 1/2 base-256 256  step 1/3  loss 2.5000  lr 0.001  2.0K tok/s  ETA 3s
            stage 1/2 base-256 256  step 3/3  loss 2.5000  lr 0.001  2.0K tok/s  ETA 2s

            """)
        #expect(TrainingProgress.duration(3725) == "1h02m" && TrainingProgress.duration(125) == "2m05s")
    }
}

@Suite struct ReportTests {
    static func run() throws -> (records: [TrainingLogRecord], stages: [StageReport]) {
        let spec = try TrainingStages.load(path: TestSupport.repoRoot + "/eval/stages/tiny-demo.yaml")
        let records = (1...20).map { record($0, stage: 0, stageStep: $0, loss: 6 - Double($0) * 0.1) }
            + (1...20).map { record(20 + $0, stage: 1, stageStep: $0, loss: 5 - Double($0) * 0.05) }
        let check = StageCheckResult(task: .passkey, lengths: [.init(length: 512, accuracy: 1, samples: 4),
                                                               .init(length: 1024, accuracy: 0.5, samples: 4)],
                                     minAccuracy: 0.75, baseShortLoss: 4.0, shortLoss: 4.1, maxLossIncrease: 0.05)
        let stages = [StageReport(stage: spec.stages[0], rope: "θ 10000", records: records),
                      StageReport(stage: spec.stages[1], rope: "yarn ×4 (θ 10000)", records: records, check: check)]
        return (records, stages)
    }

    @Test func stageRowsComeFromTheLog() throws {
        let (_, stages) = try Self.run()
        #expect(stages[0].finalLoss == 4 && stages[0].seconds == 10 && stages[0].tokens == 20 * 1024)
        #expect(stages[1].finalLoss == 4 && stages[1].steps == 20 && stages[1].tokens == 20 * 2048)
        // Accuracy 0.5 at 1K is below 0.75: failed although the short-context loss held (4.1 ≤ 4.0 × 1.05).
        #expect(stages[1].check?.passed == false)
        #expect(StageCheckResult(task: .niah, lengths: [.init(length: 8, accuracy: 1, samples: 1)], minAccuracy: 1,
                                 baseShortLoss: 4, shortLoss: 4.3, maxLossIncrease: 0.05).passed == false)
    }

    @Test func svgHasTheCurveAndStageBoundaries() throws {
        let (records, stages) = try Self.run()
        let svg = TrainingReport.lossCurveSVG(records: records, stages: stages, title: "tiny <demo>")
        #if canImport(FoundationXML)
        let document = try XMLDocument(xmlString: svg)
        let boundaries = try document.nodes(forXPath: "//*[local-name()='line'][@class='stage-boundary']")
        #expect(boundaries.count == 1)
        let points = try #require(try document.nodes(forXPath: "//*[local-name()='polyline']/@points").first?.stringValue)
        let xy = points.split(separator: " ").map { $0.split(separator: ",").map { Double($0)! } }
        #expect(xy.count == 40)
        #expect(zip(xy, xy.dropFirst()).allSatisfy { $0[0] < $1[0] })                 // steps left to right
        #expect(xy[0][1] < xy[19][1] && xy[20][1] < xy[39][1])                        // falling loss goes down
        // The boundary sits between step 20 (stage 1's last) and step 21.
        let x1 = try document.nodes(forXPath: "//*[local-name()='line'][@class='stage-boundary']/@x1").first?.stringValue
        let boundaryX = Double(try #require(x1))!
        #expect(xy[19][0] <= boundaryX && boundaryX < xy[20][0])
        #endif
        #expect(svg.contains(">base-256 (256)</text>") && svg.contains(">yarn-1k (1K)</text>"))
        #expect(svg.contains("tiny &lt;demo&gt;"))
    }

    @Test func htmlIsSelfContainedWithStagesAndChecks() throws {
        let (records, stages) = try Self.run()
        let dir = TestSupport.scratchDirectory("report")
        let paths = try TrainingReport.write(directory: dir, records: records, stages: stages, title: "tiny demo",
                                             config: [("model", "/tmp/tiny"), ("stages", "tiny-demo.yaml")])
        let html = try String(contentsOfFile: paths.html, encoding: .utf8)
        let svg = try String(contentsOfFile: paths.svg, encoding: .utf8)
        #expect(html.contains(svg))
        #expect(html.contains("<tr><th>base-256</th><td>256</td><td style=\"text-align:left\">θ 10000</td><td>20</td><td>20480</td><td>0.001</td><td>4.0000</td><td>10s</td><td>–</td></tr>"))
        #expect(html.contains("<tr><th>yarn-1k</th><td>1K</td><td style=\"text-align:left\">yarn ×4 (θ 10000)</td>"))
        #expect(html.contains("<h3>Check after yarn-1k: passkey</h3>"))
        #expect(html.contains("0.50 (4)") && html.contains("short-context loss 4.0000 → 4.1000 (allowed rise 5.0 %)"))
        #expect(html.contains("<span class=\"fail\">failed</span>"))
        // No external assets: the only URL is the SVG namespace.
        let urls = html.components(separatedBy: "http").count - 1
        #expect(urls == html.components(separatedBy: "http://www.w3.org/2000/svg").count - 1)
        #expect(!html.contains("<script") && !html.contains("<link"))
    }
}
