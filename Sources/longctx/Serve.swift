import ArgumentParser
import EvalBackends
import Evaluation
import Foundation
import ModelIO
import Serving
import Transformer

extension SchedulingPolicy: ExpressibleByArgument {}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a model over an OpenAI-compatible HTTP API (/v1/models, /v1/completions, /v1/chat/completions, streaming).")

    @Argument(help: "Model directory (config.json, safetensors, tokenizer.json).") var model: String
    @Option(help: "Address to bind.") var host = "127.0.0.1"
    @Option(help: "Weight matrices: stored (as in the checkpoint, f32 arithmetic; the reference), q8_0, q4_0, q4_1 or q4_k (quantized at load, or a k-quant GGUF import's own blocks; decoding runs on integer dot products).") var weights: WeightFormat = .stored
    @Option(help: "Matrix-product arithmetic: f32 (the reference) or bf16 (bf16 weights × bf16-rounded activations, f32 accumulation, on AMX tiles for prefill where the CPU has amx_bf16 and vdpbf16ps where it has avx512_bf16; f32 elsewhere).") var compute: ComputePrecision = .f32
    @Option(help: "Port to bind (0: any free port; the bound port is printed).") var port = 8000
    @Option(name: .customLong("served-model-name"), help: "Model id reported by /v1/models (default: directory name).") var name: String?
    @Option(name: .customLong("max-queue"), help: "Generation requests admitted at once (running + waiting); more get 503.") var maxQueue = 64
    @Option(name: .customLong("request-timeout"), help: "Seconds a generation request may take, queueing included (then 504).") var requestTimeout: Double = 600
    @Option(name: .customLong("max-prompt-bytes"), help: "Longest prompt accepted, in UTF-8 bytes, checked before tokenizing (default: 32 per token of the model's context).") var maxPromptBytes: Int?
    @Option(name: .customLong("max-active"), help: "Generations interleaved a step at a time (each holds a KV cache); more wait their turn.") var maxActive = 8
    @Option(name: .customLong("prefill-chunk"), help: "Prompt tokens per scheduling step, so a long prompt does not hold up the others.") var prefillChunk = 128
    @Option(name: .customLong("rate-limit"), help: "Requests a second per client address (token bucket; over it: 429 with Retry-After, before the body is read). Default: no limit (a local eval harness, or a proxy in front, sends everything from one address).") var rateLimit: Double?
    @Option(name: .customLong("rate-burst"), help: "Requests a client may send at once after being idle (default: the --rate-limit rate).") var rateBurst: Double?
    @Option(name: .customLong("refusal-cost"), help: "Extra requests of its --rate-limit budget a request refused as invalid (4xx) costs its client (default 0).") var refusalCost: Double = 0
    @Option(help: "Which admitted generation steps next: shortest-first (least remaining prompt + max tokens; every 4th step the longest-waiting, so none starves) or round-robin (each in turn).") var schedule: SchedulingPolicy = .shortestFirst

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0…65535 (0: any free port), got \(port)") }
        guard maxQueue >= 1 else { throw ValidationError("--max-queue must be at least 1, got \(maxQueue)") }
        if let m = maxPromptBytes, m < 1 { throw ValidationError("--max-prompt-bytes must be at least 1, got \(m)") }
        guard maxActive >= 1 else { throw ValidationError("--max-active must be at least 1, got \(maxActive)") }
        guard prefillChunk >= 1 else { throw ValidationError("--prefill-chunk must be at least 1, got \(prefillChunk)") }
        if let r = rateLimit, !(r.isFinite && r > 0) { throw ValidationError("--rate-limit must be a positive number of requests a second, got \(r)") }
        if let b = rateBurst, !(b.isFinite && b >= 1) { throw ValidationError("--rate-burst must be at least 1, got \(b)") }
        guard refusalCost.isFinite, refusalCost >= 0 else { throw ValidationError("--refusal-cost must be 0 or more, got \(refusalCost)") }
        if rateLimit == nil, rateBurst != nil || refusalCost != 0 { throw ValidationError("--rate-burst and --refusal-cost need --rate-limit") }
        guard requestTimeout.isFinite, requestTimeout > 0 else {
            throw ValidationError("--request-timeout must be a positive number of seconds, got \(requestTimeout)")
        }
    }

    func run() async throws {
        let lm = try LanguageModel.load(directory: try ModelResolver.resolve(model), weights: weights, compute: compute)
        let id = name ?? URL(fileURLWithPath: model).lastPathComponent
        let server = OpenAIServer(backend: EngineBackend(lm, model: id, maxActive: maxActive, prefillChunk: prefillChunk, policy: schedule), host: host, port: port,
                                  limits: .init(maxQueued: maxQueue, requestSeconds: requestTimeout, maxPromptBytes: maxPromptBytes,
                                                rateLimit: rateLimit.map { RateLimit(rate: $0, burst: rateBurst, refusalCost: refusalCost) }))
        try await server.run { bound in
            FileHandle.standardError.write(Data("longctx serve: \(id) on http://\(host):\(bound)\n".utf8))
        }
    }
}
