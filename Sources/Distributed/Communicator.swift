import Foundation

/// A pending exchange started by ``Communicator/startExchange(send:to:receive:from:)``; finish it with
/// ``Communicator/wait(_:)`` before reading the receive buffer or writing the send buffer.
public protocol PendingExchange: AnyObject {}

/// The group of workers one sequence is sharded over: point-to-point exchanges for the ring and the few collectives
/// training needs. Every worker calls the collectives in the same order. Buffers are raw bytes; the typed helpers
/// below pass `Float` and `Int32` arrays.
///
/// Two transports implement it: ``InProcessGroup`` (threads of one process, shared memory) and MPI
/// (`DistributedMPI`, one process per rank).
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Starts sending `send` to `destination` and receiving exactly `receive.count` bytes from `source` (both always
    /// happen; sizes may be 0). Messages with the same `tag` between two workers arrive in the order sent; the transfer
    /// may proceed while the caller computes.
    func startExchange(send: UnsafeRawBufferPointer, to destination: Int,
                       receive: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws -> PendingExchange
    func wait(_ exchange: PendingExchange) throws
    /// Replaces `buffer` (`count` floats) on every worker with the element-wise sum over the workers; every worker
    /// gets bit-identical values.
    func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws
    /// Double variant (losses and token counts).
    func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws
    /// Copies `root`'s bytes into every worker's `buffer` (same size everywhere).
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
    func barrier() throws
}

extension Communicator {
    /// The next worker on the ring (`rank + 1 mod size`) and the previous one.
    public var next: Int { (rank + 1) % size }
    public var previous: Int { (rank + size - 1) % size }

    /// Sends `send` floats to `destination` while receiving `receive.count` floats from `source`, and waits.
    public func sendReceive(_ send: UnsafeBufferPointer<Float>, to destination: Int,
                            _ receive: UnsafeMutableBufferPointer<Float>, from source: Int, tag: Int = 0) throws {
        try wait(startExchange(send: UnsafeRawBufferPointer(send), to: destination,
                               receive: UnsafeMutableRawBufferPointer(receive), from: source, tag: tag))
    }

    /// Int32 variant of ``sendReceive(_:to:_:from:)``.
    public func sendReceive(_ send: UnsafeBufferPointer<Int32>, to destination: Int,
                            _ receive: UnsafeMutableBufferPointer<Int32>, from source: Int, tag: Int = 0) throws {
        try wait(startExchange(send: UnsafeRawBufferPointer(send), to: destination,
                               receive: UnsafeMutableRawBufferPointer(receive), from: source, tag: tag))
    }

    /// Sum of `values` over the workers.
    public func allReduceSum(_ values: [Float]) throws -> [Float] {
        var v = values
        try v.withUnsafeMutableBufferPointer { try allReduceSum($0.baseAddress!, count: $0.count) }
        return v
    }

    /// Sum of `values` over the workers.
    public func allReduceSum(_ values: [Double]) throws -> [Double] {
        var v = values
        try v.withUnsafeMutableBufferPointer { try allReduceSum($0.baseAddress!, count: $0.count) }
        return v
    }

    /// `root`'s floats on every worker.
    public func broadcast(_ values: inout [Float], root: Int) throws {
        try values.withUnsafeMutableBytes { try broadcast($0, root: root) }
    }
}
