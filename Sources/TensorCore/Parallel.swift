import CKernels
import Dispatch

/// Fork-join over `0 ..< count` for the short parallel regions of a forward pass (a decoded token runs about five
/// per layer, each tens of microseconds). Runs on `ck_parallel_run`'s pool, whose helper threads spin briefly
/// between jobs instead of sleeping in the kernel, so a region costs no wake-up; when the pool is already running
/// a job (a nested call, or another thread's), on `DispatchQueue.concurrentPerform`. Which thread runs an index
/// is not fixed, so callers split work in ways whose results do not depend on it.
public enum Parallel {
    /// Calls `body(i)` for every `i` in `0 ..< count` on up to `threads` threads (the caller's included; one
    /// thread: in order on the caller) and returns when all calls have returned.
    public static func forEach(_ count: Int, threads: Int, _ body: (Int) -> Void) {
        guard count > 1, threads > 1 else {
            for i in 0..<max(0, count) { body(i) }
            return
        }
        let ran = withoutActuallyEscaping(body) { body -> Bool in
            var task = body
            return withUnsafeMutablePointer(to: &task) { pointer in
                ck_parallel_run(count, threads, { context, index in
                    context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(index)
                }, pointer) != 0
            }
        }
        if ran { return }
        withoutActuallyEscaping(body) { body in
            nonisolated(unsafe) let run = body
            DispatchQueue.concurrentPerform(iterations: count) { run($0) }
        }
    }
}
