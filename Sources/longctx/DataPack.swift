import Basics
import ArgumentParser
import Foundation
import ModelIO
import Training

/// `longctx data pack`: pre-tokenise a corpus once.
struct DataCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Prepare training data.",
        subcommands: [DataPackCommand.self])
}

/// `longctx data pack --model DIR --data PATH [--data PATH…] --out DIR`.
struct DataPackCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pack",
        abstract: "Tokenise text/JSONL data once with a model's tokenizer into a packed corpus that `train --data` reads.",
        discussion: """
            Each --data PATH (a .txt/.md file = one document, a .jsonl file with a "text" field per line, or a \
            directory of them) becomes one domain; PATH@WEIGHT sets its mixing weight. Every document ends with the \
            tokenizer's EOS. The output directory holds tokens.u32, documents.u64 and longctx-pack.json (format, \
            domains, and the SHA-256 of tokenizer.json: another model's tokenizer is refused).
            """)

    @Option(help: "Model directory (or known model name) whose tokenizer to use.")
    var model: String

    @Option(name: .customLong("data"), help: "A data file or directory (one domain); PATH@WEIGHT sets a weight. Repeatable.")
    var data: [String] = []

    @Option(help: "Output directory (must not exist).")
    var out: String

    func run() async throws {
        let specs = try data.map { try DomainSpec(parsing: $0) }
        let domains = try PackedCorpus.write(specs, modelDirectory: try ModelResolver.resolve(model), to: out)
        let documents = domains.reduce(0) { $0 + $1.documentCount }, tokens = domains.reduce(0) { $0 + $1.tokenCount }
        print("wrote \(out): \(documents) documents, \(tokens) tokens in \(domains.count) domain(s)")
        for domain in domains { print("  \(domain.name): \(domain.documentCount) documents, \(domain.tokenCount) tokens") }
    }
}
