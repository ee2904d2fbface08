import Basics
import Foundation
import ModelIO

/// Builds Hugging Face tokenizer files (`tokenizer.json`, `tokenizer_config.json`, …) from the
/// tokenizer a GGUF file embeds (`tokenizer.ggml.*`).
///
/// Supported: `tokenizer.ggml.model = gpt2` (byte-level BPE: tokens, merges, token types) with the
/// pre-tokenizers llama.cpp names `smollm` (and the others sharing its regexes: `starcoder`, `refact`,
/// `command-r`, `olmo`), `llama-bpe`/`llama3`, `qwen2`, `gpt2`. Each is written the way the model's own
/// Hugging Face `tokenizer.json` writes it (SmolLM2: `Digits(individual_digits)` then `ByteLevel`;
/// Llama 3 and Qwen2: a `Split` regex then `ByteLevel` without its own regex), so that the `tokenizers`
/// library reproduces llama.cpp's splitting (`src/llama-vocab.cpp`, `LLAMA_VOCAB_PRE_TYPE_*`).
/// Control (type 3) and user-defined (type 4) tokens become added tokens, split out before BPE.
public struct GGUFTokenizerBuilder {
    public static let preTokenizers = ["smollm", "starcoder", "refact", "command-r", "olmo", "llama-bpe", "llama3", "qwen2", "gpt2"]

    public let path: String
    public let tokens: [String]
    public let merges: [String]
    public let tokenTypes: [Int]
    public let preName: String
    public let bosId: Int?
    public let eosId: Int?
    public let unkId: Int?
    public let padId: Int?
    public let addBos: Bool
    public let addEos: Bool
    public let chatTemplate: String?

    public init(_ g: GGUFFile) throws {
        path = g.path
        let model = try g.string("tokenizer.ggml.model")
        guard model == "gpt2" else {
            throw ModelIOError(g.path, "tokenizer.ggml.model '\(model)' is not supported by import (only 'gpt2', byte-level BPE)")
        }
        let toks = try g.strings("tokenizer.ggml.tokens")
        tokens = toks
        merges = try g.strings("tokenizer.ggml.merges")
        let types = try g.ints("tokenizer.ggml.token_type") ?? Array(repeating: 1, count: tokens.count)
        guard types.count == tokens.count else {
            throw ModelIOError(g.path, "tokenizer.ggml.token_type has \(types.count) entries but tokenizer.ggml.tokens has \(tokens.count)")
        }
        tokenTypes = types
        let pre = g["tokenizer.ggml.pre"]?.stringValue ?? "gpt2"
        guard GGUFTokenizerBuilder.preTokenizers.contains(pre) else {
            throw ModelIOError(g.path, "tokenizer.ggml.pre '\(pre)' is not supported by import (supported: \(GGUFTokenizerBuilder.preTokenizers.joined(separator: ", ")))")
        }
        preName = pre
        bosId = try GGUFTokenizerBuilder.tokenId(g, "tokenizer.ggml.bos_token_id", count: toks.count)
        eosId = try GGUFTokenizerBuilder.tokenId(g, "tokenizer.ggml.eos_token_id", count: toks.count)
        unkId = try GGUFTokenizerBuilder.tokenId(g, "tokenizer.ggml.unknown_token_id", count: toks.count)
        padId = try GGUFTokenizerBuilder.tokenId(g, "tokenizer.ggml.padding_token_id", count: toks.count)
        addBos = g["tokenizer.ggml.add_bos_token"]?.boolValue ?? false
        addEos = g["tokenizer.ggml.add_eos_token"]?.boolValue ?? false
        chatTemplate = g["tokenizer.chat_template"]?.stringValue
        var seen = [String: Int]()
        for (i, t) in tokens.enumerated() {
            if let j = seen[t] { throw ModelIOError(g.path, "tokenizer.ggml.tokens: token \(t.debugDescription) appears at ids \(j) and \(i)") }
            seen[t] = i
        }
    }

    static func tokenId(_ g: GGUFFile, _ key: String, count: Int) throws -> Int? {
        guard let v = g[key] else { return nil }
        guard let i = v.intValue, i >= 0, i < count else {
            throw ModelIOError(g.path, "metadata '\(key)' = \(v) is not a token id in 0..<\(count)")
        }
        return i
    }

    static let llama3Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    static func byteLevel(prefix: Bool, trim: Bool, regex: Bool) -> JSONValue {
        .object(JSONObject([("type", .string("ByteLevel")), ("add_prefix_space", .bool(prefix)),
                            ("trim_offsets", .bool(trim)), ("use_regex", .bool(regex))]))
    }

    static func split(_ regex: String) -> JSONValue {
        .object(JSONObject([("type", .string("Split")), ("pattern", .object(JSONObject([("Regex", .string(regex))]))),
                            ("behavior", .string("Isolated")), ("invert", .bool(false))]))
    }

    static func sequence(_ key: String, _ items: [JSONValue]) -> JSONValue {
        .object(JSONObject([("type", .string("Sequence")), (key, .array(items))]))
    }

    /// Ids of the tokens split out before BPE: control and user-defined types.
    public var addedTokenIds: [Int] { tokenTypes.indices.filter { tokenTypes[$0] == 3 || tokenTypes[$0] == 4 } }

    func addedToken(_ i: Int) -> JSONObject {
        JSONObject([("id", .int(i)), ("content", .string(tokens[i])), ("single_word", .bool(false)),
                    ("lstrip", .bool(false)), ("rstrip", .bool(false)), ("normalized", .bool(false)),
                    ("special", .bool(tokenTypes[i] == 3))])
    }

    /// `tokenizer.json` (format version 1.0 of the `tokenizers` library).
    public func tokenizerJSON() -> JSONObject {
        var normalizer = JSONValue.null
        var preTokenizer: JSONValue
        var postProcessor: JSONValue
        var decoder = GGUFTokenizerBuilder.byteLevel(prefix: true, trim: true, regex: true)
        var ignoreMerges = false
        switch preName {
        case "llama-bpe", "llama3":
            preTokenizer = GGUFTokenizerBuilder.sequence("pretokenizers", [
                GGUFTokenizerBuilder.split(GGUFTokenizerBuilder.llama3Regex),
                GGUFTokenizerBuilder.byteLevel(prefix: false, trim: true, regex: false)])
            postProcessor = GGUFTokenizerBuilder.byteLevel(prefix: true, trim: false, regex: true)
            ignoreMerges = true
        case "qwen2":
            normalizer = .object(JSONObject([("type", .string("NFC"))]))
            preTokenizer = GGUFTokenizerBuilder.sequence("pretokenizers", [
                GGUFTokenizerBuilder.split(GGUFTokenizerBuilder.qwen2Regex),
                GGUFTokenizerBuilder.byteLevel(prefix: false, trim: false, regex: false)])
            postProcessor = GGUFTokenizerBuilder.byteLevel(prefix: false, trim: false, regex: false)
            decoder = GGUFTokenizerBuilder.byteLevel(prefix: false, trim: false, regex: false)
        case "gpt2":
            preTokenizer = GGUFTokenizerBuilder.byteLevel(prefix: false, trim: true, regex: true)
            postProcessor = GGUFTokenizerBuilder.byteLevel(prefix: true, trim: false, regex: true)
        default:  // smollm and the pre-tokenizers sharing its two regexes
            preTokenizer = GGUFTokenizerBuilder.sequence("pretokenizers", [
                .object(JSONObject([("type", .string("Digits")), ("individual_digits", .bool(true))])),
                GGUFTokenizerBuilder.byteLevel(prefix: false, trim: true, regex: true)])
            postProcessor = GGUFTokenizerBuilder.byteLevel(prefix: true, trim: false, regex: true)
        }
        if addBos || addEos {
            postProcessor = GGUFTokenizerBuilder.sequence("processors", [postProcessor, templateProcessing()])
        }
        var vocab = [(String, JSONValue)]()
        vocab.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() { vocab.append((t, .int(i))) }
        let model = JSONObject([
            ("type", .string("BPE")), ("dropout", .null), ("unk_token", unkId.map { .string(tokens[$0]) } ?? .null),
            ("continuing_subword_prefix", .null), ("end_of_word_suffix", .null), ("fuse_unk", .bool(false)),
            ("byte_fallback", .bool(false)), ("ignore_merges", .bool(ignoreMerges)),
            ("vocab", .object(JSONObject(vocab))), ("merges", .array(merges.map { .string($0) })),
        ])
        return JSONObject([
            ("version", .string("1.0")), ("truncation", .null), ("padding", .null),
            ("added_tokens", .array(addedTokenIds.map { .object(addedToken($0)) })),
            ("normalizer", normalizer), ("pre_tokenizer", preTokenizer), ("post_processor", postProcessor),
            ("decoder", decoder), ("model", .object(model)),
        ])
    }

    /// `TemplateProcessing` that adds BOS/EOS as `tokenizer.ggml.add_bos_token`/`add_eos_token` say.
    func templateProcessing() -> JSONValue {
        func special(_ id: Int) -> JSONValue { .object(JSONObject([("SpecialToken", .object(JSONObject([("id", .string(tokens[id])), ("type_id", .int(0))])))])) }
        func seq(_ name: String, _ type: Int) -> JSONValue { .object(JSONObject([("Sequence", .object(JSONObject([("id", .string(name)), ("type_id", .int(type))])))])) }
        var single = [JSONValue](), pair = [JSONValue]()
        var specials = [(String, JSONValue)]()
        let bos = addBos ? bosId : nil, eos = addEos ? eosId : nil
        if let b = bos { single.append(special(b)); pair.append(special(b)) }
        single.append(seq("A", 0)); pair.append(seq("A", 0))
        if let e = eos { single.append(special(e)); pair.append(special(e)) }
        if let b = bos { pair.append(special(b)) }
        pair.append(seq("B", 1))
        if let e = eos { pair.append(special(e)) }
        for id in Set([bos, eos].compactMap { $0 }).sorted() {
            specials.append((tokens[id], .object(JSONObject([("id", .string(tokens[id])), ("ids", .array([.int(id)])),
                                                              ("tokens", .array([.string(tokens[id])]))]))))
        }
        return .object(JSONObject([("type", .string("TemplateProcessing")), ("single", .array(single)),
                                   ("pair", .array(pair)), ("special_tokens", .object(JSONObject(specials)))]))
    }

    /// `tokenizer_config.json`: special tokens, chat template, added-token table.
    public func tokenizerConfigJSON(maxLength: Int) -> JSONObject {
        var c = JSONObject()
        c["add_bos_token"] = .bool(addBos)
        c["add_eos_token"] = .bool(addEos)
        c["add_prefix_space"] = .bool(false)
        c["added_tokens_decoder"] = .object(JSONObject(addedTokenIds.map { i in
            var o = addedToken(i)
            o["id"] = nil
            return (String(i), .object(o))
        }))
        if let b = bosId { c["bos_token"] = .string(tokens[b]) }
        if let t = chatTemplate { c["chat_template"] = .string(t) }
        c["clean_up_tokenization_spaces"] = .bool(false)
        if let e = eosId { c["eos_token"] = .string(tokens[e]) }
        c["model_max_length"] = .int(maxLength)
        if let p = padId { c["pad_token"] = .string(tokens[p]) }
        c["tokenizer_class"] = .string("PreTrainedTokenizerFast")
        if let u = unkId { c["unk_token"] = .string(tokens[u]) }
        return c
    }

    public func specialTokensMapJSON() -> JSONObject {
        var c = JSONObject()
        if let b = bosId { c["bos_token"] = .string(tokens[b]) }
        if let e = eosId { c["eos_token"] = .string(tokens[e]) }
        if let p = padId { c["pad_token"] = .string(tokens[p]) }
        if let u = unkId { c["unk_token"] = .string(tokens[u]) }
        return c
    }

    public func generationConfigJSON() -> JSONObject {
        var c = JSONObject()
        if let b = bosId { c["bos_token_id"] = .int(b) }
        if let e = eosId { c["eos_token_id"] = .int(e) }
        if let p = padId { c["pad_token_id"] = .int(p) }
        return c
    }
}
