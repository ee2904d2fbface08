import Foundation
import TensorCore

/// GGUF metadata value types, with the numbering of the format (ggml-org/ggml `docs/gguf.md`, `gguf_type`).
public enum GGUFValueType: UInt32, Sendable, CaseIterable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
    case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// Bytes of one scalar value (nil for string and array, which are variable-length).
    public var scalarSize: Int? {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64: return 8
        case .string, .array: return nil
        }
    }
}

/// One GGUF metadata value (every type of the format, arrays included).
public enum GGUFValue: Sendable, Equatable, CustomStringConvertible {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case float32(Float), bool(Bool), string(String), uint64(UInt64), int64(Int64), float64(Double)
    /// An array: its element type and its values.
    case array(GGUFValueType, [GGUFValue])

    public var type: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .float32: return .float32
        case .bool: return .bool
        case .string: return .string
        case .uint64: return .uint64
        case .int64: return .int64
        case .float64: return .float64
        case .array: return .array
        }
    }

    /// The value as an integer, for any integer type that fits in `Int`.
    public var intValue: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return Int(exactly: v)
        case .int64(let v): return Int(v)
        default: return nil
        }
    }

    /// The value as a double, for any numeric type.
    public var doubleValue: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        default: return intValue.map(Double.init)
        }
    }

    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var arrayValue: [GGUFValue]? { if case .array(_, let a) = self { return a } else { return nil } }

    public var description: String {
        switch self {
        case .uint8(let v): return "\(v)"
        case .int8(let v): return "\(v)"
        case .uint16(let v): return "\(v)"
        case .int16(let v): return "\(v)"
        case .uint32(let v): return "\(v)"
        case .int32(let v): return "\(v)"
        case .float32(let v): return "\(v)"
        case .bool(let v): return v ? "true" : "false"
        case .string(let s): return s.debugDescription
        case .uint64(let v): return "\(v)"
        case .int64(let v): return "\(v)"
        case .float64(let v): return "\(v)"
        case .array(let t, let a): return "[\(t)] × \(a.count)"
        }
    }
}

/// ggml tensor types with the numbering of `ggml.h` (`enum ggml_type`), and their block geometry.
public enum GGMLType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22, iq4_xs = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30
    case tq1_0 = 34, tq2_0 = 35, mxfp4 = 39

    /// (elements per block, bytes per block), as `GGML_QUANT_SIZES` in gguf-py.
    public var blockGeometry: (elements: Int, bytes: Int) {
        switch self {
        case .f32: return (1, 4)
        case .f16: return (1, 2)
        case .q4_0: return (32, 18)
        case .q4_1: return (32, 20)
        case .q5_0: return (32, 22)
        case .q5_1: return (32, 24)
        case .q8_0: return (32, 34)
        case .q8_1: return (32, 36)
        case .q2_K: return (256, 84)
        case .q3_K: return (256, 110)
        case .q4_K: return (256, 144)
        case .q5_K: return (256, 176)
        case .q6_K: return (256, 210)
        case .q8_K: return (256, 292)
        case .iq2_xxs: return (256, 66)
        case .iq2_xs: return (256, 74)
        case .iq3_xxs: return (256, 98)
        case .iq1_s: return (256, 50)
        case .iq4_nl: return (32, 18)
        case .iq3_s: return (256, 110)
        case .iq2_s: return (256, 82)
        case .iq4_xs: return (256, 136)
        case .i8: return (1, 1)
        case .i16: return (1, 2)
        case .i32: return (1, 4)
        case .i64: return (1, 8)
        case .f64: return (1, 8)
        case .iq1_m: return (256, 56)
        case .bf16: return (1, 2)
        case .tq1_0: return (256, 54)
        case .tq2_0: return (256, 66)
        case .mxfp4: return (32, 17)
        }
    }

    /// The name gguf-py and llama.cpp print (`Q4_K`, `BF16`, …).
    public var description: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q5_0: return "Q5_0"
        case .q5_1: return "Q5_1"
        case .q8_0: return "Q8_0"
        case .q8_1: return "Q8_1"
        case .q2_K: return "Q2_K"
        case .q3_K: return "Q3_K"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        case .q8_K: return "Q8_K"
        case .iq2_xxs: return "IQ2_XXS"
        case .iq2_xs: return "IQ2_XS"
        case .iq3_xxs: return "IQ3_XXS"
        case .iq1_s: return "IQ1_S"
        case .iq4_nl: return "IQ4_NL"
        case .iq3_s: return "IQ3_S"
        case .iq2_s: return "IQ2_S"
        case .iq4_xs: return "IQ4_XS"
        case .i8: return "I8"
        case .i16: return "I16"
        case .i32: return "I32"
        case .i64: return "I64"
        case .f64: return "F64"
        case .iq1_m: return "IQ1_M"
        case .bf16: return "BF16"
        case .tq1_0: return "TQ1_0"
        case .tq2_0: return "TQ2_0"
        case .mxfp4: return "MXFP4"
        }
    }
}

/// One tensor's entry in a GGUF file.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// `ne` as stored: innermost (fastest-varying) dimension first — the reverse of PyTorch/numpy order.
    public let ne: [Int]
    public let type: GGMLType
    /// Offset of the data from the start of the data section (a multiple of the alignment).
    public let offset: Int
    public let byteCount: Int

    /// The row-major (PyTorch/numpy) shape: `ne` reversed.
    public var shape: [Int] { Array(ne.reversed()) }
    public var count: Int { ne.reduce(1, *) }
}

/// A GGUF file (versions 2 and 3, little-endian), memory-mapped, with every header field validated.
///
/// Layout (ggml-org/ggml `docs/gguf.md`): magic `GGUF`, `uint32` version, `uint64` tensor count,
/// `uint64` metadata count; metadata key/value pairs (key: `uint64` length + UTF-8; value: `uint32`
/// type + payload, arrays as `uint32` element type + `uint64` count + elements); tensor infos (name,
/// `uint32` n_dims ≤ 4, `uint64` ne[n_dims], `uint32` ggml type, `uint64` offset); padding to
/// `general.alignment` (default 32); the data section. Validation follows ggml's `gguf.c`: duplicate
/// keys or tensor names, unknown value or tensor types, a first dimension that is not a whole number
/// of blocks, misaligned offsets, tensors overlapping each other or running past the end of the file,
/// and counts or lengths that cannot fit in the file are all errors naming the field.
public final class GGUFFile: @unchecked Sendable {
    public static let defaultAlignment = 32
    public static let magic: UInt32 = 0x4655_4747  // "GGUF" little-endian

    public let path: String
    public let file: MappedFile
    public let version: Int
    /// Metadata in file order.
    public let metadata: [(key: String, value: GGUFValue)]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    /// Absolute offset of the data section in the file.
    public let dataOffset: Int
    let keyIndex: [String: Int]
    let tensorIndex: [String: Int]

    public init(path: String) throws {
        self.path = path
        let file = try MappedFile(path: path)
        self.file = file
        var r = Reader(bytes: file.bytes, path: path)
        guard file.size >= 4 else { throw ModelIOError(path, "file is \(file.size) bytes, too small for a GGUF header") }
        let m = try r.u32("magic")
        guard m == GGUFFile.magic else {
            let head = file.bytes
            let shown = (0..<4).map { String(format: "%02x", head[$0]) }.joined(separator: " ")
            throw ModelIOError(path, "bad magic (bytes \(shown)): not a GGUF file (expected 'GGUF')")
        }
        let v = try r.u32("version")
        guard v == 2 || v == 3 else {
            if v == 1 { throw ModelIOError(path, "GGUF version 1 is not supported (only versions 2 and 3)") }
            if v.byteSwapped == 2 || v.byteSwapped == 3 {
                throw ModelIOError(path, "big-endian GGUF (version \(v.byteSwapped) byte-swapped) is not supported")
            }
            throw ModelIOError(path, "unsupported GGUF version \(v) (only 2 and 3)")
        }
        version = Int(v)
        let nTensors = try r.u64("tensor count")
        let nKV = try r.u64("metadata count")
        // Every KV needs ≥ 8 (key length) + 4 (type) + 1 bytes; every tensor info ≥ 8 + 4 + 8 + 4 + 8.
        guard nKV <= UInt64(file.size / 13) else {
            throw ModelIOError(path, "metadata count \(nKV) cannot fit in a \(file.size)-byte file: wrong count or truncated file")
        }
        guard nTensors <= UInt64(file.size / 32) else {
            throw ModelIOError(path, "tensor count \(nTensors) cannot fit in a \(file.size)-byte file: wrong count or truncated file")
        }
        var md = [(key: String, value: GGUFValue)]()
        var kidx = [String: Int]()
        for i in 0..<Int(nKV) {
            let key = try r.string("key of metadata entry \(i)")
            let rawType = try r.u32("type of '\(key)'")
            guard let t = GGUFValueType(rawValue: rawType) else {
                throw ModelIOError(path, "metadata '\(key)': unknown value type \(rawType)")
            }
            let value = try r.value(t, field: "metadata '\(key)'", depth: 0)
            if kidx[key] != nil { throw ModelIOError(path, "duplicate metadata key '\(key)'") }
            kidx[key] = md.count
            md.append((key, value))
        }
        metadata = md
        keyIndex = kidx

        var align = GGUFFile.defaultAlignment
        if let i = kidx["general.alignment"] {
            guard case .uint32(let a) = md[i].value else {
                throw ModelIOError(path, "general.alignment must be uint32, got \(md[i].value.type)")
            }
            guard a > 0, a & (a - 1) == 0 else { throw ModelIOError(path, "general.alignment \(a) is not a power of two") }
            align = Int(a)
        }
        alignment = align

        var infos = [GGUFTensorInfo]()
        var tidx = [String: Int]()
        for i in 0..<Int(nTensors) {
            let name = try r.string("name of tensor \(i)")
            let nd = try r.u32("n_dims of tensor '\(name)'")
            guard nd >= 1, nd <= 4 else { throw ModelIOError(path, "tensor '\(name)': n_dims \(nd) is outside 1...4") }
            var ne = [Int]()
            var count = 1
            for j in 0..<Int(nd) {
                let d = try r.u64("ne[\(j)] of tensor '\(name)'")
                guard d <= UInt64(Int64.max) else { throw ModelIOError(path, "tensor '\(name)': ne[\(j)] = \(d) is too large") }
                let (c, o) = count.multipliedReportingOverflow(by: Int(d))
                guard !o else { throw ModelIOError(path, "tensor '\(name)': element count overflows") }
                count = c
                ne.append(Int(d))
            }
            let rawType = try r.u32("type of tensor '\(name)'")
            guard let type = GGMLType(rawValue: rawType) else {
                throw ModelIOError(path, "tensor '\(name)': unknown ggml type \(rawType)")
            }
            let off = try r.u64("offset of tensor '\(name)'")
            let (be, bb) = type.blockGeometry
            guard ne[0] % be == 0 else {
                throw ModelIOError(path, "tensor '\(name)': ne[0] = \(ne[0]) is not a multiple of the \(type) block size \(be)")
            }
            let (nb, o2) = (count / be).multipliedReportingOverflow(by: bb)
            guard !o2, off <= UInt64(Int.max) else { throw ModelIOError(path, "tensor '\(name)': size or offset overflows") }
            guard Int(off) % align == 0 else {
                throw ModelIOError(path, "tensor '\(name)': offset \(off) is not a multiple of the alignment \(align)")
            }
            if tidx[name] != nil { throw ModelIOError(path, "duplicate tensor name '\(name)'") }
            tidx[name] = infos.count
            infos.append(GGUFTensorInfo(name: name, ne: ne, type: type, offset: Int(off), byteCount: nb))
        }
        tensors = infos
        tensorIndex = tidx

        let headerEnd = r.offset
        let data = (headerEnd + align - 1) / align * align
        dataOffset = data
        let available = file.size - data
        guard available >= 0 || infos.isEmpty else {
            throw ModelIOError(path, "file ends at byte \(file.size), before the data section at \(data): the file is truncated")
        }
        let sorted = infos.sorted { $0.offset < $1.offset }
        var end = 0
        var prev: String? = nil
        for t in sorted {
            if t.offset < end {
                throw ModelIOError(path, "tensor '\(t.name)' (offset \(t.offset)) overlaps tensor '\(prev!)' (which ends at \(end))")
            }
            end = t.offset + t.byteCount
            prev = t.name
            guard end <= available else {
                throw ModelIOError(path, "tensor '\(t.name)': bytes \(t.offset)..<\(end) of the data section run past the end of the file (data section holds \(max(available, 0)) bytes): offset outside the file or file truncated")
            }
        }
    }

    // MARK: Metadata access

    public subscript(key: String) -> GGUFValue? { keyIndex[key].map { metadata[$0].value } }

    public var architecture: String? { self["general.architecture"]?.stringValue }

    /// A required string value; the error names the key.
    public func string(_ key: String) throws -> String {
        guard let v = self[key] else { throw ModelIOError(path, "missing metadata '\(key)'") }
        guard let s = v.stringValue else { throw ModelIOError(path, "metadata '\(key)' should be a string, got \(v.type)") }
        return s
    }

    /// A required integer value; the error names the key.
    public func int(_ key: String) throws -> Int {
        guard let v = self[key] else { throw ModelIOError(path, "missing metadata '\(key)'") }
        guard let i = v.intValue else { throw ModelIOError(path, "metadata '\(key)' should be an integer, got \(v.type)") }
        return i
    }

    /// A required numeric value; the error names the key.
    public func double(_ key: String) throws -> Double {
        guard let v = self[key] else { throw ModelIOError(path, "missing metadata '\(key)'") }
        guard let d = v.doubleValue else { throw ModelIOError(path, "metadata '\(key)' should be a number, got \(v.type)") }
        return d
    }

    /// A required array of strings; the error names the key.
    public func strings(_ key: String) throws -> [String] {
        guard let v = self[key] else { throw ModelIOError(path, "missing metadata '\(key)'") }
        guard case .array(.string, let a) = v else { throw ModelIOError(path, "metadata '\(key)' should be an array of strings, got \(v)") }
        return a.map { $0.stringValue! }
    }

    /// An optional array of integers (any integer element type); the error names the key.
    public func ints(_ key: String) throws -> [Int]? {
        guard let v = self[key] else { return nil }
        guard case .array(_, let a) = v else { throw ModelIOError(path, "metadata '\(key)' should be an array, got \(v.type)") }
        return try a.map {
            guard let i = $0.intValue else { throw ModelIOError(path, "metadata '\(key)' should hold integers, got \($0.type)") }
            return i
        }
    }

    // MARK: Tensor access

    public var names: [String] { tensors.map(\.name) }

    public func info(_ name: String) -> GGUFTensorInfo? { tensorIndex[name].map { tensors[$0] } }

    /// The raw (possibly quantised) bytes of tensor `name`, a view into the mapping.
    public func bytes(_ name: String) throws -> UnsafeRawBufferPointer {
        guard let t = info(name) else { throw ModelIOError(path, "no tensor named '\(name)'") }
        return UnsafeRawBufferPointer(start: file.base + dataOffset + t.offset, count: t.byteCount)
    }

    /// Tensor `name` dequantised to f32, in row-major shape `info.shape` (GGUF `ne` reversed).
    public func dequantized(_ name: String) throws -> Tensor {
        guard let t = info(name) else { throw ModelIOError(path, "no tensor named '\(name)'") }
        let out = Tensor(zeros: t.shape, dtype: .f32)
        let src = try bytes(name)
        try out.withUnsafeMutableBytes { dst in
            do {
                try GGUFQuants.dequantize(src, type: t.type, count: t.count,
                                          into: dst.baseAddress!.assumingMemoryBound(to: Float.self))
            } catch let e as GGUFQuants.Unsupported {
                throw ModelIOError(path, "tensor '\(name)': \(e.description)")
            }
        }
        return out
    }

    // MARK: Parsing

    struct Reader {
        let bytes: UnsafeRawBufferPointer
        let path: String
        var offset = 0

        mutating func take(_ n: Int, _ field: String) throws -> Int {
            guard n >= 0, n <= bytes.count - offset else {
                throw ModelIOError(path, "file ends at byte \(bytes.count) while reading \(field) (\(n) bytes at offset \(offset)): the file is truncated or a length is wrong")
            }
            let o = offset
            offset += n
            return o
        }

        mutating func load<T: FixedWidthInteger>(_ t: T.Type, _ field: String) throws -> T {
            let o = try take(MemoryLayout<T>.size, field)
            return T(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: T.self))
        }

        mutating func u32(_ field: String) throws -> UInt32 { try load(UInt32.self, field) }
        mutating func u64(_ field: String) throws -> UInt64 { try load(UInt64.self, field) }

        mutating func string(_ field: String) throws -> String {
            let n = try u64("length of \(field)")
            guard n <= UInt64(bytes.count - offset) else {
                throw ModelIOError(path, "\(field): string length \(n) at offset \(offset - 8) runs past the end of the file (\(bytes.count) bytes)")
            }
            let o = try take(Int(n), field)
            let raw = UnsafeRawBufferPointer(rebasing: bytes[o..<(o + Int(n))])
            guard let s = String(validating: raw, as: UTF8.self) else {
                throw ModelIOError(path, "\(field): string at offset \(o) is not valid UTF-8")
            }
            return s
        }

        mutating func value(_ t: GGUFValueType, field: String, depth: Int) throws -> GGUFValue {
            switch t {
            case .uint8: return .uint8(try load(UInt8.self, field))
            case .int8: return .int8(try load(Int8.self, field))
            case .uint16: return .uint16(try load(UInt16.self, field))
            case .int16: return .int16(try load(Int16.self, field))
            case .uint32: return .uint32(try load(UInt32.self, field))
            case .int32: return .int32(try load(Int32.self, field))
            case .uint64: return .uint64(try load(UInt64.self, field))
            case .int64: return .int64(try load(Int64.self, field))
            case .float32: return .float32(Float(bitPattern: try load(UInt32.self, field)))
            case .float64: return .float64(Double(bitPattern: try load(UInt64.self, field)))
            case .bool:
                let b = try load(UInt8.self, field)
                guard b <= 1 else { throw ModelIOError(path, "\(field): bool byte is \(b), not 0 or 1") }
                return .bool(b == 1)
            case .string: return .string(try string(field))
            case .array:
                guard depth < 8 else { throw ModelIOError(path, "\(field): arrays nested deeper than 8 levels") }
                let rawType = try u32("\(field) element type")
                guard let et = GGUFValueType(rawValue: rawType) else {
                    throw ModelIOError(path, "\(field): unknown array element type \(rawType)")
                }
                let n = try u64("\(field) element count")
                let minSize = UInt64(et.scalarSize ?? (et == .string ? 8 : 12))
                guard n <= UInt64(bytes.count - offset) / minSize else {
                    throw ModelIOError(path, "\(field): array count \(n) cannot fit in the \(bytes.count - offset) bytes left in the file: wrong count or truncated file")
                }
                var a = [GGUFValue]()
                a.reserveCapacity(Int(n))
                for _ in 0..<Int(n) { a.append(try value(et, field: field, depth: depth + 1)) }
                return .array(et, a)
            }
        }
    }
}
