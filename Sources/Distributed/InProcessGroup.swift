import Foundation

/// `size` workers in one process, one thread each, exchanging through shared memory: the in-process transport of
/// ``Communicator`` (`--ring N` on one machine, and the tests). Messages between a pair of workers arrive in the
/// order sent; a send copies its bytes at once, so it never blocks. If any worker fails, every worker waiting on the
/// group gets an error instead of hanging.
public final class InProcessGroup: @unchecked Sendable {
    public let size: Int
    private let condition = NSCondition()
    private var mail: [[Int]: [[UInt8]]] = [:]  // key: [source, destination, tag]
    private var posted: [UnsafeMutableRawPointer?]
    private var arrived = 0, generation = 0
    private var failure: String?

    public init(size: Int) {
        precondition(size >= 1)
        self.size = size
        posted = Array(repeating: nil, count: size)
    }

    /// The communicator of worker `rank`.
    public func communicator(rank: Int) -> InProcessCommunicator { InProcessCommunicator(group: self, rank: rank) }

    /// Runs `body` once per rank on its own thread (real threads: the workers block on each other, so a thread pool
    /// narrower than `size` would deadlock) and returns the results by rank; rethrows the first error.
    public static func run<T>(size: Int, _ body: @escaping @Sendable (InProcessCommunicator) throws -> T) throws -> [T] {
        let group = InProcessGroup(size: size)
        nonisolated(unsafe) var results = [Result<T, Error>?](repeating: nil, count: size)
        let done = DispatchGroup()
        let lock = NSLock()
        for r in 0..<size {
            done.enter()
            let thread = Thread {
                let result = Result { try body(group.communicator(rank: r)) }
                if case .failure(let e) = result { group.fail("worker \(r) failed: \(e)") }
                lock.lock(); results[r] = result; lock.unlock()
                done.leave()
            }
            thread.stackSize = 16 << 20
            thread.start()
        }
        done.wait()
        // Report the worker that failed first rather than the ones that merely saw the group fail.
        let all = results.map { $0! }
        if let original = all.first(where: { if case .failure(let e) = $0 { return !(e is GroupFailed) }; return false }),
           case .failure(let e) = original { throw e }
        return try all.map { try $0.get() }
    }

    struct GroupFailed: Error, CustomStringConvertible { let description: String }

    func fail(_ message: String) {
        condition.lock()
        if failure == nil { failure = message }
        condition.broadcast()
        condition.unlock()
    }

    // MARK: Point to point

    func deposit(_ bytes: UnsafeRawBufferPointer, from source: Int, to destination: Int, tag: Int) {
        condition.lock()
        mail[[source, destination, tag], default: []].append(Array(bytes))
        condition.broadcast()
        condition.unlock()
    }

    func take(into buffer: UnsafeMutableRawBufferPointer, from source: Int, to destination: Int, tag: Int) throws {
        let key = [source, destination, tag]
        condition.lock()
        defer { condition.unlock() }
        while (mail[key]?.isEmpty ?? true) && failure == nil { condition.wait() }
        if let failure { throw GroupFailed(description: failure) }
        let message = mail[key]!.removeFirst()
        guard message.count == buffer.count else {
            throw DistributedError("worker \(destination) expected \(buffer.count) bytes from worker \(source) but \(message.count) were sent")
        }
        message.withUnsafeBytes { buffer.copyMemory(from: $0) }
    }

    // MARK: Collectives

    func barrier() throws {
        condition.lock()
        defer { condition.unlock() }
        if let failure { throw GroupFailed(description: failure) }
        let g = generation
        arrived += 1
        if arrived == size {
            arrived = 0
            generation += 1
            condition.broadcast()
            return
        }
        while generation == g && failure == nil { condition.wait() }
        if let failure { throw GroupFailed(description: failure) }
    }

    /// Element-wise sum in rank order (identical on every worker).
    func allReduceSum<T: FloatingPoint>(_ buffer: UnsafeMutablePointer<T>, count: Int, rank: Int) throws {
        condition.lock(); posted[rank] = UnsafeMutableRawPointer(buffer); condition.unlock()
        try barrier()
        let sum = UnsafeMutablePointer<T>.allocate(capacity: max(1, count))
        defer { sum.deallocate() }
        sum.initialize(repeating: 0, count: count)
        for r in 0..<size {
            let src = posted[r]!.assumingMemoryBound(to: T.self)
            for i in 0..<count { sum[i] += src[i] }
        }
        try barrier()
        buffer.update(from: sum, count: count)
    }

    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int, rank: Int) throws {
        if rank == root { condition.lock(); posted[root] = buffer.baseAddress; condition.unlock() }
        try barrier()
        if rank != root, buffer.count > 0 { buffer.baseAddress!.copyMemory(from: posted[root]!, byteCount: buffer.count) }
        try barrier()
    }
}

/// One worker's view of an ``InProcessGroup``.
public final class InProcessCommunicator: Communicator, @unchecked Sendable {
    public let group: InProcessGroup
    public let rank: Int
    public var size: Int { group.size }

    init(group: InProcessGroup, rank: Int) {
        self.group = group
        self.rank = rank
    }

    final class Pending: PendingExchange {
        let receive: UnsafeMutableRawBufferPointer
        let source: Int, tag: Int
        init(receive: UnsafeMutableRawBufferPointer, source: Int, tag: Int) {
            self.receive = receive; self.source = source; self.tag = tag
        }
    }

    public func startExchange(send: UnsafeRawBufferPointer, to destination: Int,
                              receive: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws -> PendingExchange {
        group.deposit(send, from: rank, to: destination, tag: tag)
        return Pending(receive: receive, source: source, tag: tag)
    }

    public func wait(_ exchange: PendingExchange) throws {
        let p = exchange as! Pending
        try group.take(into: p.receive, from: p.source, to: rank, tag: p.tag)
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        try group.allReduceSum(buffer, count: count, rank: rank)
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        try group.allReduceSum(buffer, count: count, rank: rank)
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        try group.broadcast(buffer, root: root, rank: rank)
    }

    public func barrier() throws { try group.barrier() }
}
