import Basics
import Foundation
import ModelIO
import TestSupport
import Testing
import Tokenizers
@testable import Training

/// A supervised mixture: document `i` is `prompts[i]` prompt tokens then completion tokens then EOS (7).
func supervisedMixture(_ documents: [(prompt: Int, completion: Int)]) throws -> DataMixture {
    var tokens: [Int32] = [], offsets = [0]
    for (i, d) in documents.enumerated() {
        tokens += (0..<(d.prompt + d.completion)).map { Int32(i * 1000 + $0 + 10) } + [7]
        offsets.append(tokens.count)
    }
    let domain = DataDomain(name: "sft", source: "sft.jsonl", weight: nil, documentOffsets: offsets, tokens: .memory(tokens),
                            promptLengths: documents.map(\.prompt))
    let identity = TokenizerIdentity(sha256: "test", vocabularySize: 1 << 20, eosTokenId: 7, bosTokenId: nil)
    return try DataMixture(domains: [domain], identity: identity, sampling: .uniform)
}

@Suite struct SupervisedDataTests {
    static let documents: [(prompt: Int, completion: Int)] = [(20, 6), (3, 1), (90, 6), (40, 12), (1, 5), (120, 6), (57, 6)]

    /// Never split; prompt labels ignored, completion and EOS predicted, the label into the next sample or the padding
    /// ignored; padding is EOS with ignored labels and its own document; positions restart per sample.
    @Test func noSplitPackingAndAnswerOnlyLabels() throws {
        let mixture = try supervisedMixture(Self.documents)
        let options = PackingOptions(documentMask: true, resetPositions: true)
        var cursor = mixture.makeCursor(seed: 3)
        var padded = 0
        for _ in 0..<60 {
            let s = try mixture.nextSequence(length: 128, options: options, cursor: &cursor)
            #expect(s.tokens.count == 128 && s.labels.count == 128)
            var covered = 0
            for segment in s.segments {
                let document = Self.documents[segment.document]
                let n = document.prompt + document.completion + 1
                #expect(segment.documentOffset == 0 && segment.count == n && segment.start == covered)
                let doc = documentTokens(mixture, 0, segment.document)
                #expect(Array(s.tokens[segment.start ..< segment.start + n]) == doc)
                for k in 0..<n {
                    let i = segment.start + k
                    #expect(s.documentStarts[i] == Int32(segment.start) && s.positions[i] == Int32(k))
                    // Label k predicts token k + 1 of the sample: kept for completion tokens and the EOS.
                    let expected = k + 1 >= document.prompt && k + 1 < n ? doc[k + 1] : PackedSequence.ignoreIndex
                    #expect(s.labels[i] == expected, "document \(segment.document) position \(k)")
                }
                covered += n
            }
            if covered < 128 {
                padded += 1
                for i in covered..<128 {
                    #expect(s.tokens[i] == 7 && s.labels[i] == PackedSequence.ignoreIndex)
                    #expect(s.documentStarts[i] == Int32(covered) && s.positions[i] == Int32(i - covered))
                }
                // The sample that did not fit opens the next sequence.
                let next = try mixture.nextSequence(length: 128, options: options, cursor: &cursor)
                #expect(next.segments.first?.documentOffset == 0)
                #expect(Self.documents[next.segments[0].document].prompt + Self.documents[next.segments[0].document].completion + 1 > 128 - covered)
            }
            #expect(s.lossTokenCount == s.segments.reduce(0) { $0 + Self.documents[$1.document].completion + 1 })
        }
        #expect(padded > 0)
    }

    @Test func longRecordsAreSkippedAndImpossibleSettingsRefused() throws {
        let mixture = try supervisedMixture(Self.documents)
        var cursor = mixture.makeCursor(seed: 1)
        for _ in 0..<30 {
            let s = try mixture.nextSequence(length: 64, options: PackingOptions(documentMask: true), cursor: &cursor)
            #expect(s.segments.allSatisfy { Self.documents[$0.document].prompt + Self.documents[$0.document].completion + 1 <= 64 })
        }
        var c2 = mixture.makeCursor(seed: 1)
        #expect(throws: TrainingInputError.self) {
            try mixture.nextSequence(length: 4, options: PackingOptions(documentMask: true), cursor: &c2)
        }
        var c3 = mixture.makeCursor(seed: 1)
        let e = #expect(throws: TrainingInputError.self) {
            try mixture.nextSequence(length: 256, options: PackingOptions(documentMask: false), cursor: &c3)
        }
        #expect(e?.location == "doc_mask")
    }

    /// Packed samples are independent: the packed sequence's summed loss equals the sum of each sample's loss run
    /// alone (same model, its own sequence), to float rounding.
    @Test func packedLossEqualsSeparateLosses() throws {
        let dir = TestSupport.scratchDirectory("sft-model")
        var spec = RandomModelSpec()
        spec.vocabSize = 4096
        spec.hiddenSize = 32
        spec.heads = 4
        spec.kvHeads = 2
        spec.intermediateSize = 64
        spec.seed = 5
        try spec.write(to: dir + "/m")
        let model = try TrainableModel(directory: try ModelDirectory(path: dir + "/m"), workers: 2)
        let documents: [(prompt: Int, completion: Int)] = [(20, 6), (3, 2), (30, 6), (40, 12)]
        let mixture = try supervisedMixture(documents.map { ($0.prompt, $0.completion) })
        var cursor = mixture.makeCursor(seed: 9)
        let packed = try mixture.nextSequence(length: 96, options: PackingOptions(documentMask: true, resetPositions: true),
                                              cursor: &cursor)
        #expect(packed.segments.count >= 2)
        let (total, count) = try model.loss(packed.trainingSequence)
        var separate = 0.0, separateCount = 0
        for segment in packed.segments {
            let range = segment.start ..< segment.start + segment.count
            var labels = Array(packed.labels[range])
            labels[labels.count - 1] = PackedSequence.ignoreIndex
            let alone = TrainingSequence(tokens: packed.tokens[range].map(Int.init), positions: Array(0..<segment.count),
                                         targets: labels.map { $0 == PackedSequence.ignoreIndex ? -1 : Int($0) })
            let (l, n) = try model.loss(alone)
            separate += l
            separateCount += n
        }
        #expect(count == separateCount)
        #expect(abs(total - separate) <= 1e-5 * abs(separate))
    }

    @Test func readsPromptCompletionJSONL() throws {
        let dir = TestSupport.scratchDirectory("sft-jsonl")
        let good = dir + "/good.jsonl"
        try "{\"prompt\": \"a b\", \"completion\": \" c\"}\n\n{\"prompt\": \"\", \"completion\": \"d\"}\n".write(toFile: good, atomically: true, encoding: .utf8)
        var records: [DocumentRecord] = []
        try DocumentReader.forEachRecord(in: good) { r, _ in records.append(r) }
        #expect(records == [.supervised(prompt: "a b", completion: " c"), .supervised(prompt: "", completion: "d")])
        let cases: [(String, String)] = [
            ("{\"text\": \"x\"}\n{\"prompt\": \"a\", \"completion\": \"b\"}\n", "mixed.jsonl:2: mixes text documents and prompt/completion records"),
            ("{\"prompt\": \"a\"}\n", "nocompletion.jsonl:1: missing string field \"completion\""),
            ("{\"prompt\": \"a\", \"completion\": \"\"}\n", "empty.jsonl:1: \"completion\" is empty"),
            ("{\"prompt\": \"a\", \"completion\": \"b\", \"text\": \"c\"}\n", "both.jsonl:1: has both"),
        ]
        for (i, (text, message)) in cases.enumerated() {
            let name = message.split(separator: ":")[0]
            let path = dir + "/" + name
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let error = #expect(throws: TrainingInputError.self, "case \(i)") {
                try DocumentReader.forEachRecord(in: path) { _, _ in }
            }
            #expect(error.map { "\($0)".contains(message) } == true, "\(error.map { "\($0)" } ?? "")")
        }
        // `data pack` keeps text only: a supervised file is refused with the reason.
        #expect(throws: TrainingInputError.self) { try DocumentReader.forEachDocument(in: good) { _ in } }
    }

    /// Supervised tokenisation as TRL builds it: prompt with special tokens, completion without, EOS; the loss starts
    /// at the completion.
    @Test func supervisedTokens() throws {
        let dir = TestSupport.scratchDirectory("sft-tok")
        try TokenizerFactory.write(to: dir, vocabSize: 400, seed: 1)
        let tokenizer = try Tokenizer.load(directory: dir)
        let eos = tokenizer.eosTokenIds[0]
        let (ids, head) = DocumentTokenizer.tokens(prompt: "The pass key is", completion: " 42", tokenizer: tokenizer, eos: eos)
        let prompt = tokenizer.encode("The pass key is", addSpecialTokens: true)
        #expect(head == prompt.count)
        #expect(ids.map(Int.init) == prompt + tokenizer.encode(" 42", addSpecialTokens: false) + [eos])
    }
}
