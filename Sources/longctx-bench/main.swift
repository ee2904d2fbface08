// Micro-benchmarks for the tensor core and model I/O, printed as JSON lines for scripts/bench.
//   longctx-bench sgemm N [threads]       -> best-of GFLOP/s of cblas_sgemm N×N×N
//   longctx-bench st-read FILE            -> safetensors read throughput (GB/s): open + touch, open + copy to f32
//   longctx-bench lora-pair BASE OUT [rank] [noise] -> writes a synthetic fine-tune of BASE (LoRA benchmark)
//   longctx-bench lora-error BASE TUNED ADAPTER   -> relative Frobenius error of an adapter vs the deltas
//   longctx-bench prefill DIR N [decode]  -> engine prefill tok/s for N tokens (+ decode tok/s), peak RSS, the
//                                            kernel path and CPU flags (env LONGCTX_KERNELS picks a lower path;
//                                            env WEIGHTS=stored|q8_0|q4_0|q4_1|q4_k the weight format,
//                                            COMPUTE=f32|bf16 the product arithmetic)
//   longctx-bench gemm M N K [transB]     -> single-threaded cblas_sgemm GFLOP/s of one shape (best of 5)
//   longctx-bench gemm-train [N]          -> the f32 products of one SmolLM2-135M training step on N tokens (default
//                                            1024; forward nt, input-gradient nn, weight-gradient tn, LM-head chunks):
//                                            GFLOP/s of LayerOps.gemm with our packed kernels against OpenBLAS
//                                            column slabs, and the step's GEMM seconds each way; env WORKERS (2),
//                                            REPS (5, best of)
//   longctx-bench gemm-bf16 M N K         -> single-threaded ck_bf16_gemm GFLOP/s (C = A·Wᵀ, bf16 in, f32
//                                            accumulation), one line per path: AMX, vdpbf16ps, portable (small shapes)
//   longctx-bench matvec ROWS K [REPS]    -> one-thread integer matrix–vector G weights/s of Q8_0, Q4_1 and Q4_K
//                                            weights (Q8_0 activations) on every kernel path the CPU has, best of
//                                            REPS (30), the paths interleaved per round
//   longctx-bench attention N [fused|blas] [keyBlock] -> causal attention GFLOP/s of one SmolLM2-shaped layer
//                                            (9/3 heads, d 64) over N positions, queries in chunks of 1024;
//                                            env WORKERS (2), REPS (1, best of), QB (query tile)
//   longctx-bench attention-backward N [blas|avx2|avx512] -> causal attention backward GFLOP/s of the same layer
//                                            (five products counted), env WORKERS, REPS
//   longctx-bench train N [DIR] [--recompute] [--steps S]
//                                         -> full fine-tuning steps (forward + backward + AdamW) on one N-token
//                                            sequence of DIR (default smollm2-135m-instruct): best step's tok/s and
//                                            seconds, peak RSS; one 256-token warm-up step first; env WORKERS (2)
//   [mpirun -np P] longctx-bench ring-step N DIR [zigzag|contiguous] [pass-kv|all-gather] [--steps S]
//                                         -> training step (forward + backward, AdamW) of one N-token sequence of DIR sharded over the P MPI
//                                            ranks (ring attention; gradients all-reduced), the same random tokens as
//                                            `train`; one JSON line per rank: best step's seconds, its attention
//                                            communication/compute seconds, bytes sent, peak RSS; env WORKERS (1)
//   longctx-bench estimate DIR STAGES RING [WORKERS] -> `longctx train --estimate --json` with measured rates
//   longctx-bench ruler-prep TOKENIZER_DIR LENGTH TASKS [samples] [config]
//                                         -> per task: seconds to generate and length-fit RULER samples (the code
//                                            path of `longctx eval ruler`), timed after the tokenizer is loaded
import Basics
import CKernels
import Distributed
import DistributedMPI
import Evaluation
import Foundation
import ModelIO
import LoRA
import TensorCore
import Tokenizers
import Training
import Transformer

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let t0 = ContinuousClock.now
    try body()
    let d = ContinuousClock.now - t0
    return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}

func sgemm(_ n: Int, threads: Int) {
    BLAS.threads = threads
    let a = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
    let b = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
    let c = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
    var r = SeededRandom(seed: 1)
    for i in 0..<(n * n) { a[i] = r.normal(); b[i] = r.normal(); c[i] = 0 }
    BLAS.sgemm(m: n, n: n, k: n, a: a, lda: n, b: b, ldb: n, c: c, ldc: n)  // warm-up
    var best = Double.infinity
    let reps = n >= 4096 ? 3 : 7
    for _ in 0..<reps {
        best = min(best, seconds { BLAS.sgemm(m: n, n: n, k: n, a: a, lda: n, b: b, ldb: n, c: c, ldc: n) })
    }
    print("{\"bench\":\"sgemm\",\"n\":\(n),\"threads\":\(threads),\"seconds\":\(best),\"gflops\":\(2 * Double(n * n * n) / best / 1e9)}")
}

func stRead(_ path: String) throws {
    var bytes = 0
    // Open + touch every byte through zero-copy views (the page cache is warm: run twice, keep the best).
    var bestTouch = Double.infinity, bestCopy = Double.infinity
    var sink: UInt64 = 0
    for _ in 0..<3 {
        bestTouch = min(bestTouch, try seconds {
            let f = try SafetensorsFile(path: path)
            bytes = 0
            for e in f.entries {
                let t = try f.tensor(e.name)
                let p = t.rawPointer
                var s: UInt64 = 0
                var i = 0
                while i + 8 <= t.byteCount { s &+= p.loadUnaligned(fromByteOffset: i, as: UInt64.self); i &+= 4096 }
                sink &+= s
                bytes += t.byteCount
            }
        })
        bestCopy = min(bestCopy, try seconds {
            let f = try SafetensorsFile(path: path)
            for e in f.entries {
                let t = try f.tensor(e.name)
                let c = t.converted(to: t.dtype)  // owned copy, as load_file makes
                sink &+= UInt64(c.count)
            }
        })
    }
    print("{\"bench\":\"st-read\",\"bytes\":\(bytes),\"open_touch_gbps\":\(Double(bytes) / bestTouch / 1e9),\"open_copy_gbps\":\(Double(bytes) / bestCopy / 1e9),\"sink\":\(sink % 7)}")
}

/// Peak resident set size of this process (VmHWM), bytes.
func peakRSS() -> Int { ProcessMemory.peakResidentBytes() }

/// `"kernel_path":…,"cpu_flags":…` JSON members: the kernel path the run used and the CPU flags it was chosen from.
nonisolated var kernelJSON: String { "\"kernel_path\":\"\(KernelPath.active)\",\"cpu_flags\":\"\(KernelPath.cpuFlags)\"" }

func prefill(_ dir: String, tokens n: Int, decode steps: Int) throws {
    let format = WeightFormat(rawValue: ProcessInfo.processInfo.environment["WEIGHTS"] ?? "stored") ?? .stored
    let compute = ComputePrecision(rawValue: ProcessInfo.processInfo.environment["COMPUTE"] ?? "f32") ?? .f32
    let model = try TransformerModel(directory: dir, weights: format, compute: compute)
    var r = SeededRandom(seed: 3)
    let vocab = model.configuration.vocabSize
    let ids = (0..<n).map { _ in Int(r.next() % UInt64(vocab)) }
    _ = try model.forward(Array(ids.prefix(256)), cache: model.makeCache(), logits: .last)  // warm-up
    let cache = model.makeCache(capacity: n + steps)
    var logits: [Float] = []
    let t = try seconds { logits = try model.forward(ids, cache: cache, logits: .last) }
    var decodeSeconds = 0.0
    if steps > 0 {
        decodeSeconds = try seconds {
            for _ in 0..<steps {
                let next = logits.indices.max { logits[$0] < logits[$1] }!
                logits = try model.forward([next], cache: cache, logits: .last)
            }
        }
    }
    print("{\"bench\":\"prefill\",\"tokens\":\(n),\"seconds\":\(t),\"tokens_per_second\":\(Double(n) / t),\"decode_tokens_per_second\":\(steps > 0 ? Double(steps) / decodeSeconds : 0),\"kv_cache_bytes\":\(cache.bytes),\"peak_rss_bytes\":\(peakRSS()),\"weights\":\"\(format.rawValue)\",\"compute\":\"\(model.computePath)\",\(kernelJSON)}")
}

func gemm(m: Int, n: Int, k: Int, transB: Bool) {
    BLAS.threads = 1
    var r = SeededRandom(seed: 1)
    let a = (0..<(m * k)).map { _ in r.normal() }, b = (0..<(n * k)).map { _ in r.normal() }
    var c = [Float](repeating: 0, count: m * n)
    let t = a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
        (0..<5).map { _ in seconds {
            BLAS.sgemm(transB: transB, m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: bp.baseAddress!,
                       ldb: transB ? k : n, c: cp.baseAddress!, ldc: n)
        } }.min()!
    }}}
    print("{\"bench\":\"gemm\",\"m\":\(m),\"n\":\(n),\"k\":\(k),\"gflops\":\(2 * Double(m * n * k) / t / 1e9)}")
}

/// `longctx-bench gemm-train`: every product shape of a SmolLM2-135M training step (30 layers: d 576, MLP 1536, q/kv
/// 576/192, vocabulary 49152 in 170-row chunks), ours (`ENGINE=amx`: bf16x3 on AMX tiles, the default where AMX
/// runs; `ENGINE=packed`: our f32 kernels on the active path) against OpenBLAS slabs, same workers, timed
/// interleaved (ours, OpenBLAS, ours, …; best of `REPS` each). Per shape also the error of both against a Double
/// reference on a 48 × 48 grid of sampled elements (β = 0): `|c − c_ref| / Σ_k |a·b|` (max and mean) and the
/// relative Frobenius error `‖c − c_ref‖ / ‖c_ref‖` over the sample.
func gemmTrain(tokens n: Int) {
    BLAS.threads = 1
    let workers = environment("WORKERS", 2), reps = environment("REPS", 5)
    let amx = ProcessInfo.processInfo.environment["ENGINE"].map { $0 == "amx" } ?? GemmEngine.amxAvailable
    let engine: GemmEngine = amx ? .amx : .packed(KernelPath.active)
    var r = SeededRandom(seed: 1)
    var totals = (ours: 0.0, blas: 0.0)
    for (name, ta, tb, m, nn, k, beta, times) in trainingProducts(tokens: n) {
        let a = (0..<(m * k)).map { _ in r.normal() }, b = (0..<(nn * k)).map { _ in r.normal() }
        var c = [Float](repeating: 0, count: m * nn)
        let lda = ta ? m : k, ldb = tb ? k : nn
        func run(_ engine: GemmEngine, beta: Float) -> Double {
            a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                seconds {
                    LayerOps.gemm(transA: ta, transB: tb, m: m, n: nn, k: k, a: ap.baseAddress!, lda: lda,
                                  b: bp.baseAddress!, ldb: ldb, beta: beta, c: cp.baseAddress!, ldc: nn,
                                  workers: workers, engine: engine)
                }
            }}}
        }
        var ours = Double.infinity, blas = Double.infinity
        for _ in 0..<reps {
            ours = min(ours, run(engine, beta: beta))
            blas = min(blas, run(.openBLAS, beta: beta))
        }
        totals.ours += ours * Double(times); totals.blas += blas * Double(times)
        func error(_ engine: GemmEngine) -> String {
            _ = run(engine, beta: 0)
            let e = productError(c, m: m, n: nn, k: k) { i, p in Double(ta ? a[p * lda + i] : a[i * lda + p]) }
                b: { p, j in Double(tb ? b[j * ldb + p] : b[p * ldb + j]) }
            return "{\"max\":\(e.max),\"mean\":\(e.mean),\"frobenius\":\(e.frobenius)}"
        }
        let gf = 2 * Double(m * nn * k) / 1e9
        print("{\"bench\":\"gemm-train\",\"engine\":\"\(amx ? "amx-bf16x3" : "packed-f32")\",\"shape\":\"\(name)\",\"op\":\"\(ta ? "t" : "n")\(tb ? "t" : "n")\",\"m\":\(m),\"n\":\(nn),\"k\":\(k),\"workers\":\(workers),\"ours_gflops\":\(gf / ours),\"openblas_gflops\":\(gf / blas),\"ratio\":\(blas / ours),\"ours_error\":\(error(engine)),\"openblas_error\":\(error(.openBLAS))}")
    }
    print("{\"bench\":\"gemm-train-step\",\"engine\":\"\(amx ? "amx-bf16x3" : "packed-f32")\",\"tokens\":\(n),\"workers\":\(workers),\"ours_seconds\":\(totals.ours),\"openblas_seconds\":\(totals.blas),\"ratio\":\(totals.blas / totals.ours),\(kernelJSON)}")
}

/// The products of one SmolLM2-135M training step on `n` tokens through `LayerOps.gemm`: (name, transA, transB, m, n,
/// k, β, times per step) — forward `nt`, input-gradient `nn`, weight-gradient `tn`, LM-head chunks of 170 rows.
func trainingProducts(tokens n: Int) -> [(String, Bool, Bool, Int, Int, Int, Float, Int)] {
    let d = 576, f = 1536, qkv = 960, v = 49152, chunk = (1 << 23) / v, layers = 30
    let chunks = (n + chunk - 1) / chunk
    return [
        ("fwd qkv", false, true, n, qkv, d, 0, layers), ("fwd o", false, true, n, d, d, 0, layers),
        ("fwd gate_up", false, true, n, 2 * f, d, 0, layers), ("fwd down", false, true, n, d, f, 0, layers),
        ("dx down", false, false, n, f, d, 0, layers), ("dx gate_up", false, false, n, d, 2 * f, 0, layers),
        ("dx o", false, false, n, d, d, 0, layers), ("dx qkv", false, false, n, d, qkv, 0, layers),
        ("dW down", true, false, d, f, n, 1, layers), ("dW gate_up", true, false, 2 * f, d, n, 1, layers),
        ("dW o", true, false, d, d, n, 1, layers), ("dW qkv", true, false, qkv, d, n, 1, layers),
        ("head fwd", false, true, chunk, v, d, 0, chunks), ("head dx", false, false, chunk, d, v, 0, chunks),
        ("head dW", true, false, v, d, chunk, 1, chunks),
    ]
}

/// Error of `c` (`m × n`, row-major) against the Double product `Σ_p a(i, p)·b(p, j)` on a 48 × 48 grid of sampled
/// elements: max and mean of `|c − ref| / Σ_p |a·b|`, and `‖c − ref‖ / ‖ref‖` over the sample.
func productError(_ c: [Float], m: Int, n: Int, k: Int, a: (Int, Int) -> Double, b: (Int, Int) -> Double)
    -> (max: Double, mean: Double, frobenius: Double) {
    var worst = 0.0, sum = 0.0, count = 0.0, diff2 = 0.0, ref2 = 0.0
    for i in stride(from: 0, to: m, by: max(1, m / 48)) {
        for j in stride(from: 0, to: n, by: max(1, n / 48)) {
            var ref = 0.0, abs = 0.0
            for p in 0..<k { let t = a(i, p) * b(p, j); ref += t; abs += Swift.abs(t) }
            let e = Swift.abs(Double(c[i * n + j]) - ref)
            worst = max(worst, e / max(abs, .leastNormalMagnitude)); sum += e / max(abs, .leastNormalMagnitude)
            count += 1; diff2 += e * e; ref2 += ref * ref
        }
    }
    return (worst, sum / count, (diff2 / max(ref2, .leastNormalMagnitude)).squareRoot())
}

/// `longctx-bench amx-tile`: the AMX tile unit on this thread — TDPBF16PS on resident tiles (peak bf16 GFLOP/s, and
/// the f32-equivalent rate of bf16x3's six products), then the bf16x3 32 × 32 tile kernel with its tile loads over
/// packed operands of 18 and 64 k chunks (k = 576 and 2048; in L1/L2), no packing.
func amxTile() {
    guard GemmEngine.amxAvailable else { print("{\"bench\":\"amx-tile\",\"available\":false}"); return }
    let iterations = 500_000
    let dp = (0..<5).map { _ in ck_amx_probe_dp(iterations) }.min()!
    let peak = Double(iterations) * 4 * 16 * 16 * 32 * 2 / dp / 1e9
    var line = "{\"bench\":\"amx-tile\",\"available\":true,\"dp_bf16_gflops\":\(peak),\"bf16x3_f32_equivalent_peak_gflops\":\(peak / 6)"
    for chunks in [18, 64] {
        let reps = 40_000 / chunks
        let t = (0..<5).map { _ in ck_amx_probe_tile(chunks, reps) }.min()!
        line += ",\"tile_kernel_k\(chunks * 32)_f32_equivalent_gflops\":\(Double(reps) * 32 * 32 * Double(chunks * 32) * 2 / t / 1e9)"
    }
    print(line + ",\(kernelJSON)}")
}

/// Single-threaded `ck_bf16_gemm` GFLOP/s of one Linear shape, `C[m × n] = A[m × k] · Wᵀ` (best of 5), one JSON line
/// per path this CPU runs: AMX tiles (`tdpbf16ps`), `vdpbf16ps`, and the portable loop (only for products under
/// 10⁸ multiply–adds, or when it is the only path); the counterpart of `gemm M N K t`.
func gemmBF16(m: Int, n: Int, k: Int) {
    var r = SeededRandom(seed: 1)
    var a = [UInt16](repeating: 0, count: m * k), w = [UInt16](repeating: 0, count: n * k)
    ck_f32_to_bf16((0..<(m * k)).map { _ in r.normal() }, &a, m * k)
    ck_f32_to_bf16((0..<(n * k)).map { _ in r.normal() }, &w, n * k)
    var packed = [UInt16](repeating: 0, count: ck_bf16_packed_count(n, k))
    ck_bf16_pack(w, n, k, &packed)
    var c = [Float](repeating: 0, count: m * n)
    var paths: [(Int32, String)] = []
    if ck_gemm_amx_available() != 0 { paths.append((CK_BF16_AMX, "amx_bf16")) }
    if ck_cpu_avx512_bf16() != 0 { paths.append((CK_BF16_AVX512, "avx512_bf16")) }
    if paths.isEmpty || m * n * k < 100_000_000 { paths.append((CK_BF16_PORTABLE, "portable")) }
    for (path, name) in paths {
        let t = (0..<5).map { _ in seconds { _ = ck_bf16_gemm(a, k, m, k, packed, n, 0, (n + 15) / 16, &c, n, 0, path) } }.min()!
        print("{\"bench\":\"gemm-bf16\",\"m\":\(m),\"n\":\(n),\"k\":\(k),\"path\":\"\(name)\",\"gflops\":\(2 * Double(m * n * k) / t / 1e9)}")
    }
}

/// Quantized matrix–vector kernels (`ck_q8_matvec_on`, `ck_q4_matvec_on` with Q4_1 minimums, `ck_q4k_matvec_on`)
/// on a random `rows × k` matrix, one thread: per format and path the best of `reps` calls, in G weights/s.
func matvec(rows: Int, k: Int, reps: Int) {
    var r = SeededRandom(seed: 9)
    let w = (0..<(rows * k)).map { _ in r.normal() * 0.05 }, x = (0..<k).map { _ in r.normal() }
    var xq = [Int8](repeating: 0, count: k), xd = [Float](repeating: 0, count: k / 32), y = [Float](repeating: 0, count: rows)
    ck_q8_quantize(x, k, &xq, &xd)
    var q8 = [Int8](repeating: 0, count: rows * k), d8 = [Float](repeating: 0, count: rows * k / 32)
    ck_q8_quantize(w, rows * k, &q8, &d8)
    var q4 = [UInt8](repeating: 0, count: rows * k / 2), d4 = d8, m4 = d8
    ck_q4_1_quantize(w, rows * k, &q4, &d4, &m4)
    var qk = q4, sk = [UInt8](repeating: 0, count: rows * k / 16), dk = [Float](repeating: 0, count: rows * k / 128)
    if k % 256 == 0 { ck_q4k_quantize(w, rows * k, &qk, &sk, &dk) }
    let paths = [CK_PATH_PORTABLE, CK_PATH_AVX2, CK_PATH_AVX512].filter { ck_path_supported($0) != 0 }
    let formats = k % 256 == 0 ? ["q8_0", "q4_1", "q4_k"] : ["q8_0", "q4_1"]
    var best = [String: Double]()
    for _ in 0..<reps {
        for f in formats {
            for p in paths {
                let t = seconds {
                    switch f {
                    case "q8_0": ck_q8_matvec_on(p, q8, d8, rows, k, xq, xd, &y)
                    case "q4_1": ck_q4_matvec_on(p, q4, d4, m4, rows, k, xq, xd, &y)
                    default: ck_q4k_matvec_on(p, qk, sk, dk, rows, k, xq, xd, &y)
                    }
                }
                let key = "\(f)/\(String(cString: ck_path_name(p)))"
                best[key] = min(best[key] ?? .infinity, t)
            }
        }
    }
    for key in best.keys.sorted() {
        print("{\"bench\":\"matvec\",\"rows\":\(rows),\"k\":\(k),\"kernel\":\"\(key)\",\"vnni\":\(ck_cpu_avx512_vnni() != 0),\"gweights_per_s\":\(Double(rows * k) / best[key]! / 1e9)}")
    }
}

/// An integer from the environment, or `fallback`.
func environment(_ name: String, _ fallback: Int) -> Int {
    Int(ProcessInfo.processInfo.environment[name] ?? "") ?? fallback
}

/// One causal SmolLM2-shaped attention layer (9/3 heads of 64) over `n` positions in prefill chunks of 1024:
/// `mode` "fused" (the f32 tile), "blas" (BLAS tiles) or "amx" (the bf16 AMX kernel of `--compute bf16`).
func attention(_ n: Int, mode: String, keyBlock: Int?) {
    let fused = mode != "blas", compute: ComputePrecision = mode == "amx" ? .bf16 : .f32
    if mode == "amx" && !ComputePrecision.amxAttention(headDim: 64) {
        print("{\"bench\":\"attention\",\"n\":\(n),\"mode\":\"amx\",\"skipped\":\"AMX attention off here (no AMX-BF16, LONGCTX_AMX=0, or not the AVX-512 path)\",\(kernelJSON)}")
        return
    }
    let shape = AttentionShape(heads: 9, kvHeads: 3, headDim: 64)
    let width = shape.heads * shape.headDim, kvSize = shape.kvHeads * n * shape.headDim
    var r = SeededRandom(seed: 5)
    let q = (0..<(n * width)).map { _ in r.normal() }
    let k = (0..<kvSize).map { _ in r.normal() }
    let v = (0..<kvSize).map { _ in r.normal() }
    var out = [Float](repeating: 0, count: n * width)
    BLAS.threads = 1
    let chunk = 1024
    let workers = environment("WORKERS", 2), reps = environment("REPS", 1)
    let queryBlock = environment("QB", BlockwiseAttention.defaultQueryBlock)
    let t = q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
        out.withUnsafeMutableBufferPointer { op in
            (0..<reps).map { _ in seconds {
                var s = 0
                while s < n {
                    let c = min(chunk, n - s)
                    let kv = KeyValueView(keys: kp.baseAddress!, values: vp.baseAddress!, stride: n, count: s + c)
                    BlockwiseAttention.attend(shape: shape, query: qp.baseAddress! + s * width, queryStride: width,
                                              count: c, firstPosition: s, kv: kv, output: op.baseAddress! + s * width,
                                              outputStride: width, workers: workers, queryBlock: queryBlock,
                                              keyBlock: keyBlock, fused: fused, compute: compute)
                    s += c
                }
            } }.min()!
        }
    }}}
    // Causal: n(n+1)/2 scores per head, 2·headDim multiply-adds each (QKᵀ and PV).
    let flops = Double(n) * Double(n + 1) / 2 * Double(shape.heads) * 4 * Double(shape.headDim)
    print("{\"bench\":\"attention\",\"n\":\(n),\"mode\":\"\(mode)\",\"seconds\":\(t),\"gflops\":\(flops / t / 1e9),\(kernelJSON)}")
}

/// One decoded token's attention over a cache of `n` positions, SmolLM-shaped (30 layers of 9/3 heads of 64, each
/// layer its own f32 cache, so the keys/values come from memory as in decoding; `LAYERS` changes the count): best of `REPS` (default 5) timed
/// tokens, with the cache bytes read per second. `kernel`: the active path, or `.portable` for the portable C.
func attentionDecode(_ n: Int, kernel: KernelPath) {
    let shape = AttentionShape(heads: 9, kvHeads: 3, headDim: 64), layers = environment("LAYERS", 30)
    let width = shape.heads * shape.headDim, kvSize = shape.kvHeads * n * shape.headDim
    var r = SeededRandom(seed: 5)
    let q = (0..<width).map { _ in r.normal() }
    let caches = (0..<layers).map { _ in (0..<(2 * kvSize)).map { _ in r.normal() } }
    var out = [Float](repeating: 0, count: width)
    let workers = environment("WORKERS", 2), reps = environment("REPS", 5)
    let t = q.withUnsafeBufferPointer { qp in out.withUnsafeMutableBufferPointer { op in
        (0..<reps).map { _ in seconds {
            for cache in caches {
                cache.withUnsafeBufferPointer { c in
                    let kv = KeyValueView(keys: c.baseAddress!, values: c.baseAddress! + kvSize, stride: n, count: n)
                    BlockwiseAttention.attend(shape: shape, query: qp.baseAddress!, queryStride: width, count: 1,
                                              firstPosition: n - 1, kv: kv, output: op.baseAddress!,
                                              outputStride: width, workers: workers, fused: kernel != .portable)
                }
            }
        } }.min()!
    }}
    let bytes = Double(layers * 2 * kvSize * 4)
    print("{\"bench\":\"attention-decode\",\"n\":\(n),\"kernel\":\"\(kernel)\",\"workers\":\(workers),\"ms_per_token\":\(t * 1000),\"cache_gb_per_s\":\(bytes / t / 1e9),\(kernelJSON)}")
}

/// The attention backward of one causal SmolLM-shaped layer (9/3 heads of 64) over `n` positions, after the
/// forward that gives it its output and log-sum-exp: best of `REPS` (default 1) timed calls.
func attentionBackward(_ n: Int, kernel: KernelPath) {
    let shape = AttentionShape(heads: 9, kvHeads: 3, headDim: 64)
    let width = shape.heads * shape.headDim, kvSize = shape.kvHeads * n * shape.headDim
    var r = SeededRandom(seed: 5)
    let q = (0..<(n * width)).map { _ in r.normal() }, dO = (0..<(n * width)).map { _ in r.normal() }
    let k = (0..<kvSize).map { _ in r.normal() }, v = (0..<kvSize).map { _ in r.normal() }
    var out = [Float](repeating: 0, count: n * width), lse = [Float](repeating: 0, count: n * shape.heads)
    var dq = out, dk = k, dv = v
    BLAS.threads = 1
    let workers = environment("WORKERS", 2), reps = environment("REPS", 1)
    let t = q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
        let kv = KeyValueView(keys: kp.baseAddress!, values: vp.baseAddress!, stride: n, count: n)
        out.withUnsafeMutableBufferPointer { op in lse.withUnsafeMutableBufferPointer { lp in
            BlockwiseAttention.attend(shape: shape, query: qp.baseAddress!, queryStride: width, count: n, firstPosition: 0,
                                      kv: kv, output: op.baseAddress!, outputStride: width, logSumExp: lp.baseAddress!,
                                      workers: workers)
        }}
        return out.withUnsafeBufferPointer { op in lse.withUnsafeBufferPointer { lp in dO.withUnsafeBufferPointer { gp in
            dq.withUnsafeMutableBufferPointer { dqp in dk.withUnsafeMutableBufferPointer { dkp in
            dv.withUnsafeMutableBufferPointer { dvp in
                (0..<reps).map { _ in seconds {
                    AttentionBackward.accumulate(shape: shape, query: qp.baseAddress!, queryStride: width, count: n,
                                                 firstPosition: 0, kv: kv, output: op.baseAddress!, outputStride: width,
                                                 outputGradient: gp.baseAddress!, outputGradientStride: width,
                                                 logSumExp: lp.baseAddress!, queryGradient: dqp.baseAddress!,
                                                 queryGradientStride: width, keyGradient: dkp.baseAddress!,
                                                 valueGradient: dvp.baseAddress!, workers: workers, kernel: kernel)
                } }.min()!
            }}}
        }}}
    }}}
    // Causal: n(n+1)/2 scores per head, five products of 2·headDim flops each (S, dP, dV, dK, dQ).
    let flops = Double(n) * Double(n + 1) / 2 * Double(shape.heads) * 10 * Double(shape.headDim)
    print("{\"bench\":\"attention-backward\",\"n\":\(n),\"kernel\":\"\(AttentionBackward.runs(kernel, headDim: 64) ? kernel : AttentionBackward.kernel(headDim: 64))\",\"seconds\":\(t),\"gflops\":\(flops / t / 1e9)}")
}

/// Full fine-tuning steps on one random `n`-token sequence (next-token targets, mean loss): zero the gradients,
/// forward + backward, then the optimizer step. One 256-token warm-up step, then `steps` timed steps; the best counts.
func train(_ n: Int, directory: String, recompute: Bool, steps: Int) throws {
    let workers = environment("WORKERS", 2)
    let model = try TrainableModel(directory: try ModelDirectory(path: directory), workers: workers, recompute: recompute)
    var r = SeededRandom(seed: 3)
    let vocab = model.configuration.vocabSize
    let ids = (0..<n).map { _ in Int(r.next() % UInt64(vocab)) }
    // torch.optim.AdamW(lr=1e-5) as the PyTorch peer: default betas, eps and weight decay; moments allocated here
    // (torch creates them on the warm-up step).
    let learningRate = 1e-5
    var adamW = AdamW(store: model.parameters, options: AdamWOptions(learningRate: learningRate))
    var best = (step: Double.infinity, backward: 0.0, optimizer: 0.0, loss: 0.0)
    for s in 0...max(1, steps) {
        let sequence = TrainingSequence(causal: s == 0 ? Array(ids.prefix(256)) : ids)
        var loss = 0.0
        let backward = try seconds {
            model.parameters.zeroGradients()
            loss = try model.accumulateGradients(sequence, lossScale: 1 / Float(sequence.lossTokens)).loss
        }
        let optimizer = seconds { adamW.update(model.parameters, learningRate: learningRate, threads: workers) }
        if s > 0 && backward + optimizer < best.step {
            best = (backward + optimizer, backward, optimizer, loss / Double(sequence.lossTokens))
        }
    }
    print("{\"bench\":\"train\",\"tokens\":\(n),\"workers\":\(workers),\"recompute\":\(recompute),\"optimizer\":true,\"seconds\":\(best.step),\"forward_backward_seconds\":\(best.backward),\"optimizer_seconds\":\(best.optimizer),\"tokens_per_second\":\(Double(n) / best.step),\"loss\":\(best.loss),\"peak_rss_bytes\":\(peakRSS())}")
}

/// Ring-sharded training steps (forward + backward, gradients all-reduced, AdamW; see the usage line); one 256-token
/// warm-up step first.
func ringStep(_ n: Int, directory: String, layout: SequenceLayoutKind, strategy: RingStrategy, steps: Int) throws {
    let comm = try MPICommunicator()
    defer { comm.finalize() }
    let workers = environment("WORKERS", 1)
    let model = try TrainableModel(directory: try ModelDirectory(path: directory), workers: workers)
    var r = SeededRandom(seed: 3)
    let vocab = model.configuration.vocabSize
    let ids = (0..<n).map { _ in Int(r.next() % UInt64(vocab)) }
    // AdamW on every rank after the all-reduce, as the trainer does: a full training step.
    let learningRate = 1e-5
    var adamW = AdamW(store: model.parameters, options: AdamWOptions(learningRate: learningRate))
    var best = (step: Double.infinity, stats: RingStatistics(), reduce: 0.0, optimizer: 0.0, loss: 0.0)
    for s in 0...max(1, steps) {
        let sequence = TrainingSequence(causal: s == 0 ? Array(ids.prefix(256)) : ids)
        let shard = try SequenceShard(kind: layout, length: sequence.count, workers: comm.size, rank: comm.rank)
        let ring = try RingAttention(communicator: comm, shard: shard, strategy: strategy)
        try comm.barrier()
        var loss = 0.0, reduce = 0.0, optimizer = 0.0
        let t = try seconds {
            model.parameters.zeroGradients()
            let mine = try ShardedTraining.accumulateGradients(model, sequence, lossScale: 1 / Float(sequence.lossTokens), ring: ring)
            reduce = try seconds { try ShardedTraining.allReduceGradients(model, over: comm) }
            loss = try ShardedTraining.allReduce(loss: mine.loss, tokens: mine.tokens, over: comm).loss
            optimizer = seconds { adamW.update(model.parameters, learningRate: learningRate, threads: workers) }
        }
        if s > 0 && t < best.step { best = (t, ring.statistics, reduce, optimizer, loss / Double(sequence.lossTokens)) }
    }
    print("{\"bench\":\"ring-step\",\"tokens\":\(n),\"ranks\":\(comm.size),\"rank\":\(comm.rank),\"workers\":\(workers),\"layout\":\"\(layout.rawValue)\",\"strategy\":\"\(strategy.rawValue)\",\"seconds\":\(best.step),\"attention_compute_seconds\":\(best.stats.computeSeconds),\"attention_communication_seconds\":\(best.stats.communicationSeconds),\"gradient_allreduce_seconds\":\(best.reduce),\"optimizer_seconds\":\(best.optimizer),\"bytes_sent\":\(best.stats.bytesSent),\"loss\":\(best.loss),\"peak_rss_bytes\":\(peakRSS())}")
}

/// Same counting as `longctx eval`: the prompt as the engine is fed it.
struct BenchTokenCounter: TokenCounting {
    let tokenizer: Tokenizer
    func tokenCount(_ text: String) -> Int { tokenizer.encodePrompt(text).count }
}

func rulerPrep(tokenizerDir: String, length: Int, tasks: [String], samples: Int, config: String) throws {
    let tok = try Tokenizer.load(directory: tokenizerDir)
    let suite = RulerSuite(config: try RulerConfig.load(path: config))
    let maker = SampleMaker(counter: BenchTokenCounter(tokenizer: tok), format: .base)
    for task in tasks {
        var out: [EvalSample] = []
        let t = try seconds { out = try maker.samples(suite.spec(task, length: length, maker: maker), length: length, count: samples) }
        let lengths = out.map { $0.promptTokens + $0.tokensToGenerate }
        print("{\"task\": \"\(task)\", \"seconds\": \(t), \"lengths\": \(lengths)}")
    }
}

let args = CommandLine.arguments
// AMX blocking experiments (AMX_KC, AMX_MC_TILES, AMX_NC; unset: sgemm.c's blocking).
ck_sgemm_amx_blocking(environment("AMX_KC", 0), environment("AMX_MC_TILES", 0), environment("AMX_NC", 0))
switch args.count > 1 ? args[1] : "" {
case "sgemm":
    sgemm(Int(args[2]) ?? 1024, threads: args.count > 3 ? Int(args[3]) ?? 2 : 2)
case "st-read":
    try stRead(args[2])
case "st-write":
    // Writes a safetensors file of `MB` megabytes of bf16 tensors (64 tensors) for the read benchmark.
    let mb = Int(args[3]) ?? 512
    let per = mb * 1_000_000 / 64 / 2
    var r = SeededRandom(seed: 2)
    let vals = (0..<per).map { _ in r.normal() }
    let t = Tensor(shape: [per], floats: vals, dtype: .bf16)
    try SafetensorsWriter.write((0..<64).map { ("t\($0)", t) }, metadata: ["format": "pt"], to: args[2])
case "prefill":
    try prefill(args[2], tokens: Int(args[3]) ?? 1024, decode: args.count > 4 ? Int(args[4]) ?? 0 : 0)
case "gemm-train":
    gemmTrain(tokens: args.count > 2 ? Int(args[2]) ?? 1024 : 1024)
case "amx-tile":
    amxTile()
case "gemm-bf16":
    gemmBF16(m: Int(args[2])!, n: Int(args[3])!, k: Int(args[4])!)
case "matvec":
    matvec(rows: Int(args[2]) ?? 1536, k: Int(args[3]) ?? 1536, reps: args.count > 4 ? Int(args[4]) ?? 30 : 30)
case "gemm":
    gemm(m: Int(args[2])!, n: Int(args[3])!, k: Int(args[4])!, transB: args.count > 5 && args[5] == "t")
case "attention":
    // attention N [fused|blas|amx] [keyBlock]
    attention(Int(args[2]) ?? 16384, mode: args.count > 3 ? args[3] : "fused",
              keyBlock: args.count > 4 ? Int(args[4]) : nil)
case "attention-decode":
    // attention-decode N [portable]: one token's attention over N cached positions, 30 layers, on the active kernel
    // path (LONGCTX_KERNELS=avx2 picks a lower one) or the portable C
    attentionDecode(Int(args[2]) ?? 16384, kernel: args.count > 3 && args[3] == "portable" ? .portable : .active)
case "attention-backward":
    let kernels: [String: KernelPath] = ["blas": .portable, "portable": .portable, "avx2": .avx2, "avx512": .avx512]
    let best = AttentionBackward.kernel(headDim: 64)
    attentionBackward(Int(args[2]) ?? 4096, kernel: args.count > 3 ? kernels[args[3]] ?? best : best)
case "lora-pair":
    // A synthetic fine-tune of BASE (known low-rank update per Linear + noise) for the LoRA benchmark:
    // lora-pair BASE OUT [rank] [noise]
    var ft = SyntheticFineTune()
    if args.count > 4 { ft.defaultRank = Int(args[4]) ?? 8 }
    if args.count > 5 { ft.noise = Float(args[5]) ?? 1e-4 }
    try ft.write(base: args[2], out: args[3])
case "lora-error":
    // Relative Frobenius error of any PEFT adapter against the fine-tune's deltas: lora-error BASE TUNED ADAPTER
    let e = try LoRAEvaluation.error(base: args[2], tuned: args[3], adapter: args[4])
    print("{\"global_relative_error\": \(e.globalRelativeError), \"mean_relative_error\": \(e.meanRelativeError), \"modules\": \(e.modules.count)}")
case "train":
    // train N [DIR] [--recompute] [--steps S]
    var rest = Array(args.dropFirst(3)), recompute = false, steps = 1
    if let i = rest.firstIndex(of: "--recompute") { recompute = true; rest.remove(at: i) }
    if let i = rest.firstIndex(of: "--steps"), i + 1 < rest.count { steps = Int(rest[i + 1]) ?? 1; rest.removeSubrange(i...(i + 1)) }
    try train(Int(args[2]) ?? 1024, directory: rest.first ?? "smollm2-135m-instruct", recompute: recompute, steps: steps)
case "ring-step":
    // ring-step N DIR [layout] [strategy] [--steps S]
    var rest = Array(args.dropFirst(4)), steps = 1
    if let i = rest.firstIndex(of: "--steps"), i + 1 < rest.count { steps = Int(rest[i + 1]) ?? 1; rest.removeSubrange(i...(i + 1)) }
    guard args.count > 3, let n = Int(args[2]) else { fatalError("usage: longctx-bench ring-step N DIR [layout] [strategy]") }
    guard let layout = SequenceLayoutKind(rawValue: rest.first ?? "zigzag"),
          let strategy = RingStrategy(rawValue: rest.dropFirst().first ?? "pass-kv") else {
        fatalError("ring-step: layout is contiguous|zigzag, strategy pass-kv|all-gather")
    }
    try ringStep(n, directory: args[3], layout: layout, strategy: strategy, steps: steps)
case "estimate":
    // estimate DIR STAGES RING [WORKERS]: what `longctx train --estimate --json` prints with measured rates (the
    // same library call), for scripts/bench-ring where only the release longctx-bench is built.
    guard args.count > 4, let ring = Int(args[4]) else { fatalError("usage: longctx-bench estimate DIR STAGES RING [WORKERS]") }
    let workers = args.count > 5 ? Int(args[5]) ?? 1 : 1
    let (rows, capacity) = try TrainingEstimate.plan(modelDirectory: args[2], stagesPath: args[3], ring: ring) {
        RankCapacity.measure(configuration: $0, workers: workers, keyLengths: $1)
    }
    struct Plan: Encodable { let capacity: RankCapacity; let stages: [StageEstimate] }
    print(String(decoding: try JSONEncoder().encode(Plan(capacity: capacity, stages: rows)), as: UTF8.self))
case "ruler-prep":
    try rulerPrep(tokenizerDir: args[2], length: Int(args[3]) ?? 131072, tasks: args[4].split(separator: ",").map(String.init),
                  samples: args.count > 5 ? Int(args[5]) ?? 2 : 2, config: args.count > 6 ? args[6] : "eval/ruler.json")
default:
    FileHandle.standardError.write(Data("usage: longctx-bench sgemm N [threads] | st-read FILE | st-write FILE MB | prefill DIR N [decode] | gemm M N K [t] | gemm-bf16 M N K | attention N [fused|blas] [keyBlock] | attention-decode N [portable] | attention-backward N [blas|avx2|avx512] | lora-pair BASE OUT [rank] [noise] | lora-error BASE TUNED ADAPTER | train N [DIR] [--recompute] [--steps S] | ruler-prep TOKENIZER_DIR LENGTH TASKS [samples] [config]\n".utf8))
    exit(2)
}
