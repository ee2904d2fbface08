import Dispatch
import Foundation
import Synchronization
import Testing
@testable import TensorCore

/// The fork-join pool (`ck_parallel_run` behind ``Parallel``): every index runs exactly once and the call returns
/// only after all have, however many threads ask and however the calls nest.
@Suite struct ParallelTests {
    /// Counts per index after one call.
    static func counts(_ n: Int, threads: Int) -> [Int] {
        let hits = Mutex([Int](repeating: 0, count: n))
        Parallel.forEach(n, threads: threads) { i in hits.withLock { $0[i] += 1 } }
        return hits.withLock { $0 }
    }

    @Test(arguments: [(0, 2), (1, 2), (2, 2), (7, 2), (1000, 2), (5, 4), (64, 8), (3, 1)])
    func everyIndexRunsOnce(_ n: Int, _ threads: Int) {
        for _ in 0..<50 { #expect(Self.counts(n, threads: threads) == [Int](repeating: 1, count: n)) }
    }

    /// Results written by helper threads are visible to the caller when the call returns.
    @Test func writesAreVisibleOnReturn() {
        for round in 0..<2000 {
            var out = [Int](repeating: -1, count: 4)
            out.withUnsafeMutableBufferPointer { buffer in
                nonisolated(unsafe) let p = buffer.baseAddress!
                Parallel.forEach(4, threads: 2) { i in p[i] = i * round }
            }
            #expect(out == (0..<4).map { $0 * round })
        }
    }

    /// A call inside a call, and calls from several threads at once, run every index once (the pool takes one job;
    /// the others run on Dispatch).
    @Test func nestedAndConcurrentCallsRunEveryIndexOnce() {
        let total = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<100 {
                Parallel.forEach(3, threads: 2) { _ in
                    Parallel.forEach(5, threads: 2) { _ in total.add(1, ordering: .relaxed) }
                }
            }
        }
        #expect(total.load(ordering: .relaxed) == 4 * 100 * 3 * 5)
    }

    /// An index that outlasts the waiting caller's spin (0.4 ms) is waited for on the condition variable, woken by
    /// the thread that finishes the last index.
    @Test func slowIndicesAreWaitedFor() {
        for _ in 0..<20 {
            let hits = Mutex([Int](repeating: 0, count: 3))
            Parallel.forEach(3, threads: 2) { i in
                if i == 2 { Thread.sleep(forTimeInterval: 0.002) }
                hits.withLock { $0[i] += 1 }
            }
            #expect(hits.withLock { $0 } == [1, 1, 1])
        }
    }

    /// One thread: every index in order on the calling thread.
    @Test func oneThreadRunsInOrderOnTheCaller() {
        let caller = pthread_self()
        var order = [Int](), others = 0
        Parallel.forEach(50, threads: 1) { i in
            order.append(i)
            if pthread_equal(pthread_self(), caller) == 0 { others += 1 }
        }
        #expect(order == Array(0..<50))
        #expect(others == 0)
    }

    /// After the helpers have gone to sleep (over 0.4 ms idle), a new job wakes them and completes.
    @Test func jobsAfterIdleComplete() {
        for _ in 0..<5 {
            Thread.sleep(forTimeInterval: 0.003)
            #expect(Self.counts(16, threads: 2) == [Int](repeating: 1, count: 16))
        }
    }
}
