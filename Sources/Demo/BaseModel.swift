import Basics
import EvalBackends
import Evaluation
import Foundation
import ModelIO
import TensorCore
import Tokenizers
import Training

/// Act two's tiny base, trained from scratch by `longctx train`'s trainer (`longctx demo --from-scratch`):
/// a word-level tokenizer over the passkey prompt's words, a random Llama of the recipe's shape, a supervised
/// passkey corpus (prompt → key, answer-only loss) and one training stage at the trained length.
public enum ToyBase {
    /// Vocabulary pieces: every word and mark of the passkey prompt (``Passkey``'s strings).
    public static var pieces: [String] {
        WordTokenizer.pieces(of: [Passkey.task, Passkey.filler, Passkey.keyLine(1), Passkey.question].joined(separator: " "))
    }

    /// Writes the untrained model directory (config, f32 random weights, tokenizer) to `out`.
    public static func writeInitial(_ recipe: ToyRecipe, seed: UInt64, to out: String) throws {
        var spec = RandomModelSpec()
        spec.layers = recipe.layers
        spec.hiddenSize = recipe.hidden
        spec.heads = recipe.heads
        spec.kvHeads = recipe.heads
        spec.intermediateSize = recipe.intermediate
        spec.vocabSize = WordTokenizer.vocabularySize(pieces: pieces)
        spec.maxPositionEmbeddings = recipe.trainedLength
        spec.ropeTheta = recipe.ropeTheta
        spec.dtype = .f32
        spec.seed = seed
        let tmp = FileOps.temporarySibling(of: out)
        do {
            try spec.write(to: tmp)
            var config = spec.configJSON()
            config["bos_token_id"] = nil
            config["eos_token_id"] = .int(0)   // <|endoftext|>
            try FileOps.writeAtomically(JSONValue.object(config).serialized() + "\n",
                                        to: (tmp as NSString).appendingPathComponent("config.json"))
            try WordTokenizer.write(to: tmp, pieces: pieces)
            try FileOps.rename(tmp, to: out)
        } catch {
            FileOps.remove(tmp)
            throw error
        }
    }

    /// Writes `count` supervised passkey records of at most `maxTokens` tokens (prompt, completion and EOS, counted
    /// with the tokenizer of `modelDirectory`) as JSONL to `path`.
    public static func writeCorpus(modelDirectory: String, keys: Passkey.Keys, layout: Passkey.Layout, seed: UInt64, count: Int,
                                   maxTokens: Int, to path: String) throws {
        let tokenizer = try Tokenizer.load(directory: modelDirectory)
        let corpus = PasskeyCorpus(counter: TokenizerCounter(tokenizer: tokenizer), keys: keys, layout: layout, seed: seed)
        try FileOps.writeAtomically(PasskeyCorpus.jsonl(try corpus.records(count: count, maxTokens: maxTokens)), to: path)
    }

    /// Trains the base from scratch in `work` and copies the final model directory to `out` (which must not
    /// exist). Returns the training log.
    @discardableResult
    public static func train(_ recipe: ToyRecipe, seed: UInt64, work: String, out: String, workers: Int,
                             progress: TrainingProgress?) throws -> [TrainingLogRecord] {
        guard !FileOps.exists(out) else { throw TrainingInputError(out, "already exists; choose a new output directory") }
        try FileOps.makeDirectory(work)
        let initial = (work as NSString).appendingPathComponent("initial")
        if !FileOps.exists(initial) { try writeInitial(recipe, seed: seed, to: initial) }
        let corpus = (work as NSString).appendingPathComponent("passkey-\(recipe.trainedLength).jsonl")
        try writeCorpus(modelDirectory: initial, keys: recipe.keys, layout: recipe.layout, seed: seed, count: recipe.baseRecords,
                        maxTokens: recipe.trainedLength, to: corpus)
        let stages = (work as NSString).appendingPathComponent("base.yaml")
        try FileOps.writeAtomically(recipe.baseStagesYAML(seed: seed), to: stages)
        let run = (work as NSString).appendingPathComponent("base-run")
        FileOps.remove(run)
        let trainer = try Trainer(TrainRequest(model: initial, data: [DomainSpec(path: corpus)], stagesPath: stages,
                                               out: run, workers: workers))
        let records = try trainer.run(progress: progress)
        let final = (run as NSString).appendingPathComponent("final")
        let tmp = FileOps.temporarySibling(of: out)
        try FileManager.default.copyItem(atPath: final, toPath: tmp)
        try FileManager.default.copyItem(atPath: (run as NSString).appendingPathComponent("train.jsonl"),
                                         toPath: (tmp as NSString).appendingPathComponent("train.jsonl"))
        try FileOps.rename(tmp, to: out)
        return records
    }
}
