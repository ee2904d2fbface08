import Foundation

/// Shared by the libFuzzer harnesses: the input as Data, and a per-process scratch file for readers that take a path.
enum FuzzInput {
    static let scratch = "/tmp/longctx-fuzz-\(getpid()).bin"

    static func data(_ start: UnsafePointer<UInt8>, _ count: Int) -> Data { Data(bytes: start, count: count) }

    /// Writes the input to the scratch file and returns its path.
    static func file(_ start: UnsafePointer<UInt8>, _ count: Int) -> String {
        FileManager.default.createFile(atPath: scratch, contents: data(start, count))
        return scratch
    }
}
