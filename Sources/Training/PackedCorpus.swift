import Basics
import Foundation
import ModelIO
import Tokenizers

/// A corpus tokenised once by `longctx data pack`, read back memory-mapped.
///
/// Format (a directory, written to a temporary sibling and renamed into place):
/// - `tokens.u32`: every token id as little-endian `uint32`, all documents of all domains back to back; every
///   document ends with the tokenizer's EOS (see ``DocumentTokenizer``).
/// - `documents.u64`: `documents + 1` little-endian `uint64` token offsets into `tokens.u32`; document `i` is
///   `offsets[i] ..< offsets[i+1]`; `offsets[0] = 0`, the last equals `tokens`.
/// - `longctx-pack.json`:
///   ```json
///   {"format": "longctx-packed-corpus", "version": 1,
///    "tokenizer": {"sha256": "<sha256 of tokenizer.json>", "vocab_size": 49152, "eos_token_id": 2, "bos_token_id": 1},
///    "documents": 1200, "tokens": 5242880,
///    "domains": [{"name": "books", "source": "data/books", "weight": 0.3, "first_document": 0, "documents": 200,
///                 "tokens": 4194304}, …]}
///   ```
///   Domains cover consecutive document ranges in order; `weight` is `null` when none was given.
/// A corpus packed with another tokenizer (different `tokenizer.json` hash) is refused when read.
public enum PackedCorpus {
    public static let indexName = "longctx-pack.json"
    public static let tokensName = "tokens.u32"
    public static let offsetsName = "documents.u64"
    public static let format = "longctx-packed-corpus"

    /// Whether `path` is a packed corpus directory.
    public static func isPacked(_ path: String) -> Bool {
        FileOps.isDirectory(path) && FileOps.exists((path as NSString).appendingPathComponent(indexName))
    }

    /// Loads the tokenizer of `modelDirectory` and packs `specs` into `out` (see the other `write`).
    @discardableResult
    public static func write(_ specs: [DomainSpec], modelDirectory: String, to out: String) throws -> [DataDomain] {
        guard !FileOps.exists(out) else { throw TrainingInputError("--out \(out)", "already exists") }
        let tokenizer = try Tokenizer.load(directory: modelDirectory)
        let identity = try TokenizerIdentity(directory: modelDirectory, tokenizer: tokenizer)
        return try write(specs, tokenizer: tokenizer, identity: identity, to: out)
    }

    /// Tokenises `specs` with `tokenizer` and writes the corpus to `out` (which must not exist). Returns the domains.
    @discardableResult
    public static func write(_ specs: [DomainSpec], tokenizer: Tokenizer, identity: TokenizerIdentity,
                             to out: String) throws -> [DataDomain] {
        guard !FileOps.exists(out) else { throw TrainingInputError("--out \(out)", "already exists") }
        guard !specs.isEmpty else { throw TrainingInputError("--data", "no data given") }
        let domains = try specs.map { spec -> DataDomain in
            if isPacked(spec.path) {
                throw TrainingInputError(spec.path, "is already a packed corpus; pass the text or JSONL sources")
            }
            let domain = try DataDomain.tokenize(spec, tokenizer: tokenizer, eos: identity.eosTokenId)
            guard !domain.isSupervised else {
                throw TrainingInputError(spec.path, "holds prompt/completion records; `data pack` stores text documents only, so pass supervised JSONL to `longctx train --data` directly")
            }
            return domain
        }
        let tmp = FileOps.temporarySibling(of: out)
        do {
            try FileOps.makeDirectory(tmp)
            try writeFiles(domains, identity: identity, into: tmp)
            try FileOps.rename(tmp, to: out)
        } catch {
            FileOps.remove(tmp)
            throw error
        }
        return domains
    }

    static func writeFiles(_ domains: [DataDomain], identity: TokenizerIdentity, into directory: String) throws {
        let tokenWriter = try AtomicFileWriter(path: (directory as NSString).appendingPathComponent(tokensName))
        let offsetWriter = try AtomicFileWriter(path: (directory as NSString).appendingPathComponent(offsetsName))
        var base = 0
        var firstDocument = 0
        var domainObjects: [JSONValue] = []
        try offsetWriter.write([UInt8](repeating: 0, count: 8))
        for domain in domains {
            guard case .memory(let tokens) = domain.tokens else { preconditionFailure("packing writes tokenised domains") }
            try tokens.map { UInt32(bitPattern: $0).littleEndian }.withUnsafeBytes { try tokenWriter.write($0) }
            try domain.documentOffsets.dropFirst().map { UInt64(base + $0).littleEndian }
                .withUnsafeBytes { try offsetWriter.write($0) }
            domainObjects.append(.object(JSONObject([
                ("name", .string(domain.name)), ("source", .string(domain.source)),
                ("weight", domain.weight.map { JSONValue.double($0) } ?? .null),
                ("first_document", .int(firstDocument)), ("documents", .int(domain.documentCount)),
                ("tokens", .int(domain.tokenCount)),
            ])))
            base += domain.tokenCount
            firstDocument += domain.documentCount
        }
        try tokenWriter.commit()
        try offsetWriter.commit()
        let index = JSONObject([
            ("format", .string(format)), ("version", .int(1)),
            ("tokenizer", .object(JSONObject([
                ("sha256", .string(identity.sha256)), ("vocab_size", .int(identity.vocabularySize)),
                ("eos_token_id", .int(identity.eosTokenId)),
                ("bos_token_id", identity.bosTokenId.map { JSONValue.int($0) } ?? .null),
            ]))),
            ("documents", .int(firstDocument)), ("tokens", .int(base)),
            ("domains", .array(domainObjects)),
        ])
        try FileOps.writeAtomically(JSONValue.object(index).serialized() + "\n",
                                    to: (directory as NSString).appendingPathComponent(indexName))
    }

    /// Reads a packed corpus as domains, refusing one packed with a tokenizer other than `identity`'s.
    /// A `PATH@WEIGHT` weight is only accepted for a corpus of one domain (weights of several are set when packing).
    public static func read(_ spec: DomainSpec, expecting identity: TokenizerIdentity) throws -> [DataDomain] {
        let directory = spec.path
        let indexPath = (directory as NSString).appendingPathComponent(indexName)
        let (index, _): (JSONObject, Data)
        do { (index, _) = try FileOps.readJSONObject(indexPath) } catch { throw TrainingInputError(indexPath, "\(error)") }
        guard index["format"]?.stringValue == format, index["version"]?.intValue == 1 else {
            throw TrainingInputError(indexPath, "not a \(format) version 1 index")
        }
        guard let hash = index["tokenizer"]?["sha256"]?.stringValue else {
            throw TrainingInputError(indexPath, "tokenizer.sha256 is missing")
        }
        guard hash == identity.sha256 else {
            throw TrainingInputError(directory, "was packed with another tokenizer (tokenizer.json sha256 \(hash.prefix(16))…, this model's is \(identity.sha256.prefix(16))…); pack it again with this model")
        }
        guard let documents = index["documents"]?.intValue, let tokens = index["tokens"]?.intValue,
              let domainValues = index["domains"]?.arrayValue, !domainValues.isEmpty else {
            throw TrainingInputError(indexPath, "documents, tokens or domains missing")
        }
        let tokenFile = try mapped(directory, tokensName, bytes: 4 * tokens)
        let offsets = try readOffsets(directory, documents: documents, tokens: tokens)
        if spec.weight != nil && domainValues.count != 1 {
            throw TrainingInputError("--data \(directory)", "a weight applies to a packed corpus of one domain only; this one has \(domainValues.count) (their weights were set when packing)")
        }
        var domains: [DataDomain] = []
        var nextDocument = 0
        for (number, value) in domainValues.enumerated() {
            let location = "\(indexPath): domains[\(number)]"
            guard let name = value["name"]?.stringValue, let first = value["first_document"]?.intValue,
                  let count = value["documents"]?.intValue, first == nextDocument, count > 0,
                  first + count <= documents else {
                throw TrainingInputError(location, "name, first_document or documents missing or out of order")
            }
            nextDocument = first + count
            let base = offsets[first]
            domains.append(DataDomain(name: name, source: directory,
                                      weight: spec.weight ?? value["weight"]?.doubleValue,
                                      documentOffsets: offsets[first...(first + count)].map { $0 - base },
                                      tokens: .mapped(tokenFile, first: base)))
        }
        guard nextDocument == documents else {
            throw TrainingInputError(indexPath, "domains cover \(nextDocument) of \(documents) documents")
        }
        return domains
    }

    static func mapped(_ directory: String, _ name: String, bytes: Int) throws -> MappedFile {
        let path = (directory as NSString).appendingPathComponent(name)
        guard FileOps.fileSize(path) == bytes else {
            throw TrainingInputError(path, "size \(FileOps.fileSize(path).map(String.init) ?? "missing") bytes, the index says \(bytes)")
        }
        do { return try MappedFile(path: path) } catch { throw TrainingInputError(path, "\(error)") }
    }

    static func readOffsets(_ directory: String, documents: Int, tokens: Int) throws -> [Int] {
        let file = try mapped(directory, offsetsName, bytes: 8 * (documents + 1))
        let offsets = (0...documents).map {
            Int(UInt64(littleEndian: file.bytes.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)))
        }
        for i in 0..<documents where offsets[i] >= offsets[i + 1] {
            throw TrainingInputError(file.path, "document \(i) is empty or offsets decrease")
        }
        guard offsets[0] == 0, offsets[documents] == tokens else {
            throw TrainingInputError(file.path, "offsets must run from 0 to \(tokens)")
        }
        return offsets
    }
}
