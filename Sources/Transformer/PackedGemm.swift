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
    /// every class, `LONGCTX_GEMM=openblas` OpenBLAS on every class, `LONGCTX_GEMM=amx` bf16x3 on AMX (``amx``) on
    /// every class it takes. AMX is not chosen on its own: on the 2-vCPU machine it measured 0.84–0.98× OpenBLAS
    /// over a training step's products (BENCHMARKS.md, "bf16x3 on AMX").
    case automatic
    /// OpenBLAS, single-threaded per column slab.
    case openBLAS
    /// Our packed kernels on this path (avx2 or avx512; on a CPU without it, or `.portable`, OpenBLAS runs).
    case packed(KernelPath)
    /// Products as bf16x3 on AMX tiles (`CK_SGEMM_AMX`, sgemm_amx.c: each f32 operand split into three bf16, the six
    /// significant cross terms accumulated in f32 — f32-level error, see BENCHMARKS.md), where ``amxAvailable``
    /// and `α = 1`, `β ∈ {0, 1}`; OpenBLAS otherwise.
    case amx
    /// The training products' engine where AMX runs: ``amx`` for products of at least 8 rows and 2¹⁶ multiply-adds
    /// that it takes, ``automatic`` for the rest and where AMX is absent. `LONGCTX_GEMM` overrides it as it does
    /// ``automatic`` (`openblas`, `packed`, `amx`). One worker drives the tile unit (``amxWorkers``). Not the
    /// trainer's default: in a quiet window the SmolLM2-135M step at 1K ran at 0.61–0.64× of ``automatic``'s speed
    /// (BENCHMARKS.md, issue 13); `LONGCTX_GEMM=amx-preferred` makes it the trainer's engine for A/B runs.
    case amxPreferred

    /// The engine the trainer's products run on: ``automatic``, or ``amxPreferred`` under
    /// `LONGCTX_GEMM=amx-preferred`.
    public static let training: GemmEngine = forced == "amx-preferred" ? .amxPreferred : .automatic

    /// Whether the AMX engine can run here: AMX-TILE, AMX-BF16 and AVX512-BF16, and Linux granted this process the
    /// tile state.
    public static var amxAvailable: Bool { ck_gemm_amx_available() != 0 }

    /// `LONGCTX_GEMM` in the environment (read once): `packed`, `openblas` or `amx` overrides ``automatic``'s choice;
    /// `amx-preferred` makes ``amxPreferred`` the trainer's engine (``training``).
    static let forced = ProcessInfo.processInfo.environment["LONGCTX_GEMM"]

    /// Most threads that drive the AMX tiles at once in one product (`LONGCTX_AMX_WORKERS`, read once; default 1).
    /// A core has one tile unit: on a 2-vCPU machine whose vCPUs are the two hyperthreads of one core, two workers
    /// share the unit, L1 and L2 and evict each other's operands (BENCHMARKS.md, "bf16x3 on AMX").
    static let amxWorkers = max(1, Int(ProcessInfo.processInfo.environment["LONGCTX_AMX_WORKERS"] ?? "") ?? 1)

    /// The `ck_sgemm` path (`CK_PATH_AVX2`, `CK_PATH_AVX512` or `CK_SGEMM_AMX`) for an `m × n × k` product, or
    /// nil for OpenBLAS.
    func packedPath(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, beta: Float) -> Int32? {
        let amxFits = Self.amxAvailable && alpha == 1 && (beta == 0 || beta == 1)
        switch self {
        case .openBLAS: return nil
        case .packed(let path): return path == .portable || !path.isSupported ? nil : path.rawValue
        case .amx: return amxFits ? CK_SGEMM_AMX : nil
        case .amxPreferred:
            let notOverridden = Self.forced == nil || Self.forced == "amx-preferred"
            if notOverridden && amxFits && m >= 8 && m &* n &* k >= 1 << 16 { return CK_SGEMM_AMX }
            return Self.automatic.packedPath(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta)
        case .automatic:
            let path = KernelPath.active
            guard path != .portable, Self.forced != "openblas", m >= 8, m &* n &* k >= 1 << 16 else { return nil }
            if Self.forced == "amx" { return amxFits ? CK_SGEMM_AMX : nil }
            return Self.forced == "packed" || (transA && !transB) ? path.rawValue : nil
        }
    }
}

extension LayerOps {
    /// `ck_sgemm` on `workers` threads (see sgemm.c): per block, op(B) is packed once (its panels split across the
    /// workers), then `computeWorkers` of them (default: all, but at most ``GemmEngine/amxWorkers`` on the AMX path)
    /// split the rows of C, each packing its own rows of op(A). The bits do not depend on either count. False when
    /// the CPU lacks `path` (nothing written).
    static func packedGemm(path: Int32, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                           a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                           beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, workers: Int,
                           computeWorkers: Int? = nil) -> Bool {
        let job = UnsafeMutablePointer<ck_sgemm_job>.allocate(capacity: 1)
        defer { job.deallocate() }
        let blocks = ck_sgemm_begin(job, path, transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb,
                                    beta, c, ldc)
        guard blocks >= 0 else {
            precondition(blocks == -1, "ck_sgemm: out of memory for the packed panels")
            return false
        }
        nonisolated(unsafe) let j = UnsafePointer(job)
        for block in 0..<Int(blocks) {
            ck_sgemm_block(job, block)
            // Packing a small block is cheaper than waking a second thread.
            let packParts = job.pointee.kb &* job.pointee.nb >= 1 << 15 ? max(1, min(workers, ck_sgemm_pack_parts(j))) : 1
            Parallel.forEach(packParts, threads: workers) { ck_sgemm_pack(j, $0, packParts) }
            let computing = computeWorkers ?? (path == CK_SGEMM_AMX ? min(workers, GemmEngine.amxWorkers) : workers)
            let parts = max(1, min(computing, ck_sgemm_compute_parts(j)))
            Parallel.forEach(parts, threads: workers) { p in
                precondition(ck_sgemm_compute(j, p, parts) == 0, "ck_sgemm: out of memory for the packed panels")
            }
        }
        return true
    }
}
