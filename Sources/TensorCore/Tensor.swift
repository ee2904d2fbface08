#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Raw bytes behind a tensor: either owned (allocated here, freed on deinit) or borrowed from an
/// owner that keeps the memory alive (a memory-mapped file), which is how zero-copy views work.
public final class TensorStorage: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let byteCount: Int
    /// Keeps borrowed memory alive; `nil` means this storage owns `base`.
    public let owner: AnyObject?

    /// Allocates `byteCount` bytes, 64-byte aligned, zeroed unless `zeroed` is false (for
    /// storage the caller overwrites entirely).
    public init(byteCount: Int, zeroed: Bool = true) {
        let n = max(byteCount, 1)
        base = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 64)
        if zeroed { base.initializeMemory(as: UInt8.self, repeating: 0, count: n) }
        self.byteCount = byteCount
        owner = nil
    }

    /// Wraps memory owned by `owner` (no copy).
    public init(borrowing base: UnsafeRawPointer, byteCount: Int, owner: AnyObject) {
        self.base = UnsafeMutableRawPointer(mutating: base)
        self.byteCount = byteCount
        self.owner = owner
    }

    public var isOwned: Bool { owner == nil }

    deinit { if owner == nil { base.deallocate() } }
}

public enum TensorError: Error, CustomStringConvertible, Equatable {
    case shapeMismatch(String)
    case unsupported(String)
    case linalg(String)

    public var description: String {
        switch self {
        case .shapeMismatch(let s): return "shape mismatch: \(s)"
        case .unsupported(let s): return "unsupported: \(s)"
        case .linalg(let s): return "linear algebra failure: \(s)"
        }
    }
}

/// A dense, contiguous, row-major tensor of any `DType`.
///
/// Layout: element `[i0, i1, …, ik]` lives at `((i0·s1 + i1)·s2 + …)·size(dtype)` bytes from `rawPointer`
/// (C order, as torch's contiguous tensors and safetensors store them). Views of memory-mapped files
/// are read-only; tensors created here own writable memory.
public struct Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let dtype: DType
    public let storage: TensorStorage
    public let byteOffset: Int

    /// A zero-filled tensor that owns its memory.
    public init(zeros shape: [Int], dtype: DType = .f32) {
        self.shape = shape
        self.dtype = dtype
        let n = shape.reduce(1, *) * dtype.size
        storage = TensorStorage(byteCount: n)
        byteOffset = 0
    }

    /// A view of existing storage (no copy). `byteOffset + count·size` must lie inside `storage`.
    public init(shape: [Int], dtype: DType, storage: TensorStorage, byteOffset: Int = 0) {
        precondition(byteOffset >= 0 && byteOffset + shape.reduce(1, *) * dtype.size <= storage.byteCount,
                     "tensor view out of bounds")
        self.shape = shape
        self.dtype = dtype
        self.storage = storage
        self.byteOffset = byteOffset
    }

    /// An f32 tensor holding `values` (count must equal the shape's product), or stored as `dtype`
    /// with round-to-nearest-even when `dtype` is narrower.
    public init(shape: [Int], floats values: [Float], dtype: DType = .f32) {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not hold \(values.count) values")
        self.init(zeros: shape, dtype: dtype)
        let dst = storage.base
        values.withUnsafeBufferPointer { Convert.fromFloat($0.baseAddress!, count: values.count, dtype: dtype, into: dst) }
    }

    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }
    public var byteCount: Int { count * dtype.size }
    public var rank: Int { shape.count }
    /// Row-major strides in elements.
    public var strides: [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) { s[i] = acc; acc *= shape[i] }
        return s
    }

    public var rawPointer: UnsafeRawPointer { UnsafeRawPointer(storage.base + byteOffset) }
    public var rawBytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: rawPointer, count: byteCount) }

    /// Writable bytes; only for tensors that own their memory.
    public func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        precondition(storage.isOwned, "tensor views of mapped files are read-only")
        return try body(UnsafeMutableRawBufferPointer(start: storage.base + byteOffset, count: byteCount))
    }

    /// The same bytes under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(shape: newShape, dtype: dtype, storage: storage, byteOffset: byteOffset)
    }

    /// All elements as `Float` (exact for bf16/f16/f32; see `Convert.toFloat` for others).
    public func floats() -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buf, n in
            if count > 0 { Convert.toFloat(rawPointer, dtype: dtype, count: count, into: buf.baseAddress!) }
            n = count
        }
    }

    /// Calls `body` with the elements as contiguous `Float`s: zero-copy for aligned f32, a converted copy otherwise.
    public func withFloats<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        if dtype == .f32 && Int(bitPattern: rawPointer) % 4 == 0 {
            return try body(UnsafeBufferPointer(start: rawPointer.assumingMemoryBound(to: Float.self), count: count))
        }
        let f = floats()
        return try f.withUnsafeBufferPointer(body)
    }

    /// A new owned tensor of `dtype` (round to nearest even when narrowing floats).
    public func converted(to newType: DType) -> Tensor {
        if newType == dtype {
            let t = Tensor(shape: shape, dtype: dtype, storage: TensorStorage(byteCount: byteCount, zeroed: false))
            t.storage.base.copyMemory(from: rawPointer, byteCount: byteCount)
            return t
        }
        let t = Tensor(zeros: shape, dtype: newType)
        withFloats { src in
            if count > 0 { Convert.fromFloat(src.baseAddress!, count: count, dtype: newType, into: t.storage.base) }
        }
        return t
    }

    /// True when shapes, dtypes and bytes are identical.
    public func bitwiseEqual(_ other: Tensor) -> Bool {
        shape == other.shape && dtype == other.dtype && memcmp(rawPointer, other.rawPointer, byteCount) == 0
    }
}
