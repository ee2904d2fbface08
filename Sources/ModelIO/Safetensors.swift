import Basics
import Foundation
import TensorCore

/// One tensor's entry in a safetensors header.
public struct TensorInfo: Equatable, Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Byte range relative to the start of the data section (after the 8-byte length and header).
    public let dataOffsets: Range<Int>
    public var count: Int { shape.reduce(1, *) }
    public var byteCount: Int { dataOffsets.count }
}

/// A safetensors file, memory-mapped; tensors are zero-copy views into the mapping.
///
/// Layout (https://github.com/huggingface/safetensors): 8-byte little-endian header length `N`,
/// `N` bytes of UTF-8 JSON, then the data section. Validation follows the format's own library:
/// `N ≤ 100 MB`, header inside the file and starting with `{`, a JSON object whose entries each have
/// a known `dtype`, a `shape` of non-negative integers and `data_offsets` `[begin, end]` with
/// `end ≥ begin` and `end − begin = product(shape) × size(dtype)`; offsets sorted are contiguous from 0
/// with no gap or overlap and cover the data section exactly; `__metadata__` maps strings to strings.
public final class SafetensorsFile: @unchecked Sendable {
    public static let maxHeaderSize = 100_000_000

    public let path: String
    public let file: MappedFile
    /// Entries in header order.
    public let entries: [TensorInfo]
    public let metadata: [String: String]?
    let index: [String: Int]
    let dataStart: Int

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        let parsed = try SafetensorsFile.parseHeader(file.bytes, path: path)
        entries = parsed.entries
        metadata = parsed.metadata
        dataStart = parsed.dataStart
        var idx = [String: Int]()
        for (i, e) in entries.enumerated() { idx[e.name] = i }
        index = idx
    }

    public var names: [String] { entries.map(\.name) }

    public func info(_ name: String) -> TensorInfo? { index[name].map { entries[$0] } }

    /// A zero-copy view of tensor `name` (read-only; it keeps the mapping alive).
    public func tensor(_ name: String) throws -> Tensor {
        guard let i = index[name] else { throw ModelIOError(path, "no tensor named '\(name)'") }
        let e = entries[i]
        let storage = TensorStorage(borrowing: file.base + dataStart + e.dataOffsets.lowerBound,
                                    byteCount: e.byteCount, owner: file)
        return Tensor(shape: e.shape, dtype: e.dtype, storage: storage)
    }

    /// Raw bytes of tensor `name` inside the mapping.
    public func bytes(_ name: String) throws -> UnsafeRawBufferPointer {
        guard let e = info(name) else { throw ModelIOError(path, "no tensor named '\(name)'") }
        return UnsafeRawBufferPointer(start: file.base + dataStart + e.dataOffsets.lowerBound, count: e.byteCount)
    }

    struct Parsed {
        var entries: [TensorInfo]
        var metadata: [String: String]?
        var dataStart: Int
    }

    /// Validates and parses the header of a whole safetensors file held in `bytes`.
    static func parseHeader(_ bytes: UnsafeRawBufferPointer, path: String) throws -> Parsed {
        guard bytes.count >= 8 else {
            throw ModelIOError(path, "file is \(bytes.count) bytes, too small for a safetensors header (needs at least 8)")
        }
        let n64 = bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian
        guard n64 <= UInt64(maxHeaderSize) else {
            throw ModelIOError(path, "header length \(n64) exceeds the 100000000-byte limit")
        }
        let n = Int(n64)
        guard n >= 2 else { throw ModelIOError(path, "header length \(n) is too small (at least 2 bytes, '{}')") }
        guard 8 + n <= bytes.count else {
            throw ModelIOError(path, "header length \(n) runs past the end of the file (\(bytes.count) bytes): the file is truncated")
        }
        let header = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + n)])
        guard header.first == UInt8(ascii: "{") else { throw ModelIOError(path, "header does not start with '{'") }
        let json: JSONValue
        do { json = try JSONValue.parse(Data(header)) }
        catch let e as JSONError { throw ModelIOError(path, "header is not valid JSON: \(e.message) (header byte \(e.offset))") }
        guard case .object(let obj) = json else { throw ModelIOError(path, "header is not a JSON object") }

        var entries = [TensorInfo]()
        var metadata: [String: String]? = nil
        for (name, v) in obj.entries {
            if name == "__metadata__" {
                guard case .object(let m) = v else { throw ModelIOError(path, "__metadata__ is not an object of strings") }
                var md = [String: String]()
                for (k, mv) in m.entries {
                    guard let s = mv.stringValue else { throw ModelIOError(path, "__metadata__ value for '\(k)' is not a string") }
                    md[k] = s
                }
                metadata = md
                continue
            }
            guard case .object(let t) = v else { throw ModelIOError(path, "tensor '\(name)': entry is not an object") }
            guard let ds = t["dtype"]?.stringValue else { throw ModelIOError(path, "tensor '\(name)': missing or non-string dtype") }
            guard let dtype = DType(rawValue: ds) else { throw ModelIOError(path, "tensor '\(name)': unknown dtype '\(ds)'") }
            guard let sv = t["shape"]?.arrayValue else { throw ModelIOError(path, "tensor '\(name)': missing shape") }
            var shape = [Int]()
            for d in sv {
                guard let x = d.intValue, x >= 0 else { throw ModelIOError(path, "tensor '\(name)': shape \(JSONValue.array(sv)) has a dimension that is not a non-negative integer") }
                shape.append(x)
            }
            guard let ov = t["data_offsets"]?.arrayValue, ov.count == 2,
                  let b = ov[0].intValue, let e = ov[1].intValue, b >= 0, e >= 0 else {
                throw ModelIOError(path, "tensor '\(name)': data_offsets must be two non-negative integers")
            }
            guard e >= b else { throw ModelIOError(path, "tensor '\(name)': data_offsets [\(b), \(e)] end before they begin") }
            var elements = 1
            for d in shape {
                let (r, o) = elements.multipliedReportingOverflow(by: d)
                guard !o else { throw ModelIOError(path, "tensor '\(name)': shape \(shape) overflows") }
                elements = r
            }
            let (nbytes, o) = elements.multipliedReportingOverflow(by: dtype.size)
            guard !o, nbytes == e - b else {
                throw ModelIOError(path, "tensor '\(name)': \(dtype.rawValue) \(shape) needs \(o ? "too many" : String(nbytes)) bytes but data_offsets [\(b), \(e)] give \(e - b)")
            }
            entries.append(TensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: b..<e))
        }
        // Offsets, sorted, must tile the data section from 0 with no gaps or overlaps.
        let sorted = entries.sorted { ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound) < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound) }
        var expected = 0
        for t in sorted {
            if t.dataOffsets.lowerBound != expected {
                let what = t.dataOffsets.lowerBound < expected ? "overlaps the previous tensor" : "leaves a gap after the previous tensor"
                throw ModelIOError(path, "tensor '\(t.name)': data_offsets [\(t.dataOffsets.lowerBound), \(t.dataOffsets.upperBound)] \(what) (expected begin \(expected))")
            }
            expected = t.dataOffsets.upperBound
        }
        let dataSize = bytes.count - 8 - n
        guard expected == dataSize else {
            if expected > dataSize {
                throw ModelIOError(path, "tensor data needs \(expected) bytes but the file holds \(dataSize) after the header: offsets out of range or file truncated")
            }
            throw ModelIOError(path, "data section is \(dataSize) bytes but the tensors cover only \(expected): trailing bytes")
        }
        return Parsed(entries: entries, metadata: metadata, dataStart: 8 + n)
    }
}

/// What the header of a file to be written will say about one tensor.
public struct TensorSpec: Equatable, Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public init(name: String, dtype: DType, shape: [Int]) { self.name = name; self.dtype = dtype; self.shape = shape }
    public var byteCount: Int { shape.reduce(1, *) * dtype.size }
}

/// Writes a safetensors file in one pass: the header is fixed up front from the specs, then each
/// tensor's bytes are appended in spec order. The file appears (by rename) only on `finish()`.
///
/// The header is compact JSON padded with spaces to a multiple of 8 bytes, as the format's library writes it.
public final class SafetensorsWriter {
    public let path: String
    let specs: [TensorSpec]
    let out: AtomicFileWriter
    var next = 0

    public init(path: String, specs: [TensorSpec], metadata: [String: String]? = nil) throws {
        self.path = path
        self.specs = specs
        var seen = Set<String>()
        for s in specs where !seen.insert(s.name).inserted {
            throw ModelIOError(path, "tensor name '\(s.name)' given twice")
        }
        var header = JSONObject()
        if let md = metadata, !md.isEmpty {
            header["__metadata__"] = .object(JSONObject(md.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.string($0.value)) }))
        }
        var offset = 0
        for s in specs {
            header[s.name] = .object(JSONObject([
                ("dtype", .string(s.dtype.rawValue)),
                ("shape", .array(s.shape.map { .int($0) })),
                ("data_offsets", .array([.int(offset), .int(offset + s.byteCount)])),
            ]))
            offset += s.byteCount
        }
        var text = Array(JSONValue.object(header).serialized(indent: nil).utf8)
        while text.count % 8 != 0 { text.append(UInt8(ascii: " ")) }
        out = try AtomicFileWriter(path: path)
        var len = UInt64(text.count).littleEndian
        try withUnsafeBytes(of: &len) { try out.write($0) }
        try out.write(text)
    }

    /// Appends the next tensor's bytes (must be the next spec, with exactly its byte count).
    public func append(name: String, bytes: UnsafeRawBufferPointer) throws {
        guard next < specs.count else { throw ModelIOError(path, "more tensors written than declared ('\(name)')") }
        let s = specs[next]
        guard s.name == name else { throw ModelIOError(path, "expected tensor '\(s.name)' next, got '\(name)'") }
        guard bytes.count == s.byteCount else {
            throw ModelIOError(path, "tensor '\(name)': \(bytes.count) bytes given, \(s.byteCount) declared")
        }
        try out.write(bytes)
        next += 1
    }

    /// Appends `tensor`, converting to the declared dtype when it differs.
    public func append(name: String, tensor: Tensor) throws {
        let s = next < specs.count ? specs[next] : nil
        if let s, s.dtype != tensor.dtype {
            let c = tensor.converted(to: s.dtype)
            try append(name: name, bytes: c.rawBytes)
        } else {
            try append(name: name, bytes: tensor.rawBytes)
        }
    }

    public func finish() throws {
        guard next == specs.count else {
            throw ModelIOError(path, "only \(next) of \(specs.count) declared tensors were written")
        }
        try out.commit()
    }

    /// Writes `tensors` (in order) with optional metadata to `path`, atomically.
    public static func write(_ tensors: [(String, Tensor)], metadata: [String: String]? = nil, to path: String) throws {
        let w = try SafetensorsWriter(path: path, specs: tensors.map { TensorSpec(name: $0.0, dtype: $0.1.dtype, shape: $0.1.shape) },
                                      metadata: metadata)
        for (n, t) in tensors { try w.append(name: n, tensor: t) }
        try w.finish()
    }
}
