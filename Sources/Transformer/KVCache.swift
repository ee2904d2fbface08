import Foundation

/// Per-layer key/value cache, f32, head-major (`[kvHeads][capacity][headDim]`) so that each head's keys are one
/// contiguous matrix for BLAS. Memory is linear in the number of cached positions; capacity doubles as needed.
public final class KVCache: @unchecked Sendable {
    public let layers: Int
    public let kvHeads: Int
    public let headDim: Int
    /// Number of cached positions (the next token's position).
    public private(set) var count: Int = 0
    public private(set) var capacity: Int
    var keys: [UnsafeMutablePointer<Float>]
    var values: [UnsafeMutablePointer<Float>]

    public init(layers: Int, kvHeads: Int, headDim: Int, capacity: Int = 256) {
        self.layers = layers
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.capacity = max(1, capacity)
        let n = kvHeads * self.capacity * headDim
        keys = (0..<layers).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: n) }
        values = (0..<layers).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: n) }
    }

    deinit {
        keys.forEach { $0.deallocate() }
        values.forEach { $0.deallocate() }
    }

    /// Bytes held by the cache.
    public var bytes: Int { 2 * layers * kvHeads * capacity * headDim * MemoryLayout<Float>.size }

    /// Makes room for `total` positions, keeping what is cached.
    public func reserve(_ total: Int) {
        guard total > capacity else { return }
        var newCapacity = capacity
        while newCapacity < total { newCapacity *= 2 }
        let n = kvHeads * newCapacity * headDim
        for l in 0..<layers {
            for which in 0..<2 {
                let old = which == 0 ? keys[l] : values[l]
                let fresh = UnsafeMutablePointer<Float>.allocate(capacity: n)
                for h in 0..<kvHeads {
                    (fresh + h * newCapacity * headDim).update(from: old + h * capacity * headDim, count: count * headDim)
                }
                old.deallocate()
                if which == 0 { keys[l] = fresh } else { values[l] = fresh }
            }
        }
        capacity = newCapacity
    }

    /// Writes keys/values for positions `count ..< count+n` of one layer from row-major `[n × kvHeads·headDim]`
    /// matrices with row stride `rowStride`. Call for every layer, then ``advance(by:)``.
    func store(layer: Int, keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, rows n: Int, rowStride: Int) {
        precondition(count + n <= capacity)
        for h in 0..<kvHeads {
            let kd = keys[layer] + (h * capacity + count) * headDim
            let vd = values[layer] + (h * capacity + count) * headDim
            for t in 0..<n {
                (kd + t * headDim).update(from: k + t * rowStride + h * headDim, count: headDim)
                (vd + t * headDim).update(from: v + t * rowStride + h * headDim, count: headDim)
            }
        }
    }

    func advance(by n: Int) { count += n }

    /// Drops cached positions from `length` on (e.g. to reuse a shared prompt prefix).
    public func truncate(to length: Int) { count = max(0, min(count, length)) }

    /// The layer's keys/values, `extra` positions past `count` included (those being written by the current chunk).
    func view(layer: Int, extra: Int = 0) -> KeyValueView {
        KeyValueView(keys: keys[layer], values: values[layer], stride: capacity, count: count + extra)
    }
}
