import ArgumentParser

@main
struct LongCtx: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "longctx",
        abstract: "Take a pretrained LLM past its trained context window, and prove it.",
        subcommands: [Inspect.self, InitModel.self, Rope.self, Tokenize.self, Generate.self, Import.self, Models.self, Lora.self, Eval.self, Serve.self, Train.self, DataCommand.self, DemoCommand.self])
}
