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
}

/// Options shared by every `longctx eval` suite.
struct EvalOptions: ParsableArguments {
    /// A needle-like sentence whose ids must agree between the tokenizer used for fitting and the model's.
    static let tokenizerProbe = "The special magic number for tidy-lantern is: 4927351."

    @Option(help: "Evaluate the built-in engine on this model directory.") var model: String?
    @Option(help: "Weight matrices: stored (as in the checkpoint, f32 arithmetic; the reference), q8_0, q4_0, q4_1 or q4_k (quantized at load, or a k-quant GGUF import's own blocks; decoding runs on integer dot products).") var weights: WeightFormat = .stored
    @Option(help: "Matrix-product arithmetic: f32 (the reference) or bf16 (bf16 weights × bf16-rounded activations, f32 accumulation, on AMX tiles for prefill where the CPU has amx_bf16 and vdpbf16ps where it has avx512_bf16; f32 elsewhere).") var compute: ComputePrecision = .f32
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
    @Flag(help: "Discard results in --out left by a different run (model, seed, rope, prompt format) and start over.") var restart = false
    @Flag(help: "Print the summary as JSON.") var json = false

    /// Most samples per cell.
    static let maxSamples = 10_000

    func validate() throws {
        guard (model == nil) != (endpoint == nil) else { throw ValidationError("give exactly one of --model DIR or --endpoint URL") }
        if let samples, !(1...Self.maxSamples).contains(samples) {
            throw ValidationError("--samples must be in 1…\(Self.maxSamples), got \(samples)")
        }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1, got \(limit)") }
        guard (1...1024).contains(concurrency) else { throw ValidationError("--concurrency must be in 1…1024, got \(concurrency)") }
        guard timeout.isFinite, timeout > 0 else { throw ValidationError("--timeout must be a positive number of seconds, got \(timeout)") }
        guard (0...100).contains(retries) else { throw ValidationError("--retries must be in 0…100, got \(retries)") }
        guard !out.isEmpty else { throw ValidationError("--out: empty path; name an output directory") }
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
            let lm = try LanguageModel.load(directory: try ModelResolver.resolve(model), weights: weights, compute: compute)
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
        if let servedModel { name = servedModel } else { name = try await OpenAIBackend.firstModel(url: endpoint!, apiKey: key, timeoutSeconds: timeout) }
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

    /// Opens the run's results store (refusing another run's results) and starts its lazily built sample plan.
    func plan(_ title: String, format: PromptFormat, describe: String) throws -> SamplePlan {
        let store = try RunRecord.open(directory: out, identity: try identity(title, format: format, describe: describe), restart: restart)
        FileOps.removeStaleTemporaries(in: out)
        return SamplePlan(store: store, limit: limit ?? .max)
    }

    /// Runs the plan's samples, writes every output, prints the summary.
    func execute(_ plan: SamplePlan, title: String, threshold: Double, backend: any CompletionBackend,
                 describe: String, format: PromptFormat) async throws {
        let store = plan.store
        try await EvalRunner.run(samples: plan.built, backend: backend, store: store, concurrency: concurrency) { done, total in
            Output.progress("\(title): \(done)/\(total) samples")
        }
        Output.progressDone()
        let ids = Set(plan.ids)
        let results = store.results.filter { ids.contains($0.id) }
        let summary = try EvalOutputs.write(directory: out, results: results, title: title, threshold: threshold,
                                            config: ["backend": describe, "prompt format": format.name, "seed": String(seed),
                                                     "haystack": Set(results.map(\.haystack)).sorted().joined(separator: ", ")])
        if json { try Output.json(summary); return }
        print(summary.csv(), terminator: "")
        let pending = ids.count - results.filter { $0.status == "ok" }.count
        print("\(results.count)/\(ids.count) samples recorded (\(summary.failed) failed, \(pending) still to run); outputs in \(out)")
        if summary.failed > 0 && summary.failed == results.count {
            throw EvalError("every sample failed (\(summary.failed)); first error: \(results.first?.error ?? "?")")
        }
    }

    /// With `--model`, refuses token budgets whose key/value cache cannot fit in this machine's memory, before
    /// any prompt is built.
    func checkMemory(_ lengths: [Int]) throws {
        guard let model, let longest = lengths.max() else { return }
        let config = try TransformerConfiguration(directory: ModelDirectory(path: try ModelResolver.resolve(model)))
        do { _ = try config.checkedCacheCapacity(longest) } catch {
            throw ValidationError("--lengths \(longest): \(error) (model \(model))")
        }
    }

    /// What produces this run's results (recorded in OUT/run.json; a rerun resumes only the same run).
    func identity(_ suite: String, format: PromptFormat, describe: String) throws -> [String: String] {
        var id = ["suite": suite, "backend": describe, "seed": String(seed), "prompt format": format.name]
        if let model {
            let dir = try ModelResolver.resolve(model)
            id["model"] = FileOps.realPath(dir) ?? dir
            id["model fingerprint"] = try ModelDirectory.fingerprint(dir)
            let config = try ModelDirectory(path: dir).configJSON
            id["rope"] = ["rope_theta", "rope_scaling", "max_position_embeddings"]
                .map { "\($0)=\(config[$0]?.serialized(indent: nil) ?? "null")" }.joined(separator: " ")
        }
        if let tokenizer { id["tokenizer fingerprint"] = try ModelDirectory.fingerprint(try ModelResolver.resolve(tokenizer)) }
        return id
    }

    func progressMaking(_ what: String) { Output.progress("preparing \(what)") }
}

extension Passkey.Layout: ExpressibleByArgument {}

struct EvalPasskey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "passkey",
        abstract: "Passkey retrieval (landmark-attention prompt) over lengths × depths; scored by the first integer.")
    @OptionGroup var options: EvalOptions
    @Option(help: "Token budgets (prompt + answer), e.g. 1K,2K,4K.") var lengths = "1K,2K,4K,8K"
    @Option(help: "Key depths in percent.") var depths = "0,25,50,75,100"
    @Option(help: "Prompt layout: landmark (the original prompt) or shuffled (random filler sentences, the key stated once; the demo's toy model).")
    var layout = Passkey.Layout.landmark

    func validate() throws {
        do { _ = try EvalOutputs.lengths(lengths); _ = try EvalOutputs.parseDepths(depths) } catch let e as EvalError {
            throw ValidationError(e.message)
        }
    }

    func run() async throws {
        let ls = try EvalOutputs.lengths(lengths), ds = try EvalOutputs.parseDepths(depths)
        try options.checkMemory(ls)
        let (tok, format, backend, describe) = try await options.setup()
        let maker = SampleMaker(counter: TokenizerCounter(tokenizer: tok), format: format, seed: options.seed)
        let plan = try options.plan("passkey", format: format, describe: describe)
        for l in ls {
            for d in ds {
                options.progressMaking("passkey \(l) d\(d)")
                try plan.add(maker, Passkey.spec(depthPercent: d, layout: layout), length: l, count: options.samples ?? 5, depth: d)
            }
        }
        try await options.execute(plan, title: "passkey", threshold: 85.6, backend: backend, describe: describe, format: format)
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

    func validate() throws {
        if let maxTokens, !(1...4096).contains(maxTokens) { throw ValidationError("--max-tokens must be in 1…4096, got \(maxTokens)") }
        do { _ = try lengths.map(EvalOutputs.lengths); _ = try depths.map(EvalOutputs.parseDepths) } catch let e as EvalError {
            throw ValidationError(e.message)
        }
    }

    func run() async throws {
        var s = try NIAHSuite.load(path: DataFile.locate(suite))
        if let maxTokens { s.tokensToGenerate = maxTokens }
        let (tok, format, backend, describe) = try await options.setup()
        let maker = SampleMaker(counter: TokenizerCounter(tokenizer: tok), format: format, seed: options.seed)
        let ls = try lengths.map(EvalOutputs.lengths) ?? s.lengths
        let ds = try depths.map(EvalOutputs.parseDepths) ?? s.depths
        try options.checkMemory(ls)
        let sentences = try NIAHSuite.sentences(files: haystack, essay: EssayGenerator(), minimum: max((ls.max() ?? 0) / 4, 64))
        let hay = haystack.isEmpty ? EssayGenerator.identity : "files:" + haystack.map { URL(fileURLWithPath: $0).lastPathComponent }.joined(separator: ",")
        let plan = try options.plan(s.name, format: format, describe: describe)
        for l in ls {
            for d in ds {
                options.progressMaking("\(s.name) \(l) d\(d)")
                try plan.add(maker, s.spec(depthPercent: d, sentences: sentences, haystack: hay), length: l,
                             count: options.samples ?? 1, depth: d)
            }
        }
        try await options.execute(plan, title: s.name, threshold: 85.6, backend: backend, describe: describe, format: format)
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

    func validate() throws {
        do { _ = try lengths.map(EvalOutputs.lengths) } catch let e as EvalError { throw ValidationError(e.message) }
    }

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
        let ls = try lengths.map(EvalOutputs.lengths) ?? cfg.lengths
        try options.checkMemory(ls)
        let plan = try options.plan("RULER", format: format, describe: describe)
        for l in ls {
            for t in names {
                options.progressMaking("\(t) \(l)")
                try plan.add(maker, suite.spec(t, length: l, maker: maker), length: l, count: options.samples ?? 10)
            }
        }
        try await options.execute(plan, title: "RULER", threshold: cfg.threshold, backend: backend, describe: describe, format: format)
    }
}

/// The samples of a run, built lazily against its results store: the ids of every sample the run consists of
/// (for the summary), and prompts only for those not yet scored, at most `--limit` of them.
final class SamplePlan {
    let store: ResultStore
    private(set) var remaining: Int
    private(set) var ids: [String] = []
    private(set) var built: [EvalSample] = []

    init(store: ResultStore, limit: Int) {
        self.store = store
        remaining = limit
    }

    func add(_ maker: SampleMaker, _ spec: TaskSpec, length: Int, count: Int, depth: Double? = nil) throws {
        ids += (0..<count).map { SampleMaker.sampleID(spec.name, length, $0, depth) }
        let store = self.store
        let new = try maker.samples(spec, length: length, count: count, depth: depth, wanted: { !store.isDone($0) }, limit: remaining)
        remaining -= new.count
        built += new
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
