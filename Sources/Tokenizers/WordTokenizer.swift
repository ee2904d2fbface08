import Basics
import Foundation
import ModelIO

/// A tiny word-level tokenizer for toy models (a few dozen ids), written as a standard `tokenizer.json` that
/// Hugging Face `tokenizers` loads and encodes identically.
///
/// Pipeline: normalizer `Replace("\n" → " ")`; pre-tokenizer `Metaspace("▁", prepend_scheme always)` then
/// `Punctuation(Isolated)` then `Digits(individual)`; model `BPE` with no merges and `ignore_merges` (every
/// pre-tokenized word is looked up whole; an unknown word becomes one `<unk>`); decoder `Metaspace`. So
/// `"The pass key is 12345."` is `▁The ▁pass ▁key ▁is ▁ 1 2 3 4 5 .` and decodes back to the same text.
///
/// Ids: `<|endoftext|>` = 0 (end of document, padding), `<unk>` = 1, `▁` = 2, digits `0`–`9` = 3…12, then the
/// punctuation and words in the order given (duplicates dropped).
public enum WordTokenizer {
    public static let endOfText = "<|endoftext|>"
    public static let unknown = "<unk>"
    public static let space = "\u{2581}"

    /// The vocabulary's words (each with the `▁` word prefix) and punctuation marks that `text` pre-tokenizes into,
    /// in order of first appearance; digits are left out (they are always in the vocabulary).
    public static func pieces(of text: String) -> [String] {
        var seen = Set<String>()
        var out: [String] = []
        for word in text.replacingOccurrences(of: "\n", with: " ").split(separator: " ") {
            var current = space
            func flush() {
                if current != space && !current.isEmpty && seen.insert(current).inserted { out.append(current) }
                current = ""
            }
            for ch in word {
                if ch.isNumber && ch.isASCII { flush() } else if ch.isPunctuation {
                    flush()
                    if seen.insert(String(ch)).inserted { out.append(String(ch)) }
                } else { current.append(ch) }
            }
            flush()
        }
        return out
    }

    /// `tokenizer.json` and `tokenizer_config.json` text for a vocabulary of the specials, `▁`, the digits and
    /// `pieces` (words written with their `▁` prefix, punctuation marks alone).
    public static func make(pieces: [String]) -> (tokenizerJSON: String, configJSON: String) {
        var vocabulary = [endOfText, unknown, space] + (0...9).map(String.init)
        for piece in pieces where !vocabulary.contains(piece) { vocabulary.append(piece) }
        let added: [JSONValue] = [endOfText, unknown].enumerated().map { id, content in
            .object(JSONObject([("id", .int(id)), ("content", .string(content)), ("single_word", .bool(false)),
                                ("lstrip", .bool(false)), ("rstrip", .bool(false)), ("normalized", .bool(false)),
                                ("special", .bool(true))]))
        }
        let metaspace: [(String, JSONValue)] = [("type", .string("Metaspace")), ("replacement", .string(space)),
                                                ("prepend_scheme", .string("always")), ("split", .bool(true))]
        let tok = JSONObject([
            ("version", .string("1.0")), ("truncation", .null), ("padding", .null),
            ("added_tokens", .array(added)),
            ("normalizer", .object(JSONObject([("type", .string("Replace")),
                                               ("pattern", .object(JSONObject([("String", .string("\n"))]))),
                                               ("content", .string(" "))]))),
            ("pre_tokenizer", .object(JSONObject([("type", .string("Sequence")), ("pretokenizers", .array([
                .object(JSONObject(metaspace)),
                .object(JSONObject([("type", .string("Punctuation")), ("behavior", .string("Isolated"))])),
                .object(JSONObject([("type", .string("Digits")), ("individual_digits", .bool(true))])),
            ]))]))),
            ("post_processor", .null),
            ("decoder", .object(JSONObject(metaspace))),
            ("model", .object(JSONObject([
                ("type", .string("BPE")), ("dropout", .null), ("unk_token", .string(unknown)),
                ("continuing_subword_prefix", .null), ("end_of_word_suffix", .null), ("fuse_unk", .bool(true)),
                ("byte_fallback", .bool(false)), ("ignore_merges", .bool(true)),
                ("vocab", .object(JSONObject(vocabulary.enumerated().map { ($1, .int($0)) }))), ("merges", .array([])),
            ]))),
        ])
        let decoderEntries: [(String, JSONValue)] = added.enumerated().map { id, token in
            var o = token.objectValue!
            o["id"] = nil
            return (String(id), .object(o))
        }
        let cfg = JSONObject([
            ("added_tokens_decoder", .object(JSONObject(decoderEntries))),
            ("clean_up_tokenization_spaces", .bool(false)),
            ("eos_token", .string(endOfText)),
            ("model_max_length", .int(1_000_000)),
            ("pad_token", .string(endOfText)),
            ("tokenizer_class", .string("PreTrainedTokenizerFast")),
            ("unk_token", .string(unknown)),
        ])
        return (JSONValue.object(tok).serialized() + "\n", JSONValue.object(cfg).serialized() + "\n")
    }

    /// Vocabulary size of ``make(pieces:)`` for `pieces`.
    public static func vocabularySize(pieces: [String]) -> Int {
        13 + Set(pieces).subtracting([endOfText, unknown, space] + (0...9).map(String.init)).count
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` into `directory` (each atomically).
    public static func write(to directory: String, pieces: [String]) throws {
        let (t, c) = make(pieces: pieces)
        try FileOps.writeAtomically(t, to: (directory as NSString).appendingPathComponent("tokenizer.json"))
        try FileOps.writeAtomically(c, to: (directory as NSString).appendingPathComponent("tokenizer_config.json"))
    }
}
