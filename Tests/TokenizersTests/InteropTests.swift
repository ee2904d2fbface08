import Foundation
import ModelIO
import Testing
import TestSupport
@testable import Tokenizers

/// Runs Tests/Interop/tokenizer_interop.py with arguments.
func runInteropScript(_ args: [String]) throws {
    let script = TestSupport.repoRoot + "/Tests/Interop/tokenizer_interop.py"
    let argv = ([script] + args).map { "'\($0)'" }.joined(separator: ", ")
    try TestSupport.runPython("import runpy, sys\nsys.argv = [\(argv)]\nrunpy.run_path(sys.argv[0], run_name='__main__')\n")
}

/// Byte-exact string comparison (Swift `==` is canonical equivalence; tokenizers must agree byte for byte).
func sameBytes(_ a: String, _ b: String) -> Bool { Array(a.utf8) == Array(b.utf8) }

struct ReferenceCases: Decodable {
    struct Case: Decodable {
        let text: String
        let ids: [Int]
        let ids_no_special: [Int]
        let decode: String
        let decode_skip: String
    }
    struct Raw: Decodable { let ids: [Int]; let decode: String; let decode_skip: String }
    let vocab_size: Int
    let cases: [Case]
    let raw: [Raw]
}

/// Tokenizers trained by Hugging Face `tokenizers` in six styles; every test string must encode and decode
/// exactly as `tokenizers` does.
@Suite struct TokenizerInteropTests {
    static let trained: Result<String, Error> = Result {
        let dir = TestSupport.scratchDirectory("tok-interop")
        try runInteropScript(["train", dir, "2400"])
        return dir
    }

    @Test(arguments: ["gpt2", "llama3", "qwen2", "llama2", "metaspace", "smollm"])
    func agreesWithTokenizers(_ name: String) throws {
        guard try TestSupport.interopEnabled(["tokenizers"]) else { return }
        let dir = try Self.trained.get() + "/" + name
        let tok = try Tokenizer.load(directory: dir)
        let ref = try JSONDecoder().decode(ReferenceCases.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/cases.json")))
        #expect(ref.cases.count >= 2000)
        #expect(tok.vocabularySize == ref.vocab_size)
        var failures = [String]()
        for c in ref.cases {
            let ids = tok.encode(c.text)
            let plain = tok.encode(c.text, addSpecialTokens: false)
            if ids != c.ids { failures.append("encode \(c.text.debugDescription): \(ids) != \(c.ids)") }
            if plain != c.ids_no_special { failures.append("encode(no special) \(c.text.debugDescription): \(plain) != \(c.ids_no_special)") }
            let d = tok.decode(c.ids), ds = tok.decode(c.ids, skipSpecialTokens: true)
            if !sameBytes(d, c.decode) { failures.append("decode \(c.ids): \(d.debugDescription) != \(c.decode.debugDescription)") }
            if !sameBytes(ds, c.decode_skip) { failures.append("decode(skip) \(c.ids): \(ds.debugDescription) != \(c.decode_skip.debugDescription)") }
        }
        for r in ref.raw {
            let d = tok.decode(r.ids), ds = tok.decode(r.ids, skipSpecialTokens: true)
            if !sameBytes(d, r.decode) { failures.append("raw decode \(r.ids): \(d.debugDescription) != \(r.decode.debugDescription)") }
            if !sameBytes(ds, r.decode_skip) { failures.append("raw decode(skip) \(r.ids): \(ds.debugDescription) != \(r.decode_skip.debugDescription)") }
        }
        #expect(failures.isEmpty, "\(name): \(failures.count) mismatches, first: \(failures.prefix(6).joined(separator: "\n"))")
    }
}
