import Basics
import Foundation
import TensorCore

/// A Hugging Face model directory: `config.json`, the safetensors weights, and the tokenizer and
/// generation files that travel with them.
///
/// The config is held twice: `configJSON` is the file's exact, ordered JSON (unknown fields kept,
/// so a rewrite changes only what was changed) and `config` is the typed view.
public final class ModelDirectory: @unchecked Sendable {
    /// Files copied along with a model (never the weights, which are linked or rewritten).
    public static let companionFiles = [
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
        "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json",
    ]

    public let path: String
    public let configPath: String
    public let configJSON: JSONObject
    public let config: ModelConfig

    /// `path` is a directory, or a short name from ``ModelResolver/known`` (`smollm2-135m-instruct`)
    /// that `longctx models get` has fetched.
    public init(path given: String) throws {
        let path = try ModelResolver.resolve(given)
        guard FileOps.isDirectory(path) else {
            throw ModelIOError(path, FileOps.exists(path) ? "not a directory (a model is a directory with config.json)" : "no such directory")
        }
        self.path = path
        configPath = (path as NSString).appendingPathComponent("config.json")
        guard FileOps.exists(configPath) else { throw ModelIOError(configPath, "missing: a model directory needs config.json") }
        let (obj, data) = try FileOps.readJSONObject(configPath)
        configJSON = obj
        config = try ModelConfig.decode(data, path: configPath)
    }

    /// Raw bytes of `config.json` (for codecs that parse it themselves).
    public func configData() throws -> Data { try FileOps.read(configPath) }

    /// Opens the weights (throws if absent or only pickles are present).
    public func weights() throws -> Checkpoint { try Checkpoint(directory: path) }

    public var hasWeights: Bool {
        FileOps.exists((path as NSString).appendingPathComponent(Checkpoint.singleFile))
            || FileOps.exists((path as NSString).appendingPathComponent(Checkpoint.indexFile))
    }

    /// Companion files present here.
    public var companions: [String] {
        ModelDirectory.companionFiles.filter { FileOps.exists((path as NSString).appendingPathComponent($0)) }
    }

    /// Writes a copy of this model to `out` with `config` as its config.json: weights (if the source
    /// has any) hard-linked (falling back to symbolic links across file systems) or copied, companions
    /// copied. The copy
    /// is assembled in a temporary directory beside `out` and renamed into place, so `out` either
    /// does not exist or is complete. `out` must not exist yet.
    public func writeCopy(to out: String, config newConfig: JSONObject, linkWeights: Bool = true) throws {
        try ModelDirectory.assemble(at: out) { tmp in
            var files = [String]()
            if hasWeights {
                let ck = try weights()
                files = ck.shardNames
                if ck.isSharded { files.append(Checkpoint.indexFile) }
            }
            for f in files {
                let src = (path as NSString).appendingPathComponent(f)
                let dst = (tmp as NSString).appendingPathComponent(f)
                try FileOps.makeDirectory((dst as NSString).deletingLastPathComponent)
                try ModelDirectory.place(src, at: dst, link: linkWeights && f != Checkpoint.indexFile)
            }
            for f in companions {
                try ModelDirectory.place((path as NSString).appendingPathComponent(f), at: (tmp as NSString).appendingPathComponent(f), link: false)
            }
            try FileOps.writeAtomically(JSONValue.object(newConfig).serialized() + "\n",
                                        to: (tmp as NSString).appendingPathComponent("config.json"))
        }
    }

    /// Builds a directory at `out` through a temporary sibling and one rename. Fails if `out` exists.
    public static func assemble(at out: String, _ body: (String) throws -> Void) throws {
        if FileOps.exists(out) { throw ModelIOError(out, "already exists; choose a new output directory") }
        let parent = (out as NSString).deletingLastPathComponent
        if !parent.isEmpty && !FileOps.isDirectory(parent) { try FileOps.makeDirectory(parent) }
        let tmp = FileOps.temporarySibling(of: out)
        try FileOps.makeDirectory(tmp)
        do {
            try body(tmp)
            try FileOps.rename(tmp, to: out)
        } catch {
            FileOps.remove(tmp)
            throw error
        }
    }

    static func place(_ src: String, at dst: String, link: Bool) throws {
        if link {
            let real = FileOps.realPath(src) ?? src
            if Glibc.link(real, dst) == 0 { return }
            if Glibc.symlink(real, dst) == 0 { return }
        }
        do { try FileManager.default.copyItem(atPath: src, toPath: dst) }
        catch { throw ModelIOError(dst, "cannot copy from \(src): \(FileOps.reason(error))") }
    }
}

extension ModelDirectory {
    /// A fingerprint of what a model directory computes: SHA-256 over `config.json`, `tokenizer.json` (when
    /// present) and, for every `*.safetensors` file, its name, size and 256 evenly spaced 4 KiB blocks (the header
    /// included). Cheap on large models, yet two random initialisations of one configuration differ.
    public static func fingerprint(_ path: String) throws -> String {
        var h = SHA256()
        for name in ["config.json", "tokenizer.json"] {
            let p = (path as NSString).appendingPathComponent(name)
            if FileOps.exists(p) { h.update(Data(name.utf8)); h.update(try FileOps.read(p)) }
        }
        for name in try FileOps.listDirectory(path) where name.hasSuffix(".safetensors") {
            let file = try MappedFile(path: (path as NSString).appendingPathComponent(name))
            h.update(Data("\(name):\(file.size)".utf8))
            let block = 4096, count = 256
            for i in 0..<count where file.size > 0 {
                let start = min(file.size - 1, file.size / count * i)
                h.update(UnsafeRawBufferPointer(rebasing: file.bytes[start..<min(file.size, start + block)]))
            }
        }
        return h.finalizeHex()
    }
}
