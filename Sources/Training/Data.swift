import Basics
import Foundation
import ModelIO
import Tokenizers

/// Token storage of one domain: documents back to back, each ending with the end-of-document token.
public enum TokenStorage: @unchecked Sendable {
    /// Tokenised in this process.
    case memory([Int32])
    /// A packed corpus (`longctx data pack`): little-endian `u32` tokens, `first` = index of this domain's first token.
    case mapped(MappedFile, first: Int)

    /// Appends tokens `range` (domain-relative token indices) to `out`.
    func append(_ range: Range<Int>, to out: inout [Int32]) {
        switch self {
        case .memory(let tokens):
            out.append(contentsOf: tokens[range])
        case .mapped(let file, let first):
            let bytes = file.bytes
            for index in range {
                let value = bytes.loadUnaligned(fromByteOffset: 4 * (first + index), as: UInt32.self)
                out.append(Int32(bitPattern: UInt32(littleEndian: value)))
            }
        }
    }
}

/// One domain of the mixture: its documents (token ranges in ``tokens``) and the sampling weight of each.
public struct DataDomain: Sendable {
    public var name: String
    /// Where it was read from (the `--data` path).
    public var source: String
    /// Mixing weight as given (`PATH@WEIGHT`), `nil` for the natural size.
    public var weight: Double?
    /// `documentOffsets[i] ..< documentOffsets[i+1]` are document `i`'s tokens (EOS included); `count + 1` entries.
    public var documentOffsets: [Int]
    public var tokens: TokenStorage
    /// Supervised domains (prompt/completion records): per document, the prompt's token count; the loss is taken
    /// only after it, and the packer never splits such a document across sequences. `nil` for text documents.
    public var promptLengths: [Int]?

    public init(name: String, source: String, weight: Double?, documentOffsets: [Int], tokens: TokenStorage,
                promptLengths: [Int]? = nil) {
        self.name = name
        self.source = source
        self.weight = weight
        self.documentOffsets = documentOffsets
        self.tokens = tokens
        self.promptLengths = promptLengths
        shortestDocumentLength = zip(documentOffsets.dropFirst(), documentOffsets).map { $0 - $1 }.min() ?? 0
    }

    /// Tokens of the shortest document (EOS included).
    public let shortestDocumentLength: Int

    public var isSupervised: Bool { promptLengths != nil }

    public var documentCount: Int { documentOffsets.count - 1 }
    public var tokenCount: Int { documentOffsets.last ?? 0 }
    public func documentLength(_ index: Int) -> Int { documentOffsets[index + 1] - documentOffsets[index] }

    /// Tokenises every document of `spec` (see ``DocumentReader`` and ``DocumentTokenizer``). A domain is all text
    /// or all supervised records; mixing them across its files fails naming the file.
    public static func tokenize(_ spec: DomainSpec, tokenizer: Tokenizer, eos: Int) throws -> DataDomain {
        var tokens: [Int32] = []
        var offsets = [0]
        var promptLengths: [Int] = []
        var supervised: Bool?
        for file in try DocumentReader.files(of: spec.path) {
            try DocumentReader.forEachRecord(in: file) { record, location in
                if let kind = supervised, kind != record.isSupervised {
                    throw TrainingInputError(location, "domain \(spec.path) mixes text documents and prompt/completion records; give them as separate --data domains")
                }
                supervised = record.isSupervised
                switch record {
                case .text(let text):
                    tokens += DocumentTokenizer.tokens(of: text, tokenizer: tokenizer, eos: eos)
                case .supervised(let prompt, let completion):
                    let (ids, head) = DocumentTokenizer.tokens(prompt: prompt, completion: completion, tokenizer: tokenizer, eos: eos)
                    tokens += ids
                    promptLengths.append(head)
                }
                offsets.append(tokens.count)
            }
        }
        return DataDomain(name: spec.name, source: spec.path, weight: spec.weight, documentOffsets: offsets,
                          tokens: .memory(tokens), promptLengths: supervised == true ? promptLengths : nil)
    }
}

/// Length-aware document sampling inside a domain (Fu et al. 2024 "per-source length upsampling"; ProLong).
///
/// Document `i` of length `n` (tokens, EOS included) is drawn with probability ∝ `n^lengthExponent × s`, where
/// `s = shortWeight` when `n < shortThreshold` and 1 otherwise. Documents are drawn with replacement, so long
/// documents are up-sampled and short ones down-sampled while ``DataMixture`` keeps every domain's share of tokens.
/// The defaults are Fu et al.'s released recipe: documents under 4096 tokens kept with probability 0.1, no length
/// power. `lengthExponent = 0, shortWeight = 1` is plain uniform sampling (natural length distribution).
public struct LengthSampling: Sendable, Equatable, Codable {
    public var lengthExponent: Double
    public var shortThreshold: Int
    public var shortWeight: Double

    public init(lengthExponent: Double = 0, shortThreshold: Int = 4096, shortWeight: Double = 0.1) {
        self.lengthExponent = lengthExponent
        self.shortThreshold = shortThreshold
        self.shortWeight = shortWeight
    }

    /// Uniform over documents.
    public static let uniform = LengthSampling(lengthExponent: 0, shortThreshold: 0, shortWeight: 1)

    public func weight(length: Int) -> Double {
        let base = lengthExponent == 0 ? 1 : Foundation.pow(Double(length), lengthExponent)
        return length < shortThreshold ? base * shortWeight : base
    }

    /// Problems with the knobs, phrased for `location`.
    func validate(_ location: String) throws {
        guard lengthExponent.isFinite, lengthExponent >= 0 else {
            throw TrainingInputError(location, "length_exponent must be a finite number >= 0, got \(lengthExponent)")
        }
        guard shortThreshold >= 0 else { throw TrainingInputError(location, "short_threshold must be >= 0") }
        guard shortWeight.isFinite, shortWeight > 0 else {
            throw TrainingInputError(location, "short_weight must be a positive number, got \(shortWeight)")
        }
    }
}

/// How documents are laid into a sequence.
///
/// Supervised documents (``DataDomain/promptLengths``) are never split: when one does not fit in what is left of a
/// sequence, the rest is padding (the EOS token, every label ignored, a document of its own) and the document opens
/// the next sequence; one longer than the sequence is skipped (so one corpus serves stages of growing length). With the document mask (required for them) and
/// position reset, each packed sample is computed exactly as it would be alone (padding-free packing in the manner
/// of `DataCollatorWithFlattening`), so packing changes the cost, not the result.
public struct PackingOptions: Sendable, Equatable, Codable {
    /// No attention across documents: ``PackedSequence/documentStarts`` marks each token's document start, and the
    /// label that would predict a document's first token from the previous document is ignored (as Hugging Face's
    /// `DataCollatorWithFlattening`). Off: plain concatenation (EasyContext, Fu et al.): every start is 0 and every
    /// next token, across boundaries too, is a label (as `run_clm.py` and torchtitan's packed loader).
    public var documentMask: Bool
    /// Positions restart at 0 at every document start in the sequence (else `0 ..< length`).
    public var resetPositions: Bool

    public init(documentMask: Bool = true, resetPositions: Bool = false) {
        self.documentMask = documentMask
        self.resetPositions = resetPositions
    }
}

/// One contiguous piece of a document inside a packed sequence.
public struct PackedSegment: Sendable, Equatable, Codable {
    public var domain: Int
    public var document: Int
    /// First token of the piece in the sequence.
    public var start: Int
    public var count: Int
    /// Token offset of the piece inside its document (non-zero for a continuation of a document split across
    /// sequences).
    public var documentOffset: Int
}

/// A training sequence of `length` tokens, each array `length` long.
///
/// Labels are next tokens: `labels[i] = tokens[i+1]`, with ``ignoreIndex`` (−100, `torch.nn.CrossEntropyLoss`'s
/// default) where no loss is taken: the last position (its next token is not in the sequence) and, with the
/// document mask, the position whose next token starts another document (the EOS is predicted; the next document's
/// first token is not predicted from the previous one). The attention key range of query `i` is
/// `[documentStarts[i], i]`.
public struct PackedSequence: Sendable, Equatable {
    public static let ignoreIndex: Int32 = -100

    public var tokens: [Int32]
    public var labels: [Int32]
    /// Per token, the index (in this sequence) of the first token of its document; all 0 without the document mask.
    public var documentStarts: [Int32]
    /// RoPE positions: `0 ..< length`, or restarting at 0 at each document start with `resetPositions`.
    public var positions: [Int32]
    public var segments: [PackedSegment]

    public var length: Int { tokens.count }
    /// Whether position `i` carries a loss.
    public var lossMask: [Bool] { labels.map { $0 != Self.ignoreIndex } }
    /// Number of positions that carry a loss (the token-averaged loss divides by this).
    public var lossTokenCount: Int { labels.reduce(0) { $0 + ($1 == Self.ignoreIndex ? 0 : 1) } }
}

/// Where the data stream stands: everything needed to continue bit-identically. `Codable`, saved in checkpoints.
///
/// Document draw `k` uses the `k`-th output of the project's SplitMix64 stream of `seed` (a fresh
/// ``SeededRandom`` at state `seed + k·0x9E3779B97F4A7C15`), so the cursor needs no RNG state beyond `draws`.
public struct DataCursor: Sendable, Equatable, Codable {
    public var seed: UInt64
    /// Identifies the mixture (domains, documents, tokens, sampling, EOS); a cursor only continues its own mixture.
    public var fingerprint: String
    /// Documents drawn so far.
    public var draws: UInt64
    /// Tokens drawn so far per domain (whole documents, EOS included): the domain scheduler's state.
    public var domainTokens: [Int]
    /// The document being emitted: domain, document and how many of its tokens were already emitted.
    public var current: DocumentPosition?
    /// Sequences and tokens emitted so far.
    public var sequences: Int
    public var tokens: Int

    public struct DocumentPosition: Sendable, Equatable, Codable {
        public var domain: Int
        public var document: Int
        public var offset: Int
    }
}

/// The training corpus: domains with their target token shares, length-aware sampling inside each domain and
/// packing into sequences. Deterministic: the same mixture, seed and cursor give the same sequences.
///
/// Domain mix: document draws go to the domain whose drawn tokens are furthest below its target share (smallest
/// `drawn_d / share_d`, ties to the lower index), so after `T` drawn tokens every domain's share is within
/// `maxDocumentLength / T` of its target. Shares are the `PATH@WEIGHT` weights, or the domains' natural token
/// counts when no weight is given. Inside the domain the document is drawn with ``LengthSampling``.
public struct DataMixture: Sendable {
    public let domains: [DataDomain]
    public let sampling: LengthSampling
    public let identity: TokenizerIdentity
    /// Normalised target token share per domain.
    public let shares: [Double]
    /// Per domain, inclusive prefix sums of the document weights.
    let cumulativeWeights: [[Double]]
    public let fingerprint: String

    /// Builds the mixture. Weights must be given for every domain or for none; domains need at least one document.
    public init(domains: [DataDomain], identity: TokenizerIdentity, sampling: LengthSampling = LengthSampling()) throws {
        guard !domains.isEmpty else { throw TrainingInputError("--data", "no data given") }
        try sampling.validate("sampling")
        let weighted = domains.filter { $0.weight != nil }.count
        guard weighted == 0 || weighted == domains.count else {
            throw TrainingInputError("--data", "give a weight (PATH@WEIGHT) to every domain or to none")
        }
        for domain in domains where domain.documentCount == 0 {
            throw TrainingInputError(domain.source, "no documents")
        }
        let raw = domains.map { $0.weight ?? Double($0.tokenCount) }
        let total = raw.reduce(0, +)
        self.domains = domains
        self.sampling = sampling
        self.identity = identity
        shares = raw.map { $0 / total }
        cumulativeWeights = domains.map { domain in
            var sum = 0.0
            return (0..<domain.documentCount).map { index in
                sum += sampling.weight(length: domain.documentLength(index))
                return sum
            }
        }
        fingerprint = Self.fingerprint(domains: domains, shares: shares, sampling: sampling, identity: identity)
    }

    /// Loads every `--data` path: text/JSONL sources are tokenised with `tokenizer`; packed corpora (directories
    /// written by `longctx data pack`) are memory-mapped after checking that they were packed with this tokenizer.
    public static func load(_ specs: [DomainSpec], tokenizer: Tokenizer, identity: TokenizerIdentity,
                            sampling: LengthSampling = LengthSampling()) throws -> DataMixture {
        var domains: [DataDomain] = []
        for spec in specs {
            if PackedCorpus.isPacked(spec.path) {
                domains += try PackedCorpus.read(spec, expecting: identity)
            } else {
                domains.append(try DataDomain.tokenize(spec, tokenizer: tokenizer, eos: identity.eosTokenId))
            }
        }
        return try DataMixture(domains: domains, identity: identity, sampling: sampling)
    }

    /// Loads the model's tokenizer from `modelDirectory` and then every `--data` path (see the other `load`).
    public static func load(_ specs: [DomainSpec], modelDirectory: String,
                            sampling: LengthSampling = LengthSampling()) throws -> DataMixture {
        let tokenizer = try Tokenizer.load(directory: modelDirectory)
        let identity = try TokenizerIdentity(directory: modelDirectory, tokenizer: tokenizer)
        return try load(specs, tokenizer: tokenizer, identity: identity, sampling: sampling)
    }

    public var totalTokens: Int { domains.reduce(0) { $0 + $1.tokenCount } }
    public var totalDocuments: Int { domains.reduce(0) { $0 + $1.documentCount } }

    /// A cursor at the start of the stream for `seed`.
    public func makeCursor(seed: UInt64) -> DataCursor {
        DataCursor(seed: seed, fingerprint: fingerprint, draws: 0, domainTokens: Array(repeating: 0, count: domains.count),
                   current: nil, sequences: 0, tokens: 0)
    }

    /// The next packed sequence of `length` tokens; advances `cursor`. Throws when the cursor belongs to another
    /// mixture (other data, sampling or tokenizer), e.g. on a resume with different `--data`.
    public func nextSequence(length: Int, options: PackingOptions, cursor: inout DataCursor) throws -> PackedSequence {
        guard length >= 2 else { throw TrainingInputError("seq_len", "must be at least 2, got \(length)") }
        try check(cursor)
        var sequence = PackedSequence(tokens: [], labels: [], documentStarts: [], positions: [], segments: [])
        sequence.tokens.reserveCapacity(length)
        sequence.documentStarts.reserveCapacity(length)
        sequence.positions.reserveCapacity(length)
        while sequence.tokens.count < length {
            let position = cursor.current ?? drawDocument(&cursor)
            let domain = domains[position.domain]
            let documentLength = domain.documentLength(position.document)
            let start = sequence.tokens.count
            if domain.isSupervised {
                try checkSupervised(domain, length: length, options: options)
                if documentLength > length {
                    cursor.current = nil   // longer than this stage's sequences: skipped, never split
                    continue
                }
            }
            if domain.isSupervised && documentLength > length - start {
                cursor.current = position
                pad(&sequence, to: length, options: options)
                break
            }
            let take = min(documentLength - position.offset, length - start)
            let first = domain.documentOffsets[position.document] + position.offset
            domain.tokens.append(first ..< first + take, to: &sequence.tokens)
            for k in 0..<take {
                sequence.documentStarts.append(options.documentMask ? Int32(start) : 0)
                sequence.positions.append(Int32(options.resetPositions ? k : start + k))
            }
            sequence.segments.append(PackedSegment(domain: position.domain, document: position.document, start: start,
                                                   count: take, documentOffset: position.offset))
            let offset = position.offset + take
            cursor.current = offset == documentLength ? nil
                : DataCursor.DocumentPosition(domain: position.domain, document: position.document, offset: offset)
        }
        sequence.labels = Self.labels(tokens: sequence.tokens, segments: sequence.segments,
                                      documentMask: options.documentMask)
        maskPrompts(&sequence.labels, segments: sequence.segments)
        cursor.sequences += 1
        cursor.tokens += length
        return sequence
    }

    /// Next-token labels with ``PackedSequence/ignoreIndex`` at the last position and, with the document mask, before
    /// every segment that starts a document inside the sequence.
    static func labels(tokens: [Int32], segments: [PackedSegment], documentMask: Bool) -> [Int32] {
        var labels = Array(tokens.dropFirst()) + [PackedSequence.ignoreIndex]
        if documentMask {
            for segment in segments where segment.start > 0 { labels[segment.start - 1] = PackedSequence.ignoreIndex }
        }
        return labels
    }

    /// Supervised data that cannot be packed: without the document mask (samples would attend to each other), or
    /// with no record short enough for the sequence length (longer records are skipped, never split).
    func checkSupervised(_ domain: DataDomain, length: Int, options: PackingOptions) throws {
        guard options.documentMask else {
            throw TrainingInputError("doc_mask", "must be true for supervised data (\(domain.source)): packed prompt/completion samples must not attend to each other")
        }
        let shortest = domain.shortestDocumentLength
        guard shortest <= length else {
            throw TrainingInputError(domain.source, "every supervised record is longer than the sequence length \(length) (the shortest has \(shortest) tokens with its EOS); records are never split")
        }
    }

    /// Fills the sequence up to `length` with padding: the EOS token, ignored labels, its own document (positions
    /// from 0 with `resetPositions`). No segment records it.
    func pad(_ sequence: inout PackedSequence, to length: Int, options: PackingOptions) {
        let start = sequence.tokens.count
        for k in 0..<(length - start) {
            sequence.tokens.append(Int32(identity.eosTokenId))
            sequence.documentStarts.append(options.documentMask ? Int32(start) : 0)
            sequence.positions.append(Int32(options.resetPositions ? k : start + k))
        }
    }

    /// Answer-only loss: ignores every label that predicts a prompt token of a supervised document, every label
    /// inside padding, and the one that would predict the first padding token.
    func maskPrompts(_ labels: inout [Int32], segments: [PackedSegment]) {
        let end = segments.last.map { $0.start + $0.count } ?? 0
        if end < labels.count {
            // The last real token would predict the first padding token.
            for i in max(0, end - 1) ..< labels.count { labels[i] = PackedSequence.ignoreIndex }
        }
        for segment in segments {
            guard let prompts = domains[segment.domain].promptLengths else { continue }
            // Position i predicts token i + 1: the first kept label predicts the completion's first token.
            let promptLength = prompts[segment.document]
            for i in segment.start ..< min(segment.start + promptLength - 1, segment.start + segment.count) {
                labels[i] = PackedSequence.ignoreIndex
            }
        }
    }

    /// Throws unless `cursor` was made by this mixture.
    public func check(_ cursor: DataCursor) throws {
        guard cursor.fingerprint == fingerprint, cursor.domainTokens.count == domains.count else {
            throw TrainingInputError("data cursor", "was saved for other data (fingerprint \(cursor.fingerprint.prefix(12)), this data \(fingerprint.prefix(12))); resume with the same --data paths, weights and tokenizer")
        }
    }

    /// Picks the domain (largest deficit) and, inside it, a document (``LengthSampling``) for draw `cursor.draws`.
    func drawDocument(_ cursor: inout DataCursor) -> DataCursor.DocumentPosition {
        var best = 0
        for d in 1..<max(domains.count, 1)
        where Double(cursor.domainTokens[d]) / shares[d] < Double(cursor.domainTokens[best]) / shares[best] {
            best = d
        }
        var rng = SeededRandom(seed: cursor.seed &+ cursor.draws &* 0x9E37_79B9_7F4A_7C15)
        let weights = cumulativeWeights[best]
        let target = rng.uniform() * weights[weights.count - 1]
        let document = min(Self.firstIndex(in: weights, above: target), weights.count - 1)
        cursor.draws += 1
        cursor.domainTokens[best] += domains[best].documentLength(document)
        return DataCursor.DocumentPosition(domain: best, document: document, offset: 0)
    }

    /// Smallest `i` with `sorted[i] > value` (binary search over non-decreasing prefix sums).
    static func firstIndex(in sorted: [Double], above value: Double) -> Int {
        var low = 0, high = sorted.count
        while low < high {
            let mid = (low + high) / 2
            if sorted[mid] > value { high = mid } else { low = mid + 1 }
        }
        return low
    }

    static func fingerprint(domains: [DataDomain], shares: [Double], sampling: LengthSampling,
                            identity: TokenizerIdentity) -> String {
        var text = "tokenizer \(identity.sha256) eos \(identity.eosTokenId)\n"
        text += "sampling \(sampling.lengthExponent) \(sampling.shortThreshold) \(sampling.shortWeight)\n"
        for (domain, share) in zip(domains, shares) {
            text += "\(domain.name) \(share) \(domain.documentCount) \(domain.tokenCount)"
            if let prompts = domain.promptLengths { text += " supervised \(prompts.reduce(0, +))" }
            text += "\n"
        }
        var hash = SHA256()
        hash.update(Data(text.utf8))
        return hash.finalizeHex()
    }
}

extension PackedSequence {
    /// The trainer's input (``TrainingSequence``): ids and positions as `Int`, targets with −1 where no loss is
    /// taken, and the document mask only when some token's document starts after position 0 (otherwise plain
    /// causal attention, which is the same mask).
    public var trainingSequence: TrainingSequence {
        TrainingSequence(tokens: tokens.map(Int.init), positions: positions.map(Int.init),
                         documentStart: documentStarts.contains { $0 != 0 } ? documentStarts : nil,
                         targets: labels.map { $0 == Self.ignoreIndex ? -1 : Int($0) })
    }
}
