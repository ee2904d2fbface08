import ArgumentParser
import Foundation
import Tokenizers

struct Tokenize: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tokenize text with a model directory's tokenizer.json and print the ids (and tokens).")

    @Argument(help: "Model directory (with tokenizer.json).") var model: String
    @Option(help: "Text to tokenize.") var text: String?
    @Option(help: "Read the text from this file.") var file: String?
    @Flag(help: "Print JSON: ids, tokens, count.") var json = false
    @Flag(name: .customLong("no-special-tokens"), help: "Do not add the post-processor's special tokens (e.g. bos).")
    var noSpecialTokens = false

    func run() async throws {
        guard (text == nil) != (file == nil) else { throw ValidationError("give exactly one of --text or --file") }
        let input: String
        if let file {
            guard let d = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
            input = String(decoding: d, as: UTF8.self)
        } else { input = text! }
        let tok = try Tokenizer.load(directory: model)
        let ids = tok.encode(input, addSpecialTokens: !noSpecialTokens)
        let tokens = ids.map { tok.token(forId: $0) ?? "" }
        if json {
            struct Result: Encodable { let ids: [Int]; let tokens: [String]; let count: Int }
            try Output.json(Result(ids: ids, tokens: tokens, count: ids.count))
        } else {
            print(ids.map(String.init).joined(separator: " "))
            print(tokens.map { "'\($0)'" }.joined(separator: " "))
        }
    }
}
