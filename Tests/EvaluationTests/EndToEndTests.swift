import Foundation
import Testing
import TestSupport
@testable import Evaluation

/// `longctx serve` on a small random model, `longctx eval niah --endpoint` interrupted and resumed, outputs
/// cross-checked, and the same grid through the built-in engine (`--model`) giving the same greedy answers.
@Suite(.serialized, .timeLimit(.minutes(10))) struct EndToEndTests {
    final class Server {
        let process = Process()
        let errPath: String
        var port = 0
        init(model: String, dir: String) throws {
            errPath = dir + "/serve.err"
            FileManager.default.createFile(atPath: errPath, contents: nil)
            process.executableURL = URL(fileURLWithPath: TestSupport.longctxPath)
            process.arguments = ["serve", model, "--host", "127.0.0.1", "--port", "0"]
            process.standardError = FileHandle(forWritingAtPath: errPath)
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                let text = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
                if let r = text.range(of: "on http://127.0.0.1:") {
                    port = Int(text[r.upperBound...].prefix { $0.isNumber }) ?? 0
                    if port > 0 { return }
                }
                if !process.isRunning { break }
                usleep(20_000)
            }
            stop()
            throw EvalError("longctx serve did not start: \((try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")")
        }
        var url: String { "http://127.0.0.1:\(port)" }
        func stop() {
            if process.isRunning { process.terminate(); process.waitUntilExit() }
        }
        deinit { stop() }
    }

    static func model(_ dir: String, vocab: Int = 512) throws -> String {
        let path = dir + "/model-\(vocab)"
        let r = try TestSupport.longctx(["init-model", "--out", path, "--vocab", String(vocab), "--max-position", "2048"])
        guard r.status == 0 else { throw EvalError("init-model failed: \(r.stderr)") }
        return path
    }

    static func results(_ path: String) throws -> [SampleResult] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(SampleResult.self, from: Data($0.utf8)) }
    }

    @Test func serveEvalInterruptResumeAndBuiltInAgree() throws {
        let dir = TestSupport.scratchDirectory("e2e")
        let model = try Self.model(dir)
        let server = try Server(model: model, dir: dir)
        defer { server.stop() }
        let out = dir + "/niah"
        let grid = ["--lengths", "128,256,512", "--depths", "0,25,50,75,100", "--max-tokens", "24",
                    "--suite", TestSupport.repoRoot + "/eval/niah.json"]
        let total = 15
        let args = ["eval", "niah", "--endpoint", server.url, "--tokenizer", model, "--out", out] + grid
        // 1. An interrupted run: stops after 4 samples.
        var r = try TestSupport.longctx(args + ["--limit", "4"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Self.results(out + "/results.jsonl").count == 4)
        // 2. A run killed with SIGKILL part-way (checked: it had not finished).
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestSupport.longctxPath)
        p.arguments = args + ["--concurrency", "1"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        while p.isRunning && ((try? Self.results(out + "/results.jsonl").count) ?? 0) < 6 { usleep(1000) }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let afterKill = try Self.results(out + "/results.jsonl").count
        #expect(afterKill >= 6)
        // 3. The rerun completes without redoing anything: every id is recorded exactly once.
        r = try TestSupport.longctx(args)
        #expect(r.status == 0, "\(r.stderr)")
        let http = try Self.results(out + "/results.jsonl")
        #expect(http.count == total)
        #expect(Set(http.map(\.id)).count == total)
        #expect(http.allSatisfy { $0.status == "ok" && $0.servedPromptTokens == $0.promptTokens })
        #expect(http.allSatisfy { $0.promptTokens + $0.tokensToGenerate <= $0.length })
        // 4. The outputs agree with the JSONL.
        let sum = EvalSummary(results: http)
        let csv = try String(contentsOfFile: out + "/summary.csv", encoding: .utf8)
        #expect(csv == sum.csv())
        for l in [128, 256, 512] {
            let mean = http.filter { $0.length == l }.map { $0.score! }.reduce(0, +) / 5 * 100
            #expect(csv.contains("niah,\(l),\(String(format: "%.2f", pyRound2(mean))),5,0,"))
        }
        let svg = try String(contentsOfFile: out + "/heatmap.svg", encoding: .utf8)
        for x in http {
            #expect(svg.contains("depth \(Int(x.depthPercent!))%, \(x.length) tokens: \(String(format: "%.2f", x.score!))"))
        }
        let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
        #expect(html.contains(svg.trimmingCharacters(in: .newlines)))
        let json = try JSONDecoder().decode(EvalSummary.self, from: Data(contentsOf: URL(fileURLWithPath: out + "/summary.json")))
        #expect(json.cells == sum.cells)
        // 5. Same grid through the built-in engine: same greedy answers.
        let local = dir + "/local"
        r = try TestSupport.longctx(["eval", "niah", "--model", model, "--out", local] + grid)
        #expect(r.status == 0, "\(r.stderr)")
        let byId = Dictionary(uniqueKeysWithValues: try Self.results(local + "/results.jsonl").map { ($0.id, $0) })
        #expect(byId.count == total)
        for x in http {
            #expect(byId[x.id]?.prediction == x.prediction, "\(x.id)")
            #expect(byId[x.id]?.promptTokens == x.promptTokens)
        }
    }

    @Test func tokenizerMismatchStopsBeforeAnyRequest() throws {
        let dir = TestSupport.scratchDirectory("mismatch")
        let served = try Self.model(dir, vocab: 512)
        let other = try Self.model(dir, vocab: 700)
        let server = try Server(model: served, dir: dir)
        defer { server.stop() }
        let r = try TestSupport.longctx(["eval", "niah", "--endpoint", server.url, "--tokenizer", other, "--out", dir + "/o",
                                         "--lengths", "256", "--depths", "50"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("tokenizer/model mismatch"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/o/results.jsonl"))
    }
}
