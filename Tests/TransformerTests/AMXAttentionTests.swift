import Basics
import CKernels
import Foundation
import Testing
@testable import Transformer

/// The bf16-mode prefill attention on AMX tiles (`ck_attention_amx_tile` through
/// ``BlockwiseAttention/amxAttend(shape:query:queryStride:count:firstPosition:kv:causal:documentStart:output:outputStride:logSumExp:workers:queryBlock:)``)
/// against a Double reference of softmax(Q̄K̄ᵀ·scale + mask)·V̄ computed from the same bf16-rounded Q̄, K̄, V̄.
///
/// Bound per output element (query i, head h, channel d), with P the exact probabilities:
///   |o − ref| ≤ (2⁻⁸ + 2·ε_S + n·2⁻²⁴ + 10⁻⁶) · Σ_j P_j·|v̄_jd|
/// - 2⁻⁸: the kernel rounds each probability to bf16 before P·V (8 significant bits, round to nearest even: relative
///   error ≤ 2⁻⁸) but normalises by the sum of the unrounded f32 probabilities, so the output moves by at most
///   2⁻⁸·Σ P_j|v̄_jd|. This term dominates; the observed error is typically a tenth of it (the roundings do not align).
/// - ε_S = hd·2⁻²⁴·max_j scale·Σ_d|q̄_d·k̄_jd|: f32 summation of the exact bf16 products in a score, which scales each
///   weight by e^{±ε_S}, so the normalised weights move by at most 2·ε_S (relative).
/// - n·2⁻²⁴: f32 accumulation of P·V over n keys; 10⁻⁶ for the exp2 polynomial (2·10⁻⁷) and the f32 rescalings.
/// The log-sum-exp (natural log) is held to ε_S + n·2⁻²⁴ + 10⁻⁶·(1 + |lse|) (no bf16 rounding enters it).
/// Cases: lengths off every tile multiple (16 rows, 32/64 keys), GQA groups 1–4, causal, sliding window, document
/// starts, a prefix of cached keys, keys starting after some queries (rows that see nothing: output 0, lse −∞),
/// non-causal, hd 32/64/128, one and two workers.
@Suite struct AMXAttentionTests {
    struct Case: CustomStringConvertible, Sendable {
        var heads: Int, kvHeads: Int, headDim: Int, queries: Int, past: Int
        var window: Int? = nil, causal = true, keyStart = 0, documentLength = 0, qb = 64
        var description: String {
            "h\(heads)/kv\(kvHeads) d\(headDim) q\(queries) past\(past) w\(window.map(String.init) ?? "-") causal \(causal) keyStart \(keyStart) docs \(documentLength) qb \(qb)"
        }
    }

    static let cases: [Case] = [
        Case(heads: 4, kvHeads: 2, headDim: 64, queries: 37, past: 0),
        Case(heads: 9, kvHeads: 3, headDim: 64, queries: 201, past: 0, qb: 64),
        Case(heads: 9, kvHeads: 3, headDim: 64, queries: 100, past: 29, window: 50, qb: 17),
        Case(heads: 2, kvHeads: 1, headDim: 32, queries: 21, past: 279, causal: false),
        Case(heads: 6, kvHeads: 2, headDim: 128, queries: 70, past: 45, window: 61, documentLength: 40, qb: 33),
        Case(heads: 3, kvHeads: 3, headDim: 64, queries: 30, past: 0, keyStart: 10),
        Case(heads: 8, kvHeads: 2, headDim: 64, queries: 129, past: 600, window: 97, qb: 64),
    ]

    static var amx: Bool { ck_attention_amx_available(64) != 0 }

    @Test(.enabled(if: amx, "no usable AMX-BF16 (the CPU lacks it or Linux refused the tile state): kernel not run"),
          arguments: cases, [1, 2])
    func matchesDoubleReferenceOfBF16Inputs(_ c: Case, workers: Int) {
        let shape = AttentionShape(heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, slidingWindow: c.window)
        let hd = c.headDim, width = c.heads * hd, total = c.past + c.queries
        let keys = total - c.keyStart
        var rng = SeededRandom(seed: UInt64(31 + c.queries + workers))
        let q = bf16((0..<(c.queries * width)).map { _ in rng.normal() * 2 })
        let k = bf16((0..<(c.kvHeads * keys * hd)).map { _ in rng.normal() * 2 })
        let v = bf16((0..<(c.kvHeads * keys * hd)).map { _ in rng.normal() })
        let docs: [Int32]? = c.documentLength > 0
            ? (0..<c.queries).map { Int32((c.past + $0) / c.documentLength * c.documentLength) } : nil
        var out = [Float](repeating: .nan, count: c.queries * width)
        var lse = [Float](repeating: .nan, count: c.queries * c.heads)
        k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
            let kv = KeyValueView(keys: kp.baseAddress!, values: vp.baseAddress!, stride: keys, count: keys,
                                  firstPosition: c.keyStart)
            let call = { (doc: UnsafePointer<Int32>?) in
                BlockwiseAttention.amxAttend(shape: shape, query: q, queryStride: width, count: c.queries,
                                             firstPosition: c.past, kv: kv, causal: c.causal, documentStart: doc,
                                             output: &out, outputStride: width, logSumExp: &lse, workers: workers,
                                             queryBlock: c.qb)
            }
            if let docs { docs.withUnsafeBufferPointer { call($0.baseAddress!) } } else { call(nil) }
        }}
        var worst = 0.0
        for i in 0..<c.queries {
            let qpos = c.past + i
            for h in 0..<c.heads {
                let kvh = h / shape.groupSize
                // Visible keys, exact scores, and the largest Σ|q̄·k̄| among them.
                var s: [(j: Int, score: Double)] = [], maxAbs = 0.0
                for j in 0..<keys {
                    let kpos = c.keyStart + j
                    if c.causal && kpos > qpos { continue }
                    if let w = c.window, qpos - kpos >= w { continue }
                    if let docs, kpos < Int(docs[i]) { continue }
                    var dot = 0.0, abs = 0.0
                    for d in 0..<hd {
                        let t = Double(q[i * width + h * hd + d]) * Double(k[(kvh * keys + j) * hd + d])
                        dot += t; abs += Swift.abs(t)
                    }
                    s.append((j, dot * Double(shape.scale)))
                    maxAbs = max(maxAbs, abs * Double(shape.scale))
                }
                let o = Array(out[(i * width + h * hd)..<(i * width + h * hd + hd)]), l = Double(lse[i * c.heads + h])
                if s.isEmpty {
                    #expect(o.allSatisfy { $0 == 0 } && l == -.infinity, "\(c) query \(i) head \(h): sees no key")
                    continue
                }
                let mx = s.map(\.score).max()!
                let e = s.map { Foundation.exp($0.score - mx) }, sum = e.reduce(0, +)
                let epsS = Double(hd) * 0x1p-24 * maxAbs, n = Double(s.count)
                let refLSE = mx + Foundation.log(sum)
                #expect(Swift.abs(l - refLSE) <= epsS + n * 0x1p-24 + 1e-6 * (1 + Swift.abs(refLSE)),
                        "\(c) workers \(workers) query \(i) head \(h): lse \(l) vs \(refLSE)")
                for d in 0..<hd {
                    var ref = 0.0, weight = 0.0
                    for (t, (j, _)) in s.enumerated() {
                        let vv = Double(v[(kvh * keys + j) * hd + d]), p = e[t] / sum
                        ref += p * vv; weight += p * Swift.abs(vv)
                    }
                    let err = Swift.abs(Double(o[d]) - ref)
                    let bound = (0x1p-8 + 2 * epsS + n * 0x1p-24 + 1e-6) * weight
                    #expect(err <= bound, "\(c) workers \(workers) query \(i) head \(h) ch \(d): \(o[d]) vs \(ref)")
                    worst = max(worst, err / bound)
                }
            }
        }
        print("AMX attention \(c) workers \(workers): worst error / bound \(worst)")
    }

    /// `attend(compute: .bf16)` takes the AMX kernel for ≥ 16 queries (bit-for-bit its output) and keeps the f32
    /// path for `.f32` (bit-for-bit the default call).
    @Test(.enabled(if: amx && ComputePrecision.amxAttention(headDim: 64),
                   "bf16 attention on AMX not enabled here (no AMX, LONGCTX_AMX=0, or not the AVX-512 path)"))
    func attendDispatchesByPrecision() {
        let shape = AttentionShape(heads: 9, kvHeads: 3, headDim: 64)
        let n = 50, width = 9 * 64
        var rng = SeededRandom(seed: 7)
        let q = (0..<(n * width)).map { _ in rng.normal() }
        let k = (0..<(3 * n * 64)).map { _ in rng.normal() }, v = (0..<(3 * n * 64)).map { _ in rng.normal() }
        var viaAttend = [Float](repeating: 0, count: n * width), direct = viaAttend, f32 = viaAttend, plain = viaAttend
        k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
            let kv = KeyValueView(keys: kp.baseAddress!, values: vp.baseAddress!, stride: n, count: n)
            BlockwiseAttention.attend(shape: shape, query: q, queryStride: width, count: n, firstPosition: 0, kv: kv,
                                      output: &viaAttend, outputStride: width, compute: .bf16)
            BlockwiseAttention.amxAttend(shape: shape, query: q, queryStride: width, count: n, firstPosition: 0,
                                         kv: kv, output: &direct, outputStride: width)
            BlockwiseAttention.attend(shape: shape, query: q, queryStride: width, count: n, firstPosition: 0, kv: kv,
                                      output: &f32, outputStride: width, compute: .f32)
            BlockwiseAttention.attend(shape: shape, query: q, queryStride: width, count: n, firstPosition: 0, kv: kv,
                                      output: &plain, outputStride: width)
        }}
        #expect(viaAttend == direct)
        #expect(f32 == plain)
        #expect(f32 != direct)
    }

    /// Rounds to nearest-even bf16 and widens back (exact), so reference and kernel see the same inputs.
    private func bf16(_ x: [Float]) -> [Float] {
        var h = [UInt16](repeating: 0, count: x.count)
        ck_f32_to_bf16(x, &h, x.count)
        return h.map { Float(bitPattern: UInt32($0) << 16) }
    }
}
