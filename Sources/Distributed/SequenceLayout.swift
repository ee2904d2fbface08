import Foundation
import Training

/// Errors of sequence-parallel work: one sentence naming what is wrong.
public struct DistributedError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The tokens of one worker under a layout: a sequence of `length` tokens cut into chunks (`chunkCount` of them,
/// chunk `c` covering `[c·length/chunkCount, (c+1)·length/chunkCount)` — lengths that do not divide evenly give
/// chunks differing by one token), of which this worker holds ``chunks`` in increasing order of position. Local row
/// `i` of the worker is the `i`-th token of its chunks concatenated.
public struct SequenceShard: Sendable, Equatable {
    public let kind: SequenceLayoutKind
    public let length: Int
    public let workers: Int
    public let rank: Int
    /// Global token ranges held, in local row order.
    public let chunks: [Range<Int>]

    /// Refuses a sequence shorter than the number of chunks (every chunk must hold a token).
    public init(kind: SequenceLayoutKind, length: Int, workers: Int, rank: Int) throws {
        guard workers >= 1, rank >= 0, rank < workers else {
            throw DistributedError("rank \(rank) is outside a ring of \(workers) workers")
        }
        let n = kind == .zigzag ? 2 * workers : workers
        guard length >= n else {
            throw DistributedError("a sequence of \(length) tokens cannot be split into the \(n) \(kind.rawValue) chunks of a ring of \(workers) (at least \(n) tokens are needed)")
        }
        self.kind = kind
        self.length = length
        self.workers = workers
        self.rank = rank
        func chunk(_ c: Int) -> Range<Int> { (c * length / n)..<((c + 1) * length / n) }
        chunks = kind == .zigzag ? [chunk(rank), chunk(2 * workers - 1 - rank)] : [chunk(rank)]
    }

    /// The shards of every worker of the ring, by rank.
    public static func all(kind: SequenceLayoutKind, length: Int, workers: Int) throws -> [SequenceShard] {
        try (0..<workers).map { try SequenceShard(kind: kind, length: length, workers: workers, rank: $0) }
    }

    /// Tokens held.
    public var count: Int { chunks.reduce(0) { $0 + $1.count } }

    /// Global index of each local row.
    public var globalIndices: [Int] { chunks.flatMap { Array($0) } }

    /// Local row of the first token of each chunk.
    public var chunkOffsets: [Int] {
        var offsets: [Int] = [], o = 0
        for c in chunks { offsets.append(o); o += c.count }
        return offsets
    }

    /// This worker's rows of a per-token array.
    public func local<T>(_ global: [T]) -> [T] { chunks.flatMap { global[$0] } }

    /// The shard of worker `rank` in the same ring.
    public func peer(_ rank: Int) -> SequenceShard {
        // The arguments were validated for this worker and hold for every rank of the ring.
        try! SequenceShard(kind: kind, length: length, workers: workers, rank: rank)
    }
}
