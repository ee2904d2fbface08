import ArgumentParser
import ModelIO
import TensorCore
import Tokenizers

struct InitModel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init-model",
        abstract: "Write a small random-initialised Llama-family model directory (deterministic from a seed).")

    @Option(help: "Architecture: llama, qwen2 or mistral.") var arch = "llama"
    @Option(help: "Decoder layers.") var layers = 2
    @Option(help: "Hidden size.") var hidden = 64
    @Option(help: "MLP intermediate size.") var intermediate = 128
    @Option(help: "Attention heads.") var heads = 4
    @Option(name: .customLong("kv-heads"), help: "Key/value heads (GQA).") var kvHeads = 2
    @Option(name: .customLong("head-dim"), help: "Head dimension (default hidden/heads).") var headDim: Int?
    @Option(help: "Vocabulary size (at least 259: the tokenizer has 3 specials and 256 bytes).") var vocab = 512
    @Option(name: .customLong("max-position"), help: "max_position_embeddings.") var maxPosition = 2048
    @Option(name: .customLong("rope-theta"), help: "RoPE base θ.") var ropeTheta = 10000.0
    @Flag(name: .customLong("tie-embeddings"), help: "Tie the LM head to the embeddings.") var tie = false
    @Option(help: "Weight dtype: f32, bf16 or f16.") var dtype = "f32"
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(name: .customLong("max-shard-size"), help: "Largest shard (e.g. 5GB, 200KB).") var maxShardSize = "5GB"
    @Option(help: "Output directory (must not exist).") var out: String

    func validate() throws {
        let sizes: [(String, Int, ClosedRange<Int>)] = [
            ("--layers", layers, 1...1024), ("--hidden", hidden, 1...65536), ("--intermediate", intermediate, 1...262144),
            ("--heads", heads, 1...1024), ("--kv-heads", kvHeads, 1...1024), ("--vocab", vocab, 259...1 << 20),
            ("--max-position", maxPosition, 1...1 << 24)]
        for (name, v, range) in sizes where !range.contains(v) {
            throw ValidationError("\(name) must be in \(range.lowerBound)…\(range.upperBound), got \(v)")
        }
        guard heads % kvHeads == 0 else { throw ValidationError("--heads (\(heads)) must be a multiple of --kv-heads (\(kvHeads))") }
        if let headDim {
            guard (2...1024).contains(headDim), headDim % 2 == 0 else { throw ValidationError("--head-dim must be even, in 2…1024, got \(headDim)") }
        } else {
            guard hidden % heads == 0, (hidden / heads) % 2 == 0 else {
                throw ValidationError("--hidden (\(hidden)) / --heads (\(heads)) must be an even whole head dimension; or give --head-dim")
            }
        }
        guard ropeTheta.isFinite, ropeTheta > 1 else { throw ValidationError("--rope-theta must be a finite number > 1, got \(ropeTheta)") }
    }

    func run() async throws {
        var spec = RandomModelSpec()
        spec.architecture = arch
        spec.layers = layers; spec.hiddenSize = hidden; spec.intermediateSize = intermediate
        spec.heads = heads; spec.kvHeads = kvHeads; spec.headDim = headDim; spec.vocabSize = vocab
        spec.maxPositionEmbeddings = maxPosition; spec.ropeTheta = ropeTheta; spec.tieEmbeddings = tie; spec.seed = seed
        guard let dt = DType(name: dtype), [.f32, .bf16, .f16].contains(dt) else {
            throw ValidationError("--dtype must be f32, bf16 or f16 (got '\(dtype)')")
        }
        spec.dtype = dt
        guard let shard = CheckpointWriter.parseSize(maxShardSize) else {
            throw ValidationError("--max-shard-size '\(maxShardSize)' is not a size like 5GB or 200KB")
        }
        spec.maxShardBytes = shard
        // Model and tokenizer are assembled in a temporary sibling and renamed into place together.
        let tokenizer = try TokenizerFactory.make(vocabSize: vocab, seed: seed)
        guard !FileOps.exists(out) else { throw ModelIOError(out, "already exists; choose a new output directory") }
        let tmp = FileOps.temporarySibling(of: out)
        do {
            try spec.write(to: tmp)
            try FileOps.writeAtomically(tokenizer.tokenizerJSON, to: tmp + "/tokenizer.json")
            try FileOps.writeAtomically(tokenizer.configJSON, to: tmp + "/tokenizer_config.json")
            try FileOps.rename(tmp, to: out)
        } catch {
            FileOps.remove(tmp)
            throw error
        }
        print("wrote \(out)")
    }
}
