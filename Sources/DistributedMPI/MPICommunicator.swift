import COpenMPI
import Distributed
import Foundation

/// ``Communicator`` over MPI (Open MPI from Debian, found with pkg-config `ompi-c`): one rank per process, started by
/// `mpirun -np P …`, on one host (shared memory) or many (TCP, InfiniBand). Every call is on `MPI_COMM_WORLD`.
/// Exchanges are `MPI_Irecv` + `MPI_Isend` finished by `MPI_Waitall`; the sums are `MPI_Allreduce`. Errors are
/// returned (not fatal) and thrown with MPI's text.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int

    /// Whether this process was started by `mpirun`/`mpiexec` (Open MPI or PMIx environment variables).
    public static var launchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil || env["PMI_RANK"] != nil
    }

    /// Initialises MPI (once per process).
    public init() throws {
        var r: Int32 = 0, s: Int32 = 0
        try Self.check(lc_mpi_init(&r, &s), "MPI_Init_thread")
        rank = Int(r)
        size = Int(s)
    }

    /// Shuts MPI down; call once at the end of the process.
    public func finalize() { _ = lc_mpi_finalize() }

    /// Ends every rank of the job (a failed rank must not leave the others waiting forever).
    public func abort(code: Int32 = 1) { lc_mpi_abort(code) }

    final class Pending: PendingExchange {
        var exchange = lc_mpi_exchange()
        let expected: Int
        let source: Int
        init(expected: Int, source: Int) { self.expected = expected; self.source = source }
    }

    public func startExchange(send: UnsafeRawBufferPointer, to destination: Int,
                              receive: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws -> PendingExchange {
        let sendBytes = try Self.int32(send.count), receiveBytes = try Self.int32(receive.count)
        let p = Pending(expected: receive.count, source: source)
        // A zero-byte buffer may have no address; MPI needs one.
        var dummy: UInt8 = 0
        try withUnsafeMutablePointer(to: &dummy) { d in
            try Self.check(lc_mpi_start_exchange(send.baseAddress ?? UnsafeRawPointer(d), sendBytes, Int32(destination),
                                                 receive.baseAddress ?? UnsafeMutableRawPointer(d), receiveBytes,
                                                 Int32(source), Int32(tag), &p.exchange), "MPI_Isend/MPI_Irecv")
        }
        return p
    }

    public func wait(_ exchange: PendingExchange) throws {
        let p = exchange as! Pending
        var received: Int32 = 0
        try Self.check(lc_mpi_wait_exchange(&p.exchange, &received), "MPI_Waitall")
        guard Int(received) == p.expected else {
            throw DistributedError("rank \(rank) expected \(p.expected) bytes from rank \(p.source) but \(received) arrived")
        }
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        try Self.check(lc_mpi_allreduce_sum_float(buffer, try Self.int32(count)), "MPI_Allreduce")
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        try Self.check(lc_mpi_allreduce_sum_double(buffer, try Self.int32(count)), "MPI_Allreduce")
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        try Self.check(lc_mpi_broadcast(base, try Self.int32(buffer.count), Int32(root)), "MPI_Bcast")
    }

    public func barrier() throws { try Self.check(lc_mpi_barrier(), "MPI_Barrier") }

    static func int32(_ n: Int) throws -> Int32 {
        guard let v = Int32(exactly: n) else {
            throw DistributedError("an MPI message of \(n) elements exceeds MPI's 32-bit count")
        }
        return v
    }

    static func check(_ code: Int32, _ call: String) throws {
        guard code != 0 else { return }
        var text = [CChar](repeating: 0, count: Int(lc_mpi_max_error_string()) + 1)
        lc_mpi_error_string(code, &text, Int32(text.count))
        throw DistributedError("\(call) failed: \(String(cString: text))")
    }
}
