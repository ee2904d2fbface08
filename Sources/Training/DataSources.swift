import Basics
import Foundation
import ModelIO
import Tokenizers

/// A training-input problem: `location` is a file (optionally with `:LINE`), a stages key or a command-line option.
/// `description` is the one line a user sees: `location: message`.
public struct TrainingInputError: Error, CustomStringConvertible, Equatable {
    public let location: String
    public let message: String
    public init(_ location: String, _ message: String) { self.location = location; self.message = message }
    public var description: String { "\(location): \(message)" }
}

/// One `--data` argument: a file or a directory of files that forms one *domain* of the mixture, with an optional
/// mixing weight written `PATH@WEIGHT` (ProLong's notation, e.g. `books@0.3`). Without weights every domain keeps
/// its natural share of tokens.
public struct DomainSpec: Sendable, Equatable {
    public var path: String
    /// Relative share of tokens (normalised over all domains); `nil` = the domain's natural size.
    public var weight: Double?

    public init(path: String, weight: Double? = nil) { self.path = path; self.weight = weight }

    /// Parses `PATH` or `PATH@WEIGHT`. The suffix counts as a weight only when it is a number, so paths that contain
    /// `@` still work; a weight that is not finite and positive is an error naming the argument.
    public init(parsing argument: String) throws {
        if let at = argument.lastIndex(of: "@"), let weight = Double(argument[argument.index(after: at)...]) {
            guard weight.isFinite, weight > 0 else {
                throw TrainingInputError("--data \(argument)", "the weight after '@' must be a positive number")
            }
            self.init(path: String(argument[..<at]), weight: weight)
        } else {
            self.init(path: argument)
        }
    }

    /// Domain name: the file or directory name without its extension.
    public var name: String {
        let base = (path as NSString).lastPathComponent
        return (base as NSString).deletingPathExtension.isEmpty ? base : (base as NSString).deletingPathExtension
    }
}

/// Reading documents from plain text and JSONL files.
///
/// - `.txt` / `.md`: the whole file is one document (UTF-8).
/// - `.jsonl`: one JSON object per line with a string field `text`; blank lines are skipped; any other line that is
///   not such an object fails naming the file and the 1-based line number.
/// - a directory: every `.txt`, `.md` and `.jsonl` file below it (recursively, sorted by path; hidden entries
///   skipped); any other file is an error, so a stray file is never silently dropped.
/// Empty files, and files or directories that yield no document, fail naming the path.
public enum DocumentReader {
    public static let textExtensions: Set<String> = ["txt", "md"]
    public static let jsonlExtensions: Set<String> = ["jsonl"]

    /// Files of a `--data` path in reading order.
    public static func files(of path: String) throws -> [String] {
        guard FileOps.exists(path) else { throw TrainingInputError(path, "no such file or directory") }
        guard FileOps.isDirectory(path) else { return [path] }
        var result: [String] = []
        for name in try FileOps.listDirectory(path) where !name.hasPrefix(".") {
            let child = (path as NSString).appendingPathComponent(name)
            if FileOps.isDirectory(child) {
                result += try files(of: child)
                continue
            }
            let ext = (name as NSString).pathExtension.lowercased()
            guard textExtensions.contains(ext) || jsonlExtensions.contains(ext) else {
                throw TrainingInputError(child, "unsupported data file (expected .txt, .md or .jsonl)")
            }
            result.append(child)
        }
        guard !result.isEmpty else { throw TrainingInputError(path, "directory has no .txt, .md or .jsonl files") }
        return result
    }

    /// Calls `body` with each document's text of one file, in file order. Supervised records (`prompt` and
    /// `completion`) are refused here: they carry a loss mask that only ``forEachRecord(in:_:)`` keeps.
    public static func forEachDocument(in file: String, _ body: (String) throws -> Void) throws {
        try forEachRecord(in: file) { record, location in
            guard case .text(let text) = record else {
                throw TrainingInputError(location, "a supervised record (prompt/completion) where only text documents are read; `data pack` stores text documents only, so pass supervised JSONL to `longctx train --data` directly")
            }
            try body(text)
        }
    }

    /// Calls `body` with each record of one file and its location (`FILE` or `FILE:LINE`), in file order: text
    /// documents, or supervised `prompt`/`completion` pairs from JSONL. A file holds one kind only.
    public static func forEachRecord(in file: String, _ body: (DocumentRecord, String) throws -> Void) throws {
        let ext = (file as NSString).pathExtension.lowercased()
        let data: Data
        do { data = try FileOps.read(file) } catch { throw TrainingInputError(file, "cannot read: \(error)") }
        guard !data.isEmpty else { throw TrainingInputError(file, "empty file") }
        guard let text = String(data: data, encoding: .utf8) else { throw TrainingInputError(file, "not valid UTF-8") }
        if jsonlExtensions.contains(ext) {
            try forEachJSONLRecord(text, file: file, body)
        } else if textExtensions.contains(ext) {
            guard !text.allSatisfy(\.isWhitespace) else { throw TrainingInputError(file, "empty file (whitespace only)") }
            try body(.text(text), file)
        } else {
            throw TrainingInputError(file, "unsupported data file (expected .txt, .md or .jsonl)")
        }
    }

    /// JSONL lines: `{"text": …}` documents or `{"prompt": …, "completion": …}` supervised records (the usual SFT
    /// convention: the loss is taken on the completion only); blank lines skipped; one kind per file.
    static func forEachJSONLRecord(_ text: String, file: String, _ body: (DocumentRecord, String) throws -> Void) throws {
        var count = 0
        var supervisedFile: Bool?
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.allSatisfy(\.isWhitespace) { continue }
            let location = "\(file):\(index + 1)"
            let value: JSONValue
            do { value = try JSONValue.parse(String(line)) } catch {
                throw TrainingInputError(location, "\(error)")
            }
            guard value.objectValue != nil else {
                throw TrainingInputError(location, "expected a JSON object with a \"text\" field (or \"prompt\" and \"completion\")")
            }
            let record = try jsonlRecord(value, location: location)
            let supervised = record.isSupervised
            if let kind = supervisedFile, kind != supervised {
                throw TrainingInputError(location, "mixes text documents and prompt/completion records; keep one kind per file")
            }
            supervisedFile = supervised
            try body(record, location)
            count += 1
        }
        guard count > 0 else { throw TrainingInputError(file, "no documents (only blank lines)") }
    }

    static func jsonlRecord(_ value: JSONValue, location: String) throws -> DocumentRecord {
        if value["prompt"] != nil || value["completion"] != nil {
            guard value["text"] == nil else {
                throw TrainingInputError(location, "has both \"text\" and \"prompt\"/\"completion\"; give one or the other")
            }
            guard let prompt = value["prompt"]?.stringValue else { throw TrainingInputError(location, "missing string field \"prompt\"") }
            guard let completion = value["completion"]?.stringValue else {
                throw TrainingInputError(location, "missing string field \"completion\"")
            }
            guard !completion.isEmpty else { throw TrainingInputError(location, "\"completion\" is empty") }
            return .supervised(prompt: prompt, completion: completion)
        }
        guard let document = value["text"]?.stringValue else {
            throw TrainingInputError(location, "missing string field \"text\" (or \"prompt\" and \"completion\")")
        }
        guard !document.isEmpty else { throw TrainingInputError(location, "\"text\" is empty") }
        return .text(document)
    }
}

/// One training record: a text document (loss on every token) or a supervised prompt/completion pair (loss on the
/// completion's tokens and the end-of-document token only).
public enum DocumentRecord: Sendable, Equatable {
    case text(String)
    case supervised(prompt: String, completion: String)

    public var isSupervised: Bool { if case .supervised = self { return true } else { return false } }
}

/// The tokenizer a corpus was tokenised with, recorded in packed files so that another model's tokenizer is refused.
public struct TokenizerIdentity: Sendable, Equatable, Codable {
    /// SHA-256 (hex) of the model's `tokenizer.json` bytes.
    public var sha256: String
    public var vocabularySize: Int
    /// The end-of-document token appended after every document (the tokenizer's first EOS id).
    public var eosTokenId: Int
    public var bosTokenId: Int?

    /// Hashes `directory/tokenizer.json` and takes EOS/BOS from `tokenizer`; fails when the tokenizer has no EOS.
    public init(directory: String, tokenizer: Tokenizer) throws {
        let path = (directory as NSString).appendingPathComponent("tokenizer.json")
        sha256 = try SHA256.hex(ofFile: path)
        vocabularySize = tokenizer.vocabularySize
        guard let eos = tokenizer.eosTokenIds.first else {
            throw TrainingInputError((directory as NSString).appendingPathComponent("tokenizer_config.json"),
                                     "the tokenizer has no eos_token; packing needs an end-of-document token")
        }
        eosTokenId = eos
        bosTokenId = tokenizer.bosTokenId
    }

    public init(sha256: String, vocabularySize: Int, eosTokenId: Int, bosTokenId: Int?) {
        self.sha256 = sha256
        self.vocabularySize = vocabularySize
        self.eosTokenId = eosTokenId
        self.bosTokenId = bosTokenId
    }
}

/// How a document becomes tokens, as Hugging Face pretraining scripts do it: `tokenizer(text)` (so BOS appears
/// exactly when the tokenizer's own post-processor adds it — Llama 2/3 do, SmolLM2 and Qwen2 do not), followed by
/// the tokenizer's EOS as the end-of-document token (not repeated when the post-processor already ends with it).
public enum DocumentTokenizer {
    public static func tokens(of text: String, tokenizer: Tokenizer, eos: Int) -> [Int32] {
        var ids = tokenizer.encode(text, addSpecialTokens: true)
        if ids.last != eos { ids.append(eos) }
        return ids.map { Int32(truncatingIfNeeded: $0) }
    }

    /// A supervised record as TRL's SFT trainer builds it: `tokenizer(prompt)` (special tokens as the
    /// post-processor adds them), then the completion tokenised without special tokens, then EOS. Returns the tokens
    /// and the prompt's token count (the loss starts at the completion's first token).
    public static func tokens(prompt: String, completion: String, tokenizer: Tokenizer, eos: Int) -> (tokens: [Int32], promptLength: Int) {
        let head = tokenizer.encode(prompt, addSpecialTokens: true)
        var ids = head + tokenizer.encode(completion, addSpecialTokens: false)
        if ids.last != eos { ids.append(eos) }
        return (ids.map { Int32(truncatingIfNeeded: $0) }, head.count)
    }
}
