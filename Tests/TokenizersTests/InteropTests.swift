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

    @Test(.enabled(if: TestSupport.interopCanRun(["tokenizers"]), "needs Python tokenizers (LONGCTX_INTEROP=1 makes their absence a failure)"), arguments: ["gpt2", "llama3", "qwen2", "llama2", "metaspace", "smollm"])
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

/// `applyChatTemplate` against transformers' `apply_chat_template(tokenize=False)` for the recognised template
/// families (ChatML with and without a default system prompt, Llama 3, Llama 3.1/3.3, Llama 3.2 with today's date,
/// Mistral, Llama 2) on conversations with system prompts, whitespace to trim, multi-turn, Unicode and a tool turn.
/// Where transformers' template raises, ours must throw.
@Suite struct ChatTemplateInteropTests {
    struct Rendering: Decodable {
        let template: String
        let conversation: Int
        let messages: [ChatMessage]
        let add_generation_prompt: Bool
        let text: String?
    }

    @Test(.enabled(if: TestSupport.interopCanRun(["transformers", "tokenizers"]), "needs Python transformers, tokenizers (LONGCTX_INTEROP=1 makes their absence a failure)")) func rendersAsTransformersDoes() throws {
        guard try TestSupport.interopEnabled(["transformers", "tokenizers"]) else { return }
        let trained = try TokenizerInteropTests.trained.get()
        let dir = TestSupport.scratchDirectory("chat-interop")
        try runInteropScript(["chat", dir, trained + "/llama2"])
        let cases = try JSONDecoder().decode([Rendering].self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/chat.json")))
        #expect(Set(cases.map(\.template)) == ["smollm2", "qwen2", "chatml", "llama3", "mistral", "llama2", "llama31", "llama32"])
        var failures = [String](), compared = 0
        for c in cases {
            let tok = try Tokenizer.load(directory: dir + "/" + c.template)
            let ours = Result { try tok.applyChatTemplate(c.messages, addGenerationPrompt: c.add_generation_prompt) }
            switch (ours, c.text) {
            case (.success(let text), .some(let expected)):
                compared += 1
                if !sameBytes(text, expected) {
                    failures.append("\(c.template) #\(c.conversation) gen=\(c.add_generation_prompt): \(text.debugDescription) != \(expected.debugDescription)")
                }
            case (.failure, .none): break
            case (.success(let text), .none):
                failures.append("\(c.template) #\(c.conversation): transformers raises, ours rendered \(text.debugDescription)")
            case (.failure(let e), .some):
                failures.append("\(c.template) #\(c.conversation): ours threw \(e)")
            }
        }
        #expect(compared >= 60)
        #expect(failures.isEmpty, "\(failures.count) mismatches:\n\(failures.prefix(8).joined(separator: "\n"))")
    }
}
