import Basics
import Foundation
import ModelIO

/// One chat message (`{"role": …, "content": …}`).
public struct ChatMessage: Sendable, Codable, Equatable {
    public var role: String
    public var content: String
    public init(role: String, content: String) { self.role = role; self.content = content }
}

/// A token from `added_tokens` (matched in the text before pre-tokenization).
struct AddedToken {
    let id: Int
    let content: [UInt32]
    let special: Bool
    let singleWord: Bool
    let lstrip: Bool
    let rstrip: Bool
    let normalized: Bool
}

/// A Hugging Face `tokenizer.json` tokenizer (BPE model) with the behaviour of the Rust `tokenizers`
/// library: added tokens split out first (leftmost-longest), then normalizer, pre-tokenizer, BPE, and
/// post-processor; decoding runs the decoder chain. Plus `tokenizer_config.json` (bos/eos, chat template)
/// and `generation_config.json` (extra eos ids).
public final class Tokenizer: @unchecked Sendable {
    let path: String
    let configPath: String
    let model: BPEModel
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let decoder: Decoder?
    let added: [AddedToken]
    let addedByContent: [String: Int]
    let addedById: [Int: AddedToken]
    /// First scalar → added tokens starting with it, longest first; for raw and normalized matching.
    let rawTrie: [UInt32: [AddedToken]]
    let normalizedTrie: [UInt32: [AddedToken]]
    let postPrefix: [Int]
    let postSuffix: [Int]
    let chatTemplate: String?
    public let bosTokenId: Int?
    public private(set) var eosTokenIds: [Int]
    public let specialTokenIds: Set<Int>
    let bosToken: String?
    let eosToken: String?

    /// Loads `tokenizer.json` and, when present, `tokenizer_config.json` and `generation_config.json` from `directory`.
    public static func load(directory: String) throws -> Tokenizer {
        let tp = (directory as NSString).appendingPathComponent("tokenizer.json")
        guard FileOps.exists(tp) else { throw TokenizerError(tp, "not found (the model directory has no tokenizer.json)") }
        let data = try FileOps.read(tp)
        let cp = (directory as NSString).appendingPathComponent("tokenizer_config.json")
        let config = FileOps.exists(cp) ? try FileOps.read(cp) : nil
        let t = try Tokenizer(tokenizerJSON: data, configJSON: config, path: tp)
        let gp = (directory as NSString).appendingPathComponent("generation_config.json")
        if FileOps.exists(gp) {
            let g: JSONValue
            do { g = try JSONValue.parse(try FileOps.read(gp)) } catch { throw TokenizerError(gp, "\(error)") }
            var extra = [Int]()
            if let i = g["eos_token_id"]?.intValue { extra = [i] }
            else if let a = g["eos_token_id"]?.arrayValue { extra = a.compactMap(\.intValue) }
            for e in extra where !t.eosTokenIds.contains(e) { t.eosTokenIds.append(e) }
        }
        return t
    }

    /// `path` is the tokenizer.json path used in error messages; the config's path is its sibling.
    public init(tokenizerJSON: Data, configJSON: Data?, path: String) throws {
        self.path = path
        configPath = ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent("tokenizer_config.json")
        let root: JSONValue
        do { root = try JSONValue.parse(tokenizerJSON) } catch { throw TokenizerError(path, "\(error)") }
        guard let m = root["model"], m.objectValue != nil else { throw TokenizerError(path, "no model object") }
        let type = m["type"]?.stringValue ?? (m["merges"] != nil ? "BPE" : "?")
        guard type == "BPE" else { throw TokenizerError(path, "model type '\(type)' is not supported (BPE only)") }
        let model = try BPEModel(json: m, path: path)
        self.model = model
        normalizer = try Normalizer.parse(root["normalizer"], path: path)
        preTokenizer = try PreTokenizer.parse(root["pre_tokenizer"], path: path)
        decoder = try Decoder.parse(root["decoder"], path: path)

        var added = [AddedToken]()
        for (i, a) in try root.list("added_tokens", field: "added_tokens", path: path).enumerated() {
            guard let id = a["id"]?.intValue, let c = a["content"]?.stringValue else {
                throw TokenizerError(path, "added_tokens[\(i)] needs an integer id and a string content")
            }
            guard id >= 0 else { throw TokenizerError(path, "added_tokens[\(i)] has id \(id); ids are >= 0") }
            let special = a["special"]?.boolValue ?? false
            added.append(AddedToken(id: id, content: [UInt32](scalarsOf: c), special: special,
                                    singleWord: a["single_word"]?.boolValue ?? false, lstrip: a["lstrip"]?.boolValue ?? false,
                                    rstrip: a["rstrip"]?.boolValue ?? false, normalized: a["normalized"]?.boolValue ?? !special))
        }
        self.added = added
        addedByContent = Dictionary(added.map { ($0.content.string, $0.id) }, uniquingKeysWith: { $1 })
        addedById = Dictionary(added.map { ($0.id, $0) }, uniquingKeysWith: { $1 })
        func trie(_ ts: [AddedToken]) -> [UInt32: [AddedToken]] {
            var d = [UInt32: [AddedToken]]()
            for t in ts where !t.content.isEmpty { d[t.content[0], default: []].append(t) }
            return d.mapValues { $0.sorted { $0.content.count > $1.content.count } }
        }
        rawTrie = trie(added.filter { !$0.normalized })
        normalizedTrie = trie(added.filter { $0.normalized })
        specialTokenIds = Set(added.filter(\.special).map(\.id))

        // tokenizer_config.json
        var cfg: JSONValue? = nil
        if let configJSON {
            do { cfg = try JSONValue.parse(configJSON) } catch { throw TokenizerError(configPath, "\(error)") }
        }
        func tokenName(_ v: JSONValue?) -> String? { v?.stringValue ?? v?["content"]?.stringValue }
        bosToken = tokenName(cfg?["bos_token"])
        eosToken = tokenName(cfg?["eos_token"])
        if let t = cfg?["chat_template"] {
            if let s = t.stringValue { chatTemplate = s }
            else if let list = t.arrayValue {
                chatTemplate = list.first(where: { $0["name"]?.stringValue == "default" })?["template"]?.stringValue
                    ?? list.first?["template"]?.stringValue
            } else { chatTemplate = nil }
        } else { chatTemplate = nil }
        var bos: Int? = nil, eos: [Int] = []
        var lookup = [String: Int]()
        for a in added { lookup[a.content.string] = a.id }
        func idOf(_ t: String) -> Int? { lookup[t] ?? model.vocab[Array(t.utf8)] }
        if let b = bosToken {
            guard let id = idOf(b) else { throw TokenizerError(configPath, "bos_token '\(b)' is not in the vocabulary") }
            bos = id
        }
        if let e = eosToken {
            guard let id = idOf(e) else { throw TokenizerError(configPath, "eos_token '\(e)' is not in the vocabulary") }
            eos = [id]
        }
        bosTokenId = bos
        eosTokenIds = eos

        // post_processor (single sequence)
        var pre = [Int](), post = [Int]()
        try Tokenizer.parsePost(root["post_processor"], path: path, prefix: &pre, suffix: &post)
        if root["post_processor"] == nil || root["post_processor"]!.isNull {
            if cfg?["add_bos_token"]?.boolValue == true, let b = bos { pre = [b] }
            if cfg?["add_eos_token"]?.boolValue == true, let e = eos.first { post = [e] }
        }
        postPrefix = pre
        postSuffix = post
    }

    static func parsePost(_ v: JSONValue?, path: String, prefix: inout [Int], suffix: inout [Int]) throws {
        guard let v, !v.isNull else { return }
        switch v["type"]?.stringValue ?? "" {
        case "Sequence":
            for p in try v.list("processors", field: "post_processor.processors", path: path) { try parsePost(p, path: path, prefix: &prefix, suffix: &suffix) }
        case "ByteLevel": break
        case "TemplateProcessing":
            let specials = v["special_tokens"]?.objectValue ?? JSONObject()
            var seenSequence = false
            for item in v["single"]?.arrayValue ?? [] {
                if item["Sequence"] != nil { seenSequence = true; continue }
                guard let name = item["SpecialToken"]?["id"]?.stringValue else { throw TokenizerError(path, "post_processor.single has an unknown item") }
                guard let ids = specials[name]?["ids"]?.arrayValue?.compactMap(\.intValue) else {
                    throw TokenizerError(path, "post_processor.special_tokens has no '\(name)'")
                }
                if seenSequence { suffix += ids } else { prefix += ids }
            }
        case "RobertaProcessing", "BertProcessing":
            if let c = v["cls"]?.arrayValue, c.count == 2, let id = c[1].intValue { prefix += [id] }
            if let s = v["sep"]?.arrayValue, s.count == 2, let id = s[1].intValue { suffix = [id] + suffix }
        case let t: throw TokenizerError(path, "unsupported post_processor type '\(t)'")
        }
    }

    // MARK: vocabulary

    /// Number of ids (model vocabulary and added tokens): one more than the largest id.
    public var vocabularySize: Int {
        max((model.idToToken.keys.max() ?? -1), (added.map(\.id).max() ?? -1)) + 1
    }

    public func id(forToken token: String) -> Int? { addedByContent[token] ?? model.vocab[Array(token.utf8)] }

    public func token(forId id: Int) -> String? { addedById[id].map { $0.content.string } ?? model.idToToken[id] }

    // MARK: encoding

    /// Token ids of a whole prompt as a model is fed it: the post-processor's special tokens are added unless
    /// the text already starts with the BOS token's text (a chat-templated prompt carries its own).
    public func encodePrompt(_ text: String) -> [Int] {
        if let bos = bosTokenId, let bosText = token(forId: bos), text.hasPrefix(bosText) {
            return encode(text, addSpecialTokens: false)
        }
        return encode(text)
    }

    /// Token ids of `text`. With `addSpecialTokens`, the post-processor's tokens (e.g. bos) are added.
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        var ids = [Int]()
        ids.reserveCapacity(text.utf8.count / 3)
        let scalars = [UInt32](scalarsOf: text)
        for seg in splitAdded(Piece(s: scalars, atStart: true), trie: rawTrie) {
            switch seg {
            case .token(let id): ids.append(id)
            case .text(var p):
                if let n = normalizer { p.s = n.apply(p.s) }
                if p.s.isEmpty { continue }
                for seg2 in splitAdded(p, trie: normalizedTrie) {
                    switch seg2 {
                    case .token(let id): ids.append(id)
                    case .text(let q): encodePiece(q, into: &ids)
                    }
                }
            }
        }
        if addSpecialTokens { return postPrefix + ids + postSuffix }
        return ids
    }

    private func encodePiece(_ p: Piece, into ids: inout [Int]) {
        guard let pre = preTokenizer else { model.tokenize(p.s, into: &ids); return }
        var pieces = [p]
        pre.apply(&pieces)
        for q in pieces { model.tokenize(q.s, into: &ids) }
    }

    enum Segment { case text(Piece), token(Int) }

    /// Splits out added tokens (leftmost, longest first; `single_word`, `lstrip`, `rstrip` as in
    /// `tokenizers`' `AddedVocabulary::find_matches`).
    func splitAdded(_ p: Piece, trie: [UInt32: [AddedToken]]) -> [Segment] {
        if trie.isEmpty { return p.s.isEmpty ? [] : [.text(p)] }
        let s = p.s
        var out = [Segment]()
        var startOffset = 0
        var i = 0
        let n = s.count
        func isWord(_ v: UInt32) -> Bool { v == 0x5F || CharClass.of(v) & (CharClass.letter | CharClass.number) != 0 }
        func isSpace(_ v: UInt32) -> Bool { CharClass.of(v) & CharClass.space != 0 }
        while i < n {
            guard let cands = trie[s[i]] else { i += 1; continue }
            var matched: AddedToken? = nil
            for c in cands where i + c.content.count <= n {
                var ok = true
                for k in 1..<c.content.count where s[i + k] != c.content[k] { ok = false; break }
                if ok { matched = c; break }
            }
            guard let t = matched else { i += 1; continue }
            var start = i, stop = i + t.content.count
            i = stop
            if t.singleWord {
                let startSpace = start == 0 || !isWord(s[start - 1])
                let stopSpace = stop == n || !isWord(s[stop])
                if !startSpace || !stopSpace { continue }
            }
            if t.lstrip {
                var ns = start
                while ns > 0 && isSpace(s[ns - 1]) { ns -= 1 }
                start = max(ns, startOffset)
            }
            if t.rstrip {
                while stop < n && isSpace(s[stop]) { stop += 1 }
                i = stop
            }
            if startOffset < start { out.append(.text(Piece(s: Array(s[startOffset..<start]), atStart: p.atStart && startOffset == 0))) }
            out.append(.token(t.id))
            startOffset = stop
        }
        if startOffset < n { out.append(.text(Piece(s: Array(s[startOffset..<n]), atStart: p.atStart && startOffset == 0))) }
        return out
    }

    // MARK: decoding

    /// Text of `ids` (unknown ids are skipped; special added tokens too with `skipSpecialTokens`).
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var tokens = [String]()
        tokens.reserveCapacity(ids.count)
        for id in ids {
            guard let t = token(forId: id) else { continue }
            if skipSpecialTokens && specialTokenIds.contains(id) { continue }
            tokens.append(t)
        }
        guard let d = decoder else { return tokens.joined(separator: " ") }
        return d.chain(tokens).joined()
    }

    public func makeStreamingDecoder(skipSpecialTokens: Bool) -> StreamingDecoder {
        StreamingDecoder(tokenizer: self, skipSpecialTokens: skipSpecialTokens)
    }

    // MARK: chat

    public var hasChatTemplate: Bool { chatTemplate != nil }

    /// The prompt text for `messages` as the model's `chat_template` renders it (recognised families:
    /// ChatML — SmolLM, Qwen —, Llama 3, Mistral `[INST]`, Llama 2).
    public func applyChatTemplate(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) throws -> String {
        guard let tmpl = chatTemplate else { throw TokenizerError(configPath, "no chat_template") }
        return try ChatFormat.render(template: tmpl, messages: messages, addGenerationPrompt: addGenerationPrompt,
                                     bos: bosToken ?? "", eos: eosToken ?? "", path: configPath)
    }
}

/// Incremental decoding for generation: push ids one at a time, get back the newly completed text.
///
/// Keeps a short window: the text of `ids[prefix..<read]` (already returned) and of `ids[prefix...]`;
/// the difference is returned once it does not end in U+FFFD (an incomplete UTF-8 sequence), and the
/// window then moves on. Decoders that treat the first token specially (Metaspace, Strip) see the
/// same first token in both texts, so the difference is right.
public struct StreamingDecoder {
    let tokenizer: Tokenizer
    let skipSpecialTokens: Bool
    var ids: [Int] = []
    var read = 0

    init(tokenizer: Tokenizer, skipSpecialTokens: Bool) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Adds one id; returns the text that became complete (possibly empty).
    public mutating func push(_ id: Int) -> String {
        ids.append(id)
        let before = Array(tokenizer.decode(Array(ids[..<read]), skipSpecialTokens: skipSpecialTokens).utf8)
        let text = tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
        if text.unicodeScalars.last == "\u{FFFD}" { return "" }
        let bytes = Array(text.utf8)
        guard bytes.count > before.count, Array(bytes[..<before.count]) == before else { return "" }
        ids.removeFirst(read)
        read = ids.count
        return String(decoding: bytes[before.count...], as: UTF8.self)
    }
}
