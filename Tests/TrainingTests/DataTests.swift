import Basics
import Foundation
import ModelIO
import TestSupport
import Testing
import Tokenizers
@testable import Training

/// A mixture of hand-made domains: document `i` of domain `d` is `[d·1000 + i·10 + k for k in 0..<len] + [eos]`,
/// so every token tells where it came from.
func syntheticMixture(_ lengths: [[Int]], weights: [Double?]? = nil, sampling: LengthSampling = .uniform) throws -> DataMixture {
    let eos = 7
    let domains = lengths.enumerated().map { d, lens -> DataDomain in
        var tokens: [Int32] = [], offsets = [0]
        for (i, n) in lens.enumerated() {
            tokens += (0..<n).map { Int32(d * 100_000 + i * 1000 + $0 + 10) } + [Int32(eos)]
            offsets.append(tokens.count)
        }
        return DataDomain(name: "d\(d)", source: "mem\(d)", weight: weights?[d], documentOffsets: offsets,
                          tokens: .memory(tokens))
    }
    let identity = TokenizerIdentity(sha256: "test", vocabularySize: 1 << 20, eosTokenId: eos, bosTokenId: nil)
    return try DataMixture(domains: domains, identity: identity, sampling: sampling)
}

/// Documents' own tokens, read back from the domain (not through the packer).
func documentTokens(_ mixture: DataMixture, _ domain: Int, _ document: Int) -> [Int32] {
    let d = mixture.domains[domain]
    guard case .memory(let tokens) = d.tokens else { return [] }
    return Array(tokens[d.documentOffsets[document] ..< d.documentOffsets[document + 1]])
}

@Suite struct PackingTests {
    let lengths = [[3, 40, 9, 120, 1, 17], [5, 64, 2, 33]]

    @Test(arguments: [(true, false), (true, true), (false, false), (false, true)])
    func invariants(documentMask: Bool, resetPositions: Bool) throws {
        let mixture = try syntheticMixture(lengths)
        let options = PackingOptions(documentMask: documentMask, resetPositions: resetPositions)
        var cursor = mixture.makeCursor(seed: 5)
        var stream: [Int32] = []          // everything emitted, in order
        var expected: [Int32] = []        // the drawn documents, concatenated
        var open: (domain: Int, document: Int, offset: Int)? = nil
        for _ in 0..<40 {
            let s = try mixture.nextSequence(length: 32, options: options, cursor: &cursor)
            #expect(s.tokens.count == 32 && s.labels.count == 32 && s.documentStarts.count == 32 && s.positions.count == 32)
            stream += s.tokens
            for (n, segment) in s.segments.enumerated() {
                // Segments tile the sequence; a continuation only at the start, picking up where the document stopped.
                #expect(segment.start == (n == 0 ? 0 : s.segments[n - 1].start + s.segments[n - 1].count))
                if let o = open, n == 0 {
                    #expect(segment.domain == o.domain && segment.document == o.document && segment.documentOffset == o.offset)
                } else {
                    #expect(segment.documentOffset == 0)
                    expected += documentTokens(mixture, segment.domain, segment.document)
                }
                let full = documentTokens(mixture, segment.domain, segment.document)
                #expect(Array(s.tokens[segment.start ..< segment.start + segment.count])
                        == Array(full[segment.documentOffset ..< segment.documentOffset + segment.count]))
                let end = segment.documentOffset + segment.count
                open = end < full.count ? (segment.domain, segment.document, end) : nil
                for i in segment.start ..< segment.start + segment.count {
                    #expect(s.documentStarts[i] == (documentMask ? Int32(segment.start) : 0))
                    #expect(s.positions[i] == Int32(resetPositions ? i - segment.start : i))
                }
            }
            #expect(s.segments.last.map { $0.start + $0.count } == 32)
            let t = s.trainingSequence
            #expect(t.tokens == s.tokens.map(Int.init) && t.positions == s.positions.map(Int.init))
            #expect(t.targets == s.labels.map { $0 == PackedSequence.ignoreIndex ? -1 : Int($0) })
            #expect(t.lossTokens == s.lossTokenCount)
            #expect(t.documentStart == (s.segments.count > 1 && documentMask ? s.documentStarts : nil))
            for i in 0..<32 {
                let boundary = i + 1 < 32 && s.segments.contains { $0.start == i + 1 }
                if i == 31 || (documentMask && boundary) {
                    #expect(s.labels[i] == PackedSequence.ignoreIndex)
                } else {
                    #expect(s.labels[i] == s.tokens[i + 1])
                }
                // With the mask, a label never crosses into another document; every ignored label except the last
                // sits on an EOS.
                if documentMask, s.labels[i] != PackedSequence.ignoreIndex { #expect(s.documentStarts[i + 1] == s.documentStarts[i]) }
                if s.labels[i] == PackedSequence.ignoreIndex && i < 31 { #expect(s.tokens[i] == 7) }
            }
        }
        // Nothing lost or duplicated at sequence boundaries.
        #expect(stream == Array(expected.prefix(stream.count)))
        #expect(cursor.sequences == 40 && cursor.tokens == 40 * 32)
    }

    @Test func determinismAndResume() throws {
        let mixture = try syntheticMixture(lengths)
        let options = PackingOptions()
        var a = mixture.makeCursor(seed: 11)
        let uninterrupted = try (0..<25).map { _ in try mixture.nextSequence(length: 48, options: options, cursor: &a) }
        var b = mixture.makeCursor(seed: 11)
        var resumed = try (0..<9).map { _ in try mixture.nextSequence(length: 48, options: options, cursor: &b) }
        let saved = try JSONEncoder().encode(b)
        var restored = try JSONDecoder().decode(DataCursor.self, from: saved)
        #expect(restored == b)
        resumed += try (0..<16).map { _ in try mixture.nextSequence(length: 48, options: options, cursor: &restored) }
        #expect(resumed == uninterrupted)
        #expect(restored == a)
        // Another seed gives another stream; the same seed on a rebuilt mixture the same one.
        var c = mixture.makeCursor(seed: 12)
        #expect(try mixture.nextSequence(length: 48, options: options, cursor: &c) != uninterrupted[0])
        var d = try syntheticMixture(lengths).makeCursor(seed: 11)
        #expect(try syntheticMixture(lengths).nextSequence(length: 48, options: options, cursor: &d) == uninterrupted[0])
    }

    @Test func cursorOfOtherDataIsRefused() throws {
        let cursor = try syntheticMixture(lengths).makeCursor(seed: 1)
        let other = try syntheticMixture([[3, 40, 9], [5, 64, 2, 33]])
        var copy = cursor
        #expect(throws: TrainingInputError.self) { try other.nextSequence(length: 16, options: PackingOptions(), cursor: &copy) }
    }

    /// After T drawn tokens each domain's share is within maxDocumentLength / T of its target (the scheduler's bound).
    @Test(arguments: [[0.7, 0.2, 0.1], nil] as [[Double]?])
    func domainMixProportions(weights: [Double]?) throws {
        var rng = SeededRandom(seed: 3)
        let lengths = [(0..<50).map { _ in 1 + Int(rng.next() % 30) },        // short documents
                       (0..<20).map { _ in 50 + Int(rng.next() % 400) },     // long documents
                       (0..<80).map { _ in 1 + Int(rng.next() % 100) }]
        let mixture = try syntheticMixture(lengths, weights: weights, sampling: LengthSampling(lengthExponent: 0.5))
        let natural = lengths.map { Double($0.reduce(0, +) + $0.count) }
        let target = weights ?? natural.map { $0 / natural.reduce(0, +) }
        var cursor = mixture.makeCursor(seed: 9)
        for _ in 0..<300 { _ = try mixture.nextSequence(length: 256, options: PackingOptions(), cursor: &cursor) }
        let total = Double(cursor.domainTokens.reduce(0, +))
        let bound = 450.0 / total
        for d in 0..<3 { #expect(abs(Double(cursor.domainTokens[d]) / total - target[d]) <= bound) }
        #expect(bound < 0.01)
    }

    /// Inside a domain, documents are drawn ∝ length^α × (short ? shortWeight : 1): compare draw frequencies with
    /// the exact probabilities (4 standard deviations of a binomial over 4000 draws).
    @Test func lengthAwareSampling() throws {
        let lengths = [[9, 9, 9, 9, 99, 99]]   // 10 and 100 tokens with EOS
        for (sampling, pLong) in [(LengthSampling(lengthExponent: 0, shortThreshold: 50, shortWeight: 0.1), 2 / 2.4),
                                  (LengthSampling(lengthExponent: 1, shortThreshold: 0, shortWeight: 1), 200.0 / 240),
                                  (LengthSampling.uniform, 2.0 / 6)] {
            let mixture = try syntheticMixture(lengths, sampling: sampling)
            var cursor = mixture.makeCursor(seed: 21)
            var long = 0
            for _ in 0..<4000 { if mixture.drawDocument(&cursor).document >= 4 { long += 1 } }
            let sigma = (pLong * (1 - pLong) / 4000).squareRoot()
            #expect(abs(Double(long) / 4000 - pLong) < 4 * sigma, "\(sampling)")
        }
    }

    @Test func weightsForSomeDomainsOnlyAreRefused() throws {
        #expect(throws: TrainingInputError("--data", "give a weight (PATH@WEIGHT) to every domain or to none")) {
            try syntheticMixture([[3], [4]], weights: [0.5, nil])
        }
    }

    @Test func domainSpecParsing() throws {
        #expect(try DomainSpec(parsing: "books@0.3") == DomainSpec(path: "books", weight: 0.3))
        #expect(try DomainSpec(parsing: "me@host/data.jsonl") == DomainSpec(path: "me@host/data.jsonl"))
        #expect(throws: TrainingInputError.self) { try DomainSpec(parsing: "books@0") }
        #expect(DomainSpec(path: "dir/web.jsonl").name == "web")
    }
}

/// Reading files, tokenising with a real model's tokenizer, and `longctx data pack`.
@Suite(.serialized) struct DataFileTests {
    static let model: String = {
        let dir = TestSupport.scratchDirectory("data-model") + "/m"
        let r = try! TestSupport.longctx(["init-model", "--out", dir, "--vocab", "600", "--seed", "4"])
        precondition(r.status == 0, r.stderr)
        return dir
    }()

    static func corpus() throws -> String {
        let dir = TestSupport.scratchDirectory("data-corpus")
        try FileManager.default.createDirectory(atPath: dir + "/web", withIntermediateDirectories: true)
        try TokenizerFactory.corpus(seed: 1, words: 300).write(toFile: dir + "/web/a.txt", atomically: true, encoding: .utf8)
        try "# Notes\n\nSecond document, in markdown.\n".write(toFile: dir + "/web/b.md", atomically: true, encoding: .utf8)
        let lines = (0..<5).map { i in
            "{\"text\": \(JSONValue.string(TokenizerFactory.corpus(seed: UInt64(10 + i), words: 20 + 40 * i)).serialized(indent: nil)), \"id\": \(i)}"
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: dir + "/books.jsonl", atomically: true, encoding: .utf8)
        return dir
    }

    @Test func documentsAreTokenizedWithEOS() throws {
        let dir = try Self.corpus()
        let mixture = try DataMixture.load([DomainSpec(path: dir + "/web"), DomainSpec(path: dir + "/books.jsonl")],
                                           modelDirectory: Self.model)
        let tokenizer = try Tokenizer.load(directory: Self.model)
        let eos = try #require(tokenizer.eosTokenIds.first)
        #expect(mixture.domains.map(\.name) == ["web", "books"])
        #expect(mixture.domains.map(\.documentCount) == [2, 5])
        let first = try String(contentsOfFile: dir + "/web/a.txt", encoding: .utf8)
        #expect(documentTokens(mixture, 0, 0) == (tokenizer.encode(first) + [eos]).map(Int32.init))
        for d in 0..<2 {
            for i in 0..<mixture.domains[d].documentCount { #expect(documentTokens(mixture, d, i).last == Int32(eos)) }
        }
    }

    @Test func badInputsNameFileAndLine() throws {
        let dir = TestSupport.scratchDirectory("data-bad")
        try "{\"text\": \"ok\"}\n{\"text\": \"fine\"}\n{\"txt\": \"no\"}\n".write(toFile: dir + "/a.jsonl", atomically: true, encoding: .utf8)
        try "{\"text\": \"ok\"}\n\n{not json\n".write(toFile: dir + "/b.jsonl", atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: dir + "/empty.txt", contents: Data())
        _ = FileManager.default.createFile(atPath: dir + "/empty.jsonl", contents: Data("\n\n".utf8))
        try FileManager.default.createDirectory(atPath: dir + "/mixed", withIntermediateDirectories: true)
        try "x".write(toFile: dir + "/mixed/a.txt", atomically: true, encoding: .utf8)
        try "x".write(toFile: dir + "/mixed/b.csv", atomically: true, encoding: .utf8)
        func failure(_ path: String) -> String {
            do { _ = try DataMixture.load([DomainSpec(path: path)], modelDirectory: Self.model); return "no error" }
            catch { return "\(error)" }
        }
        #expect(failure(dir + "/a.jsonl") == "\(dir)/a.jsonl:3: missing string field \"text\" (or \"prompt\" and \"completion\")")
        #expect(failure(dir + "/b.jsonl").hasPrefix("\(dir)/b.jsonl:3: invalid JSON"))
        #expect(failure(dir + "/empty.txt") == "\(dir)/empty.txt: empty file")
        #expect(failure(dir + "/empty.jsonl") == "\(dir)/empty.jsonl: no documents (only blank lines)")
        #expect(failure(dir + "/mixed") == "\(dir)/mixed/b.csv: unsupported data file (expected .txt, .md or .jsonl)")
        #expect(failure(dir + "/missing") == "\(dir)/missing: no such file or directory")
    }

    @Test func packRoundTripThroughCLI() throws {
        let dir = try Self.corpus()
        let out = TestSupport.scratchDirectory("data-pack") + "/packed"
        let r = try TestSupport.longctx(["data", "pack", "--model", Self.model, "--data", dir + "/web@2",
                                         "--data", dir + "/books.jsonl@1", "--out", out])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("wrote \(out): 7 documents"))
        let specs = [DomainSpec(path: dir + "/web", weight: 2), DomainSpec(path: dir + "/books.jsonl", weight: 1)]
        let direct = try DataMixture.load(specs, modelDirectory: Self.model)
        let packed = try DataMixture.load([DomainSpec(path: out)], modelDirectory: Self.model)
        #expect(packed.domains.map(\.name) == direct.domains.map(\.name))
        #expect(packed.domains.map(\.documentOffsets) == direct.domains.map(\.documentOffsets))
        #expect(packed.shares == direct.shares)
        var a = direct.makeCursor(seed: 3), b = packed.makeCursor(seed: 3)
        for _ in 0..<6 {
            let x = try direct.nextSequence(length: 100, options: PackingOptions(), cursor: &a)
            let y = try packed.nextSequence(length: 100, options: PackingOptions(), cursor: &b)
            #expect(x == y)
        }
        // The files are what the format says: u32 tokens and u64 offsets, little-endian.
        let tokens = try Data(contentsOf: URL(fileURLWithPath: out + "/tokens.u32"))
        let offsets = try Data(contentsOf: URL(fileURLWithPath: out + "/documents.u64"))
        #expect(tokens.count == 4 * direct.totalTokens && offsets.count == 8 * (direct.totalDocuments + 1))
        let index = try #require(try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: out + "/longctx-pack.json"))).objectValue)
        #expect(index["tokenizer"]?["sha256"]?.stringValue == (try SHA256.hex(ofFile: Self.model + "/tokenizer.json")))
    }

    @Test func packRefusesOtherTokenizerAndBadInput() throws {
        let dir = try Self.corpus()
        let out = TestSupport.scratchDirectory("data-pack2") + "/packed"
        #expect(try TestSupport.longctx(["data", "pack", "--model", Self.model, "--data", dir + "/web", "--out", out]).status == 0)
        let other = TestSupport.scratchDirectory("data-other") + "/m"
        #expect(try TestSupport.longctx(["init-model", "--out", other, "--vocab", "700", "--seed", "5"]).status == 0)
        #expect {
            _ = try DataMixture.load([DomainSpec(path: out)], modelDirectory: other)
        } throws: { error in
            "\(error)".hasPrefix("\(out): was packed with another tokenizer") && "\(error)".contains("pack it again")
        }
        // A bad JSONL line: one error line naming file and line, exit status 1, nothing at --out.
        try "{\"text\": \"a\"}\n[1, 2]\n".write(toFile: dir + "/bad.jsonl", atomically: true, encoding: .utf8)
        let badOut = TestSupport.scratchDirectory("data-pack3") + "/packed"
        let r = try TestSupport.longctx(["data", "pack", "--model", Self.model, "--data", dir + "/bad.jsonl", "--out", badOut])
        #expect(r.status == 1)
        #expect(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
                == "Error: \(dir)/bad.jsonl:2: expected a JSON object with a \"text\" field (or \"prompt\" and \"completion\")")
        #expect(!FileManager.default.fileExists(atPath: badOut))
        #expect(try FileManager.default.contentsOfDirectory(atPath: (badOut as NSString).deletingLastPathComponent).isEmpty)
    }

    /// The packed tokens are what the Hugging Face `tokenizers` library produces for each document, plus EOS.
    @Test(.enabled(if: TestSupport.pythonHas(["tokenizers"]) || TestSupport.interopRequired))
    func packMatchesHuggingFaceTokenizers() throws {
        let dir = try Self.corpus()
        let out = TestSupport.scratchDirectory("data-pack4") + "/packed"
        #expect(try TestSupport.longctx(["data", "pack", "--model", Self.model, "--data", dir + "/books.jsonl", "--out", out]).status == 0)
        let code = """
            import json, struct, sys
            from tokenizers import Tokenizer
            model, corpus, out = sys.argv[1:4]
            tok = Tokenizer.from_file(model + "/tokenizer.json")
            eos = tok.token_to_id(json.load(open(model + "/tokenizer_config.json"))["eos_token"])
            expected = []
            for line in open(corpus):
                if line.strip():
                    expected += tok.encode(json.loads(line)["text"]).ids + [eos]
            raw = open(out + "/tokens.u32", "rb").read()
            got = list(struct.unpack("<%dI" % (len(raw) // 4), raw))
            offs = open(out + "/documents.u64", "rb").read()
            offsets = list(struct.unpack("<%dQ" % (len(offs) // 8), offs))
            ends = [i + 1 for i, t in enumerate(expected) if t == eos]
            print(json.dumps({"same": got == expected, "n": len(got), "offsets": offsets == [0] + ends}))
            """
        let result = try TestSupport.runPython(code, [Self.model, dir + "/books.jsonl", out])
        #expect(result.contains("\"same\": true") && result.contains("\"offsets\": true"), "\(result)")
    }
}
