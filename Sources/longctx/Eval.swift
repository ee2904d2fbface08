import ArgumentParser
import Basics
import EvalBackends
import Evaluation
import Foundation
import ModelIO
import Tokenizers
import Transformer

struct Eval: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Long-context evaluation: passkey, needle-in-a-haystack grids and the RULER suite.",
        subcommands: [EvalPasskey.self, EvalNIAH.self, EvalRuler.self])

    /// The `--lengths` list (`1K,2K,4K`), an error naming the option and the bad part.
    static func lengths(_ text: String) throws -> [Int] {
        do { return try parseLengths(text) } catch { throw EvalError("--lengths: \(error)") }
    }
}

/// Options shared by every `longctx eval` suite.
struct EvalOptions: ParsableArguments {
    /// A needle-like sentence whose ids must agree between the tokenizer used for fitting and the model's.
    static let tokenizerProbe = "The special magic number for tidy-lantern is: 4927351."

    @Option(help: "Evaluate the built-in engine on this model directory.") var model: String?
    @Option(help: "Evaluate an OpenAI-compatible server (e.g. http://127.0.0.1:8000 or …/v1).") var endpoint: String?
    @Option(help: "Tokenizer directory (tokenizer.json) of the served model; required with --endpoint.") var tokenizer: String?
    @Option(name: .customLong("served-model"), help: "Model name to send (default: the first of /v1/models).") var servedModel: String?
    @Option(help: "Endpoint API: completions or chat.") var api = "completions"
    @Option(help: "Output directory (results.jsonl, summary.json/.csv, heatmap.svg, report.html). Reruns resume.") var out: String
    @Option(help: "Samples per cell.") var samples: Int?
    @Option(help: "Seed of the task generators.") var seed: UInt64 = 42
    @Option(help: "Requests in flight at once (endpoint).") var concurrency = 1
    @Option(help: "Seconds per request before it is retried.") var timeout: Double = 600
    @Option(help: "Retries after a failed request (server error, timeout, malformed reply).") var retries = 3
    @Option(name: .customLong("api-key-env"), help: "Environment variable holding the API key.") var apiKeyEnv = "OPENAI_API_KEY"
    @Flag(name: .customLong("chat-template"), help: "Wrap prompts in the tokenizer's chat template (answer prefix opens the reply).") var chatTemplate = false
    @Option(help: "Stop after this many new samples (the run resumes later).") var limit: Int?
    @Flag(help: "Print the summary as JSON.") var json = false

    func validate() throws {
        guard (model == nil) != (endpoint == nil) else { throw ValidationError("give exactly one of --model DIR or --endpoint URL") }
        if endpoint != nil && tokenizer == nil { throw ValidationError("--endpoint needs --tokenizer DIR (the served model's tokenizer)") }
        guard api == "completions" || api == "chat" else { throw ValidationError("--api must be completions or chat") }
    }

    /// Tokenizer, prompt format and backend; with an endpoint, checks the served tokenizer before any generation.
    func setup() async throws -> (Tokenizer, PromptFormat, any CompletionBackend, String) {
        let format: (Tokenizer) throws -> PromptFormat = { tok in
            guard chatTemplate else { return .base }
            guard tok.hasChatTemplate else { throw EvalError("--chat-template: the tokenizer has no chat template") }
            _ = try tok.applyChatTemplate([ChatMessage(role: "user", content: "x")])
            return .chat(name: "chat-template") { (try? tok.applyChatTemplate([ChatMessage(role: "user", content: $0)])) ?? $0 }
        }
        if let model {
            let lm = try LanguageModel.load(directory: try ModelResolver.resolve(model))
            var tok = lm.tokenizer
            if let t = tokenizer {
                tok = try Tokenizer.load(directory: try ModelResolver.resolve(t))
                guard tok.encode(Self.tokenizerProbe) == lm.tokenizer.encode(Self.tokenizerProbe) else {
                    throw EvalError("\(t): tokenizer does not match the model's own tokenizer (\(model)); nothing was run")
                }
            }
            let name = URL(fileURLWithPath: model).lastPathComponent
            return (tok, try format(tok), EngineBackend(lm, model: name), "engine:\(model)")
        }
        let tok = try Tokenizer.load(directory: try ModelResolver.resolve(tokenizer!))
        let key = ProcessInfo.processInfo.environment[apiKeyEnv]
        let name: String
        if let servedModel { name = servedModel } else { name = try await OpenAIBackend.firstModel(url: endpoint!, apiKey: key) }
        var o = OpenAIBackend.Options()
        o.endpoint = api == "chat" ? .chat : .completions
        o.timeoutSeconds = timeout
        o.maxAttempts = retries + 1
        o.concurrency = concurrency
        let backend = OpenAIBackend(url: endpoint!, model: name, apiKey: key, options: o)
        let probe = Self.tokenizerProbe
        if let served = try await backend.serverTokenize(probe) {
            let local = tok.encodePrompt(probe)
            guard served == local else {
                throw EvalError("tokenizer/model mismatch: \(tokenizer!) encodes a probe as \(local.prefix(12)) but \(endpoint!) (\(name)) gives \(served.prefix(12)); nothing was sent for generation")
            }
        } else {
            FileHandle.standardError.write(Data("warning: \(endpoint!) has no /tokenize; cannot verify that \(tokenizer!) is the served tokenizer\n".utf8))
        }
        return (tok, try format(tok), backend, "endpoint:\(endpoint!)#\(name)")
    }

    /// Runs `samples`, writes every output, prints the summary.
    func execute(_ samples: [EvalSample], title: String, threshold: Double, backend: any CompletionBackend,
                 describe: String, format: PromptFormat) async throws {
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let store = try ResultStore(path: out + "/results.jsonl")
        var todo = samples.filter { !store.isDone($0.id) }
        if let limit { todo = Array(todo.prefix(limit)) }
        try await EvalRunner.run(samples: todo, backend: backend, store: store, concurrency: concurrency) { done, total in
            Output.progress("\(title): \(done)/\(total) samples")
        }
        Output.progressDone()
        let ids = Set(samples.map(\.id))
        let results = store.results.filter { ids.contains($0.id) }
        let summary = try EvalOutputs.write(directory: out, results: results, title: title, threshold: threshold,
                                            config: ["backend": describe, "prompt format": format.name, "seed": String(seed),
                                                     "haystack": Set(samples.map(\.haystack)).sorted().joined(separator: ", ")])
        if json { try Output.json(summary); return }
        print(summary.csv(), terminator: "")
        let pending = samples.count - results.filter { $0.status == "ok" }.count
        print("\(results.count)/\(samples.count) samples recorded (\(summary.failed) failed, \(pending) still to run); outputs in \(out)")
    }

    func progressMaking(_ what: String) { Output.progress("preparing \(what)") }
}

struct EvalPasskey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "passkey",
        abstract: "Passkey retrieval (landmark-attention prompt) over lengths × depths; scored by the first integer.")
    @OptionGroup var options: EvalOptions
    @Option(help: "Token budgets (prompt + answer), e.g. 1K,2K,4K.") var lengths = "1K,2K,4K,8K"
    @Option(help: "Key depths in percent.") var depths = "0,25,50,75,100"

    func run() async throws {
        let (tok, format, backend, describe) = try await options.setup()
        let maker = SampleMaker(counter: TokenizerCounter(tokenizer: tok), format: format, seed: options.seed)
        var samples: [EvalSample] = []
        for l in try Eval.lengths(lengths) {
            for d in try EvalOutputs.parseDepths(depths) {
                options.progressMaking("passkey \(l) d\(d)")
                samples += try maker.samples(Passkey.spec(depthPercent: d), length: l, count: options.samples ?? 5, depth: d)
            }
        }
        try await options.execute(samples, title: "passkey", threshold: 85.6, backend: backend, describe: describe, format: format)
    }
}

struct EvalNIAH: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "niah",
        abstract: "Needle-in-a-haystack grid (lengths × depths), single or multi-needle, suite from eval/niah*.json.")
    @OptionGroup var options: EvalOptions
    @Option(help: "Suite file (needles, question, expected answers).") var suite = "eval/niah.json"
    @Option(help: "Token budgets, e.g. 1K,2K,4K (default: the suite's).") var lengths: String?
    @Option(help: "Needle depths in percent (default: the suite's).") var depths: String?
    @Option(name: .customLong("haystack"), help: "Text file(s) for the haystack (default: built-in essay generator).") var haystack: [String] = []
    @Option(name: .customLong("max-tokens"), help: "Tokens to generate per answer (default: the suite's).") var maxTokens: Int?

    func run() async throws {
        var s = try NIAHSuite.load(path: DataFile.locate(suite))
        if let maxTokens { s.tokensToGenerate = maxTokens }
        let (tok, format, backend, describe) = try await options.setup()
        let maker = SampleMaker(counter: TokenizerCounter(tokenizer: tok), format: format, seed: options.seed)
        let ls = try lengths.map(Eval.lengths) ?? s.lengths
        let ds = try depths.map(EvalOutputs.parseDepths) ?? s.depths
        let sentences = try NIAHSuite.sentences(files: haystack, essay: EssayGenerator(), minimum: max((ls.max() ?? 0) / 4, 64))
        let hay = haystack.isEmpty ? EssayGenerator.identity : "files:" + haystack.map { URL(fileURLWithPath: $0).lastPathComponent }.joined(separator: ",")
        var samples: [EvalSample] = []
        for l in ls {
            for d in ds {
                options.progressMaking("\(s.name) \(l) d\(d)")
                samples += try maker.samples(s.spec(depthPercent: d, sentences: sentences, haystack: hay), length: l,
                                             count: options.samples ?? 1, depth: d)
            }
        }
        try await options.execute(samples, title: s.name, threshold: 85.6, backend: backend, describe: describe, format: format)
    }
}

struct EvalRuler: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ruler",
        abstract: "RULER's synthetic tasks (configuration in eval/ruler.json); task × length table and effective length.")
    @OptionGroup var options: EvalOptions
    @Option(help: "RULER configuration file.") var config = "eval/ruler.json"
    @Option(help: "Tasks (comma-separated; default: all in the file that can run).") var tasks: String?
    @Option(help: "Token budgets (default: the file's 4K…128K).") var lengths: String?
    @Option(name: .customLong("qa-squad"), help: "SQuAD v2.0 dev JSON for qa_1.") var squad: String?
    @Option(name: .customLong("qa-hotpotqa"), help: "HotpotQA dev distractor JSON for qa_2.") var hotpot: String?

    func run() async throws {
        let cfg = try RulerConfig.load(path: DataFile.locate(config))
        var qa: [String: QADataset] = [:]
        if let squad { qa["squad"] = try QADataset.squad(path: squad) }
        if let hotpot { qa["hotpotqa"] = try QADataset.hotpot(path: hotpot) }
        let suite = RulerSuite(config: cfg, qa: qa)
        let names = tasks.map { $0.split(separator: ",").map(String.init) }
            ?? cfg.order.filter { cfg.tasks[$0]?.family != "qa" || qa[cfg.tasks[$0]?.args.dataset ?? ""] != nil }
        let (tok, format, backend, describe) = try await options.setup()
        let maker = SampleMaker(counter: TokenizerCounter(tokenizer: tok), format: format, seed: options.seed)
        var samples: [EvalSample] = []
        for l in try lengths.map(Eval.lengths) ?? cfg.lengths {
            for t in names {
                options.progressMaking("\(t) \(l)")
                samples += try maker.samples(suite.spec(t, length: l, maker: maker), length: l, count: options.samples ?? 10)
            }
        }
        try await options.execute(samples, title: "RULER", threshold: cfg.threshold, backend: backend, describe: describe, format: format)
    }
}

/// Task-suite files named relative to the repository (`eval/…`): used as given when they exist, otherwise looked up
/// beside the running binary's checkout (`.build/<triple>/release/longctx` → the repository root), so the default
/// suites work from any directory.
enum DataFile {
    static func locate(_ path: String) -> String {
        if path.hasPrefix("/") || FileManager.default.fileExists(atPath: path) { return path }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            let candidate = dir.appendingPathComponent(path).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            dir.deleteLastPathComponent()
        }
        return path
    }
}
