import Foundation

/// Helpers for LongContext's tests: scratch directories, the built `longctx` binary, and Python
/// for interoperability checks against the reference stack (torch, safetensors, transformers…).
public enum TestSupport {
    /// The repository root (this file is `Tests/TestSupport/TestSupport.swift`).
    public static let repoRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// A new empty directory under the system temporary directory.
    public static func scratchDirectory(_ tag: String = "t") -> String {
        let p = NSTemporaryDirectory() + "longctx-test-\(tag)-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    /// The `longctx` executable built beside the test bundle.
    public static var longctxPath: String { builtExecutable("longctx") }

    /// An executable product of this package built beside the test bundle.
    public static func builtExecutable(_ name: String) -> String {
        var dir = URL(fileURLWithPath: CommandLine.arguments.first ?? ".").deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir.deleteLastPathComponent()
        }
        return URL(fileURLWithPath: repoRoot).appendingPathComponent(".build/debug/\(name)").path
    }

    public struct ProcessResult: Sendable {
        public let status: Int32
        public let stdout: String
        public let stderr: String
    }

    /// Runs an executable with arguments, capturing output.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                           currentDirectory: String? = nil) throws -> ProcessResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        if let env = environment { p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 } }
        if let cwd = currentDirectory { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let outPipe = Pipe(), errPipe = Pipe()
        p.standardOutput = outPipe
        p.standardError = errPipe
        p.standardInput = FileHandle.nullDevice
        try p.run()
        // Read both pipes concurrently so neither fills up and blocks the child.
        nonisolated(unsafe) var errData = Data()
        let errThread = Thread { errData = errPipe.fileHandleForReading.readDataToEndOfFile() }
        errThread.start()
        let outData = outPipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        while !errThread.isFinished { usleep(1000) }
        return ProcessResult(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                             stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Runs `longctx` with arguments.
    @discardableResult
    public static func longctx(_ arguments: [String]) throws -> ProcessResult {
        try run(longctxPath, arguments)
    }

    /// Runs `longctx` on a thread of its own, for async tests whose child talks to a server hosted in the test
    /// process: waiting for the child on one of the few cooperative threads (two on a 2-core machine) can starve that
    /// server while other tests hold the rest of the pool.
    @discardableResult
    public static func longctxOffPool(_ arguments: [String]) async throws -> ProcessResult {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try run(longctxPath, arguments) }) }.start()
        }
    }

    // MARK: Python interop

    /// True when interop tests must run (CI sets `LONGCTX_INTEROP=1`): a missing Python module is then a failure.
    public static var interopRequired: Bool { ProcessInfo.processInfo.environment["LONGCTX_INTEROP"] == "1" }

    public static var python: String {
        ProcessInfo.processInfo.environment["LONGCTX_PYTHON"] ?? "/usr/bin/env"
    }

    static func pythonArgs(_ rest: [String]) -> [String] {
        ProcessInfo.processInfo.environment["LONGCTX_PYTHON"] == nil ? ["python3"] + rest : rest
    }

    /// Whether every module in `modules` imports. Cached per module list.
    public static func pythonHas(_ modules: [String]) -> Bool {
        let code = modules.map { "import \($0)" }.joined(separator: "; ")
        guard let r = try? run(python, pythonArgs(["-c", code])) else { return false }
        return r.status == 0
    }

    /// The condition of an interop test's `.enabled(if:)` trait: true when `modules` import, or when
    /// `LONGCTX_INTEROP=1` (the test then runs and ``interopEnabled(_:)`` fails it for the missing module). Without
    /// Python a plain `swift test` thus reports the test as skipped, by name, never as passed.
    public static func interopCanRun(_ modules: [String]) -> Bool { interopRequired || pythonHas(modules) }

    /// Whether an interop test needing `modules` should run: yes when they import; when they do
    /// not and `LONGCTX_INTEROP=1`, that is an error (the test then fails with this message).
    public static func interopEnabled(_ modules: [String]) throws -> Bool {
        if pythonHas(modules) { return true }
        if interopRequired {
            throw InteropUnavailable(message: "LONGCTX_INTEROP=1 but Python cannot import \(modules.joined(separator: ", ")); run scripts/test (it installs them)")
        }
        return false
    }

    public struct InteropUnavailable: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// Runs Python code (written to a temporary file) with arguments; throws with its stderr on failure.
    @discardableResult
    public static func runPython(_ code: String, _ arguments: [String] = []) throws -> String {
        let dir = scratchDirectory("py")
        let script = dir + "/script.py"
        try code.write(toFile: script, atomically: true, encoding: .utf8)
        let r = try run(python, pythonArgs([script] + arguments), environment: ["PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "2"])
        try? FileManager.default.removeItem(atPath: dir)
        guard r.status == 0 else { throw PythonFailed(stderr: r.stderr, stdout: r.stdout) }
        return r.stdout
    }

    public struct PythonFailed: Error, CustomStringConvertible {
        public let stderr: String
        public let stdout: String
        public var description: String { "python failed:\n\(stderr)\n\(stdout)" }
    }
}
