import Foundation
import Testing
import RoPE

@Suite("runtime and cos/sin")
struct RuntimeTests {
    @Test("dynamic NTK: grow beyond the cache, reset below the original length (transformers' rule)")
    func dynamicGrowReset() throws {
        let config = RopeConfiguration(ropeType: .dynamic, theta: 10000, headDim: 128, maxPositionEmbeddings: 4096,
                                       factor: 4)
        var runtime = try RopeRuntime(config)
        let original = try config.unscaled.frequencies().invFreq
        #expect(runtime.current.invFreq == original)
        #expect(try runtime.update(maxPositionId: 100) == false)
        #expect(try runtime.update(maxPositionId: 4095) == false)  // seq_len 4096 is not > 4096

        #expect(try runtime.update(maxPositionId: 16383))  // grow to 16384
        #expect(runtime.maxSequenceLengthCached == 16384)
        #expect(runtime.current.invFreq == (try config.frequencies(sequenceLength: 16384)).invFreq)
        #expect(runtime.current.effectiveTheta == 10000 * pow(13.0, 128.0 / 126.0))

        #expect(try runtime.update(maxPositionId: 8000) == false)  // shorter but above original: keep
        #expect(runtime.maxSequenceLengthCached == 16384)

        #expect(try runtime.update(maxPositionId: 99))  // below original: reset
        #expect(runtime.current.invFreq == original)
        #expect(runtime.maxSequenceLengthCached == 4096)

        // seq_len == original does not reset (strict `<`).
        try runtime.update(maxPositionId: 5000)
        #expect(try runtime.update(maxPositionId: 4095) == false)
    }

    @Test("longrope: short list up to the original length, long list beyond")
    func longropeSwitch() throws {
        let short = (0..<64).map { 1 + Double($0) / 32 }, long = (0..<64).map { 1 + Double($0) }
        let config = RopeConfiguration(ropeType: .longrope, theta: 10000, headDim: 128, maxPositionEmbeddings: 131072,
                                       originalMaxPositionEmbeddings: 4096, shortFactor: short, longFactor: long)
        var runtime = try RopeRuntime(config)
        #expect(runtime.current.longropeList == .short)
        #expect(try runtime.update(maxPositionId: 4095) == false)
        #expect(try runtime.update(maxPositionId: 4096))
        #expect(runtime.current.longropeList == .long)
        #expect(try runtime.update(maxPositionId: 10))
        #expect(runtime.current.longropeList == .short)
    }

    @Test("cos/sin layouts and attention factor on both")
    func tables() throws {
        let config = RopeConfiguration(ropeType: .yarn, theta: 10000, headDim: 8, maxPositionEmbeddings: 32768,
                                       factor: 8, originalMaxPositionEmbeddings: 4096)
        let frequencies = try config.frequencies()
        let scale = Float(frequencies.attentionFactor)
        let half = frequencies.table(positions: [0, 3], layout: .halfSplit)
        let inter = frequencies.table(positions: [0, 3], layout: .interleaved)
        #expect(half.cos.count == 16 && half.sin.count == 16)
        #expect(half.cosRow(0).allSatisfy { $0 == scale })
        #expect(half.sinRow(0).allSatisfy { $0 == 0 })
        for j in 0..<4 {
            let angle = Float(3) * frequencies.invFreq[j]
            let c = cos(angle) * scale, s = sin(angle) * scale
            #expect(half.cos[8 + j] == c && half.cos[8 + j + 4] == c)
            #expect(half.sin[8 + j] == s && half.sin[8 + j + 4] == s)
            #expect(inter.cos[8 + 2 * j] == c && inter.cos[8 + 2 * j + 1] == c)
            #expect(inter.sin[8 + 2 * j] == s && inter.sin[8 + 2 * j + 1] == s)
        }
        #expect(frequencies.table(count: 5).positions == [0, 1, 2, 3, 4])
    }

    @Test("rotation preserves norms and depends only on relative position", arguments: RopePairLayout.allCases)
    func rotation(_ layout: RopePairLayout) throws {
        let config = RopeConfiguration(theta: 10000, headDim: 64, partialRotaryFactor: 0.5)
        let frequencies = try config.frequencies()
        #expect(frequencies.rotaryDim == 32)
        let table = frequencies.table(positions: [5, 12, 105, 112], layout: layout)
        let q = (0..<64).map { Float(sin(Double($0) * 0.7)) }
        let k = (0..<64).map { Float(cos(Double($0) * 1.3)) }
        func rotated(_ v: [Float], _ p: Int) -> [Float] { var w = v; table.rotate(&w, at: p); return w }
        func dot(_ a: [Float], _ b: [Float]) -> Double { zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) } }
        let q5 = rotated(q, 0)
        #expect(abs(dot(q5, q5) - dot(q, q)) < 1e-4)
        #expect(Array(q5[32...]) == Array(q[32...]))  // pass-through channels
        let near = dot(rotated(q, 1), rotated(k, 0))  // positions 12 and 5
        let far = dot(rotated(q, 3), rotated(k, 2))   // positions 112 and 105
        #expect(abs(near - far) < 1e-3)
    }
}
