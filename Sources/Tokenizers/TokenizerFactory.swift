import Basics
import Foundation
import ModelIO

/// Creates a small deterministic byte-level BPE tokenizer (GPT-2 pre-tokenizer regex, ChatML chat
/// template, specials `<|endoftext|>` = 0, `<|im_start|>` = 1, `<|im_end|>` = 2) for random models.
///
/// The merges are learnt by a plain BPE trainer (most frequent adjacent pair, ties to the smaller
/// (left id, right id)) on an English-like corpus generated from the seed. Ids: 3 specials, 256 byte
/// symbols in byte order, then merges; when the corpus runs out of pairs (or after 4,000 merges) the
/// vocabulary is filled with `<|reserved_N|>` tokens so that it has exactly `vocabSize` entries.
public enum TokenizerFactory {
    public static let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    public static let chatTemplate = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    public static let maxMerges = 4000

    /// The smallest vocabulary: 3 specials + 256 byte symbols.
    public static var minimumVocabularySize: Int { specials.count + 256 }

    /// `tokenizer.json` and `tokenizer_config.json` text for a vocabulary of `vocabSize` ids.
    public static func make(vocabSize: Int, seed: UInt64) throws -> (tokenizerJSON: String, configJSON: String) {
        guard vocabSize >= minimumVocabularySize else {
            throw TokenizerError("tokenizer.json", "vocabulary size \(vocabSize) is too small for a byte-level tokenizer: need at least \(minimumVocabularySize) (3 specials + 256 bytes)")
        }
        var tokens: [[UInt32]] = specials.map { [UInt32](scalarsOf: $0) }
        for b in 0..<256 { tokens.append([ByteLevelTable.byteToScalar[b]]) }
        let byteBase = specials.count
        // Word frequencies of the corpus, pre-tokenized like the tokenizer will (GPT-2 regex, byte-level).
        var counts = [[UInt32]: Int]()
        let text = corpus(seed: seed, words: 20_000 + 20 * min(vocabSize, maxMerges))
        let scalars = [UInt32](scalarsOf: text)
        for r in SplitPattern.gpt2.matches(scalars) { counts[PreTokenizer.byteMap(scalars[r]), default: 0] += 1 }
        var words = counts.keys.sorted { $0.lexicographicallyPrecedes($1) }.map { w in (w.map { Int(ByteLevelTable.scalarToByte[$0]!) + byteBase }, counts[w]!) }
        var merges = [(Int, Int)]()
        let wanted = min(vocabSize - tokens.count, maxMerges)
        while merges.count < wanted {
            var pairs = [UInt64: Int]()
            for (w, c) in words where w.count > 1 {
                for i in 0..<(w.count - 1) { pairs[UInt64(w[i]) << 32 | UInt64(w[i + 1]), default: 0] += c }
            }
            guard let best = pairs.max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }) else { break }
            let a = Int(best.key >> 32), b = Int(best.key & 0xFFFF_FFFF)
            let newId = tokens.count
            tokens.append(tokens[a] + tokens[b])
            merges.append((a, b))
            for k in words.indices where words[k].0.count > 1 {
                var w = words[k].0
                var i = 0
                var changed = false
                while i < w.count - 1 {
                    if w[i] == a && w[i + 1] == b { w[i] = newId; w.remove(at: i + 1); changed = true }
                    i += 1
                }
                if changed { words[k].0 = w }
            }
        }
        var n = 0
        while tokens.count < vocabSize { tokens.append([UInt32](scalarsOf: "<|reserved_\(n)|>")); n += 1 }

        var vocab = [(String, JSONValue)]()
        for (i, t) in tokens.enumerated() { vocab.append((t.string, .int(i))) }
        let mergeJSON: [JSONValue] = merges.map { .array([.string(tokens[$0.0].string), .string(tokens[$0.1].string)]) }
        func added(_ i: Int) -> JSONValue {
            .object(JSONObject([("id", .int(i)), ("content", .string(specials[i])), ("single_word", .bool(false)),
                                ("lstrip", .bool(false)), ("rstrip", .bool(false)), ("normalized", .bool(false)), ("special", .bool(true))]))
        }
        let byteLevel: [(String, JSONValue)] = [("type", .string("ByteLevel")), ("add_prefix_space", .bool(false)),
                                               ("trim_offsets", .bool(true)), ("use_regex", .bool(true))]
        let tok = JSONObject([
            ("version", .string("1.0")), ("truncation", .null), ("padding", .null),
            ("added_tokens", .array(specials.indices.map(added))),
            ("normalizer", .null),
            ("pre_tokenizer", .object(JSONObject(byteLevel))),
            ("post_processor", .object(JSONObject(byteLevel))),
            ("decoder", .object(JSONObject(byteLevel))),
            ("model", .object(JSONObject([
                ("type", .string("BPE")), ("dropout", .null), ("unk_token", .null), ("continuing_subword_prefix", .null),
                ("end_of_word_suffix", .null), ("fuse_unk", .bool(false)), ("byte_fallback", .bool(false)),
                ("ignore_merges", .bool(false)), ("vocab", .object(JSONObject(vocab))), ("merges", .array(mergeJSON)),
            ]))),
        ])
        var decoderEntries = [(String, JSONValue)]()
        for i in specials.indices {
            var o = added(i).objectValue!
            o["id"] = nil
            decoderEntries.append((String(i), .object(o)))
        }
        let cfg = JSONObject([
            ("add_prefix_space", .bool(false)),
            ("added_tokens_decoder", .object(JSONObject(decoderEntries))),
            ("bos_token", .string("<|im_start|>")),
            ("chat_template", .string(chatTemplate)),
            ("clean_up_tokenization_spaces", .bool(false)),
            ("eos_token", .string("<|im_end|>")),
            ("model_max_length", .int(1_000_000)),
            ("pad_token", .string("<|endoftext|>")),
            ("tokenizer_class", .string("PreTrainedTokenizerFast")),
            ("unk_token", .string("<|endoftext|>")),
        ])
        return (JSONValue.object(tok).serialized() + "\n", JSONValue.object(cfg).serialized() + "\n")
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` into `directory` (each atomically).
    public static func write(to directory: String, vocabSize: Int, seed: UInt64) throws {
        let (t, c) = try make(vocabSize: vocabSize, seed: seed)
        try FileOps.writeAtomically(t, to: (directory as NSString).appendingPathComponent("tokenizer.json"))
        try FileOps.writeAtomically(c, to: (directory as NSString).appendingPathComponent("tokenizer_config.json"))
    }

    /// English-like text generated from `seed`: sentences of Zipf-distributed pseudo-words made of
    /// syllables, with capitals, punctuation, numbers and line breaks.
    public static func corpus(seed: UInt64, words count: Int) -> String {
        var rng = SeededRandom(seed: seed &+ 0x9E37_79B9)
        let onsets = ["", "b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "th", "st", "ch", "w", "pr", "tr"]
        let vowels = ["a", "e", "i", "o", "u", "ea", "ou", "ai", "y"]
        let codas = ["", "", "n", "r", "s", "t", "ng", "ll", "d", "ck"]
        var lexicon = ["the", "of", "and", "to", "in", "is", "it", "that", "was", "for", "on", "with", "as", "be", "at"]
        while lexicon.count < 3000 {
            var w = ""
            for _ in 0...(Int(rng.next() % 3)) {
                w += onsets[Int(rng.next() % UInt64(onsets.count))] + vowels[Int(rng.next() % UInt64(vowels.count))]
                    + codas[Int(rng.next() % UInt64(codas.count))]
            }
            lexicon.append(w)
        }
        var out = ""
        var sentenceStart = true
        for i in 0..<count {
            // Zipf-like rank: exponent of a uniform draw.
            let r = min(lexicon.count - 1, Int(pow(Double(lexicon.count), rng.uniform())) - 1)
            var w = lexicon[r]
            if sentenceStart { w = w.prefix(1).uppercased() + w.dropFirst(); sentenceStart = false }
            if rng.next() % 50 == 0 { w = String(rng.next() % 10_000) }
            out += (i == 0 ? "" : " ") + w
            let p = rng.next() % 100
            if p < 7 { out += "."; sentenceStart = true; if rng.next() % 5 == 0 { out += "\n" } }
            else if p < 12 { out += "," }
            else if p == 12 { out += "?"; sentenceStart = true }
        }
        return out
    }
}
