import CKernels
import Foundation
import TensorCore

/// Which SGEMM ``LayerOps/gemm(transA:transB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:workers:engine:)`` runs.
public enum GemmEngine: Sendable, Equatable {
    /// Our packed kernels (`ck_sgemm`) on the active kernel path (AVX-512 or AVX2+FMA) for the product class where
    /// they measured faster than OpenBLAS column slabs on 2 workers: `op(A) = Aᵀ`, `op(B) = B` (the weight gradients,
    /// `dW = dyᵀ·x`), of at least 8 rows and 2¹⁶ multiply-adds. OpenBLAS for the rest (`nt`/`nn` products, where it
    /// was as fast or faster — see BENCHMARKS.md), on the portable path (`LONGCTX_KERNELS=portable`), for one-row
    /// and tiny products. The environment overrides the choice for A/B runs: `LONGCTX_GEMM=packed` runs ours on
    /// every class, `LONGCTX_GEMM=openblas` OpenBLAS on every class.
    case automatic
    /// OpenBLAS, single-threaded per column slab.
    case openBLAS
    /// Our packed kernels on this path (avx2 or avx512; on a CPU without it, or `.portable`, OpenBLAS runs).
    case packed(KernelPath)

    /// `LONGCTX_GEMM` in the environment (read once): `packed` or `openblas` overrides ``automatic``'s choice.
    static let forced = ProcessInfo.processInfo.environment["LONGCTX_GEMM"]

    /// The kernel path for our kernels on an `m × n × k` product, or nil for OpenBLAS.
    func packedPath(transA: Bool, transB: Bool, m: Int, n: Int, k: Int) -> KernelPath? {
        switch self {
        case .openBLAS: return nil
        case .packed(let path): return path == .portable || !path.isSupported ? nil : path
        case .automatic:
            let path = KernelPath.active
            guard path != .portable, Self.forced != "openblas", m >= 8, m &* n &* k >= 1 << 16 else { return nil }
            return Self.forced == "packed" || (transA && !transB) ? path : nil
        }
    }
}

extension LayerOps {
    /// `ck_sgemm` on `workers` threads (see sgemm.c): per block, op(B) is packed once (its panels split across the
    /// workers), then the workers split the rows of C, each packing its own rows of op(A). The bits do not depend on
    /// `workers`. False when the CPU lacks `path` (nothing written).
    static func packedGemm(path: KernelPath, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                           a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                           beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, workers: Int) -> Bool {
        let job = UnsafeMutablePointer<ck_sgemm_job>.allocate(capacity: 1)
        defer { job.deallocate() }
        let blocks = ck_sgemm_begin(job, path.rawValue, transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb,
                                    beta, c, ldc)
        guard blocks >= 0 else {
            precondition(blocks == -1, "ck_sgemm: out of memory for the packed panels")
            return false
        }
        nonisolated(unsafe) let j = UnsafePointer(job)
        for block in 0..<Int(blocks) {
            ck_sgemm_block(job, block)
            // Packing a small block is cheaper than waking a second thread.
            let packParts = job.pointee.kb &* job.pointee.nb >= 1 << 15 ? min(workers, ck_sgemm_pack_parts(j)) : 1
            if packParts > 1 {
                DispatchQueue.concurrentPerform(iterations: packParts) { ck_sgemm_pack(j, $0, packParts) }
            } else {
                ck_sgemm_pack(j, 0, 1)
            }
            let parts = max(1, min(workers, ck_sgemm_compute_parts(j)))
            if parts > 1 {
                DispatchQueue.concurrentPerform(iterations: parts) { p in
                    precondition(ck_sgemm_compute(j, p, parts) == 0, "ck_sgemm: out of memory for the packed panels")
                }
            } else {
                precondition(ck_sgemm_compute(j, 0, 1) == 0, "ck_sgemm: out of memory for the packed panels")
            }
        }
        return true
    }
}
