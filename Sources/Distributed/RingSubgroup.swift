import Foundation

/// `size` consecutive workers of a larger ``Communicator`` (`first ..< first + size`), seen as a group of their own:
/// one ring of sequence parallelism when the workers also do data parallelism. Point-to-point exchanges map to the
/// parent's ranks (rings are disjoint, so their messages never meet); the collectives are the parent's business
/// (gradients are summed over every worker) and are refused here.
public final class RingSubgroup: Communicator {
    public let parent: Communicator
    public let first: Int
    public let size: Int

    public init(parent: Communicator, first: Int, size: Int) throws {
        guard size >= 1, first >= 0, first + size <= parent.size,
              (first ..< first + size).contains(parent.rank) else {
            throw DistributedError("ring of workers \(first)..<\(first + size) does not hold rank \(parent.rank) of \(parent.size)")
        }
        self.parent = parent
        self.first = first
        self.size = size
    }

    public var rank: Int { parent.rank - first }

    public func startExchange(send: UnsafeRawBufferPointer, to destination: Int,
                              receive: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws -> PendingExchange {
        try parent.startExchange(send: send, to: first + destination, receive: receive, from: first + source, tag: tag)
    }

    public func wait(_ exchange: PendingExchange) throws { try parent.wait(exchange) }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws { throw Self.collective }
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws { throw Self.collective }
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws { throw Self.collective }
    public func barrier() throws { throw Self.collective }

    static let collective = DistributedError("collectives run over all the workers, not over one ring of them")
}
