import Foundation
import ModelIO

/// The resumable state of a training run: where it is (stage, step, tokens), what it belongs to (model identity,
/// stages-file hash), the optimizer's step and hyper-parameters, and the trainer's own Codable state in `extra`
/// (the seeded RNG, the data cursor…). Written as the JSON header of a training-state file
/// (`TrainingStateFile`), beside the f32 arrays (master weights, AdamW moments).
public struct TrainingCheckpointInfo<Extra: Codable & Sendable>: Codable, Sendable {
    /// What identifies the base model (e.g. a hash of its config and weights); `--resume` refuses another model.
    public var modelIdentity: String
    /// A hash of the stages file; `--resume` refuses a state written under another stages file.
    public var stagesHash: String
    /// The 0-based stage being trained.
    public var stageIndex: Int
    /// Optimizer steps completed in the whole run.
    public var step: Int
    /// Training tokens consumed in the whole run.
    public var tokensSeen: Int
    /// AdamW's step count (torch's `state["step"]`) and hyper-parameters.
    public var optimizerStep: Int
    public var optimizer: AdamWOptions
    /// The trainer's own state: RNG, data cursor, anything else needed to continue bit-identically.
    public var extra: Extra

    public init(modelIdentity: String, stagesHash: String, stageIndex: Int, step: Int, tokensSeen: Int,
                optimizerStep: Int, optimizer: AdamWOptions, extra: Extra) {
        self.modelIdentity = modelIdentity
        self.stagesHash = stagesHash
        self.stageIndex = stageIndex
        self.step = step
        self.tokensSeen = tokensSeen
        self.optimizerStep = optimizerStep
        self.optimizer = optimizer
        self.extra = extra
    }

    /// Throws, naming `path`, when this state belongs to another model or another stages file.
    public func checkResumable(modelIdentity: String, stagesHash: String, path: String) throws {
        if modelIdentity != self.modelIdentity {
            throw ModelIOError(path, "training state is for model \(self.modelIdentity), not \(modelIdentity); resume with the model it was written for")
        }
        if stagesHash != self.stagesHash {
            throw ModelIOError(path, "training state was written under another stages file (hash \(self.stagesHash), this one \(stagesHash))")
        }
    }
}

/// What `TrainingStateFile.read` returns: the metadata and the named f32 arrays, bit-exactly as written.
public struct TrainingStateContents<Metadata> {
    /// The file read (named in errors).
    public let path: String
    public let metadata: Metadata
    /// The arrays' names, in file order.
    public let arrayNames: [String]
    let arrays: [String: [Float]]

    /// The array `name`, which must exist and, when `count` is given, hold exactly `count` elements.
    public func array(_ name: String, count: Int? = nil) throws -> [Float] {
        guard let a = arrays[name] else {
            throw ModelIOError(path, "training state has no array '\(name)' (it has \(arrayNames.joined(separator: ", ")))")
        }
        if let count, a.count != count {
            throw ModelIOError(path, "training state array '\(name)' has \(a.count) elements, expected \(count)")
        }
        return a
    }
}

/// The training-state file: resumable trainer state (`TrainingCheckpointInfo` or any Codable metadata) plus named f32
/// arrays, zstd-compressed with content checksums, written atomically (temporary sibling + rename: a crash or error
/// leaves the previous file untouched and no partial one).
///
/// Layout (all integers little-endian):
/// ```
/// "LCTSTATE"                  8 bytes of magic
/// format version              u32 (`formatVersion`)
/// reserved                    u32, 0
/// header frame length         u64, then that many bytes: one zstd frame of the JSON header
///                             {"arrays": [{"name", "count"}…], "metadata": …} (sorted keys)
/// per array, in header order: u64 frame length, then one zstd frame of `count` f32 values (little-endian)
/// ```
/// Nothing may follow the last array.
public enum TrainingStateFile {
    public static let magic = Array("LCTSTATE".utf8)
    public static let formatVersion: UInt32 = 1
    static let prefixSize = 16

    struct Header<Metadata: Codable>: Codable {
        var arrays: [ArrayInfo]
        var metadata: Metadata
    }

    struct ArrayInfo: Codable, Equatable {
        var name: String
        var count: Int
    }

    /// Writes `metadata` and `arrays` (distinct names) to `path` atomically, compressing at zstd `level`.
    public static func write<Metadata: Codable>(to path: String, metadata: Metadata,
                                                arrays: [(name: String, values: UnsafeBufferPointer<Float>)],
                                                level: Int = 3) throws {
        let names = arrays.map(\.name)
        precondition(Set(names).count == names.count, "training state arrays need distinct names: \(names)")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json: Data
        do {
            json = try encoder.encode(Header(arrays: arrays.map { ArrayInfo(name: $0.name, count: $0.values.count) },
                                             metadata: metadata))
        } catch {
            throw ModelIOError(path, "cannot encode the training state header: \(error)")
        }
        let writer = try AtomicFileWriter(path: path)
        try writer.write(magic + littleEndianBytes(formatVersion) + littleEndianBytes(UInt32(0)))
        try writeFrame(Zstd.compress(json, level: level, checksum: true), to: writer)
        for a in arrays {
            let raw = a.values.baseAddress.map { Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: $0),
                                                      count: a.values.count * 4, deallocator: .none) } ?? Data()
            try writeFrame(Zstd.compress(raw, level: level, checksum: true), to: writer)
        }
        try writer.commit()
    }

    /// `write` for arrays held as Swift arrays.
    public static func write<Metadata: Codable>(to path: String, metadata: Metadata,
                                                arrays: [(name: String, values: [Float])], level: Int = 3) throws {
        try withBufferPointers(arrays[...]) { try write(to: path, metadata: metadata, arrays: $0, level: level) }
    }

    /// Reads a training-state file. Errors name `path` and the problem: not a training-state file (wrong magic),
    /// another format version, truncated, corrupt zstd data (checksum), a header that does not decode as
    /// `Metadata`, an array of the wrong size, trailing bytes. Missing arrays are reported by `array(_:count:)`.
    public static func read<Metadata: Codable>(_ path: String, metadata: Metadata.Type) throws
        -> TrainingStateContents<Metadata> {
        let file = try MappedFile(path: path)
        var reader = Reader(file: file)
        guard file.size >= prefixSize else {
            if file.size >= magic.count && Array(file.bytes[0 ..< magic.count]) != magic { throw notAState(path) }
            throw ModelIOError(path, "truncated training state: \(file.size) bytes, shorter than its \(prefixSize)-byte prefix")
        }
        guard Array(file.bytes[0 ..< magic.count]) == magic else { throw notAState(path) }
        reader.offset = magic.count
        let version = reader.u32()
        guard version == formatVersion else {
            throw ModelIOError(path, "training state format version \(version); this build reads version \(formatVersion)")
        }
        reader.offset = prefixSize
        let headerJSON = try Zstd.decompress(try reader.frame("the header"), source: "\(path) (header)")
        let header: Header<Metadata>
        do { header = try JSONDecoder().decode(Header<Metadata>.self, from: headerJSON) }
        catch { throw ModelIOError(path, "training state header does not decode: \(describe(error))") }
        var arrays = [String: [Float]]()
        for info in header.arrays {
            let data = try Zstd.decompress(try reader.frame("array '\(info.name)'"), source: "\(path) (array '\(info.name)')")
            guard data.count == info.count * 4 else {
                throw ModelIOError(path, "training state array '\(info.name)' decompresses to \(data.count) bytes, expected \(info.count * 4)")
            }
            arrays[info.name] = floats(data, count: info.count)
        }
        if reader.offset != file.size {
            throw ModelIOError(path, "\(file.size - reader.offset) unexpected bytes after the last array of the training state")
        }
        return TrainingStateContents(path: path, metadata: header.metadata, arrayNames: header.arrays.map(\.name),
                                     arrays: arrays)
    }

    // MARK: Helpers

    static func notAState(_ path: String) -> ModelIOError {
        ModelIOError(path, "not a training-state file (wrong magic bytes; expected 'LCTSTATE')")
    }

    static func writeFrame(_ frame: Data, to writer: AtomicFileWriter) throws {
        try writer.write(littleEndianBytes(UInt64(frame.count)))
        try frame.withUnsafeBytes { try writer.write($0) }
    }

    static func littleEndianBytes<T: FixedWidthInteger>(_ x: T) -> [UInt8] {
        withUnsafeBytes(of: x.littleEndian) { Array($0) }
    }

    static func floats(_ data: Data, count: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            _ = data.copyBytes(to: UnsafeMutableRawBufferPointer(buffer))
            initialized = count
        }
    }

    static func withBufferPointers<R>(_ arrays: ArraySlice<(name: String, values: [Float])>,
                                      _ body: ([(name: String, values: UnsafeBufferPointer<Float>)]) throws -> R) rethrows -> R {
        guard let first = arrays.first else { return try body([]) }
        return try first.values.withUnsafeBufferPointer { p in
            try withBufferPointers(arrays.dropFirst()) { rest in try body([(first.name, p)] + rest) }
        }
    }

    static func describe(_ error: Error) -> String {
        guard let e = error as? DecodingError else { return "\(error)" }
        func at(_ c: DecodingError.Context) -> String {
            let path = c.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
            return (path.isEmpty ? "" : "at '\(path)': ") + c.debugDescription
        }
        switch e {
        case .keyNotFound(let key, let c): return "missing key '\(key.stringValue)' " + at(c)
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c): return at(c)
        @unknown default: return "\(e)"
        }
    }

    /// Reads the file's length-prefixed frames, checking each against the file size.
    struct Reader {
        let file: MappedFile
        var offset = 0

        mutating func u32() -> UInt32 {
            defer { offset += 4 }
            return file.bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian
        }

        mutating func frame(_ what: String) throws -> Data {
            guard file.size - offset >= 8 else {
                throw ModelIOError(file.path, "truncated training state: ends before the length of \(what) (byte \(file.size))")
            }
            let length = file.bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self).littleEndian
            offset += 8
            guard length <= UInt64(file.size - offset) else {
                throw ModelIOError(file.path, "truncated training state: \(what) needs \(length) bytes from byte \(offset), the file has \(file.size - offset) left")
            }
            defer { offset += Int(length) }
            return Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: file.base + offset), count: Int(length),
                        deallocator: .none)
        }
    }
}
