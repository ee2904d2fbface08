import Foundation
import ArgumentParser

/// `longctx lora extract|merge|combine`.
struct Lora: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lora",
        abstract: "Extract LoRA adapters by weight diffing, merge them into models, combine several into one (PEFT format).",
        subcommands: [LoraExtract.self, LoraMerge.self, LoraCombine.self])
}

/// Parses parameter counts like `20M`, `1.5G`, `300K`, `123456`.
func parseCount(_ text: String) -> Int? {
    let t = text.trimmingCharacters(in: .whitespaces).uppercased()
    for (u, m) in [("G", 1e9), ("M", 1e6), ("K", 1e3)] where t.hasSuffix(u) {
        guard let v = Double(t.dropLast()), v > 0 else { return nil }
        return Int(v * m)
    }
    return Int(t).flatMap { $0 > 0 ? $0 : nil }
}
