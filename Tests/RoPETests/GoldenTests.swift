import Foundation
import Testing
import RoPE

@Suite("transformers 5.23 golden vectors")
struct GoldenTests {
    @Test("fixture holds the expected cases")
    func fixtureIsComplete() {
        #expect(GoldenFixture.cases.count >= 36)
        let types = Set(GoldenFixture.cases.map { $0.spec["rope_type"]!.string! })
        #expect(types == ["default", "linear", "dynamic", "yarn", "llama3", "longrope"])
    }

    @Test("inverse frequencies within 1 ULP, attention factor to 1e-15", arguments: GoldenFixture.cases)
    func inverseFrequencies(_ golden: GoldenCase) throws {
        let config = golden.configuration
        let result = try config.frequencies(sequenceLength: golden.sequenceLength)
        let expected = golden.expectedInvFreq
        #expect(result.rotaryDim == golden.intermediates["rotary_dim"]!.int!)
        #expect(result.invFreq.count == expected.count)
        #expect(expected.count == golden.result["dim"]!.int!)
        let distances = zip(result.invFreq, expected).map { ulpDistance($0, $1) }
        let maxULP = distances.max() ?? 0
        #expect(maxULP <= 1, "max ULP \(maxULP) at pairs \(distances.indices.filter { distances[$0] > 1 })")
        // Cases where the NumPy emulation of the same recipe was bit-exact must be bit-exact here too.
        if golden.emulation["max_ulp"]?.int == 0 {
            #expect(maxULP == 0, "pairs off by 1 ULP: \(distances.indices.filter { distances[$0] > 0 })")
        }
        let expectedFactor = golden.expectedAttentionFactor
        #expect(abs(result.attentionFactor - expectedFactor) <= 1e-15 * abs(expectedFactor))
    }

    @Test("intermediates: YaRN ramp, dynamic base, llama3 bands, longrope list", arguments: GoldenFixture.cases)
    func intermediates(_ golden: GoldenCase) throws {
        let result = try golden.configuration.frequencies(sequenceLength: golden.sequenceLength)
        let inter = golden.intermediates
        if let low = inter["ramp_low"]?.double, let high = inter["ramp_high"]?.double {
            let ramp = try #require(result.yarnRamp)
            #expect(ramp.low == low)
            #expect(ramp.high == high)
            #expect(ramp.correctionDimFast == inter["correction_dim_beta_fast_raw"]!.double!)
            #expect(ramp.correctionDimSlow == inter["correction_dim_beta_slow_raw"]!.double!)
        }
        if let base = inter["adjusted_base_float64"]?.double {
            #expect(result.effectiveTheta == base)
            #expect(result.sequenceLength == inter["effective_seq_len"]!.int!)
        }
        if let low = inter["low_freq_wavelen"]?.double {
            #expect(result.llama3Bands?.lowFreqWavelength == low)
            #expect(result.llama3Bands?.highFreqWavelength == inter["high_freq_wavelen"]!.double!)
        }
        if let list = inter["list_used"]?.string {
            #expect(result.longropeList.map { "\($0.rawValue)_factor" } == list)
        }
        if let multiplier = inter["deepseek_softmax_scale_multiplier_mscale_all_dim_squared"]?.double {
            #expect(abs(golden.configuration.deepseekSoftmaxScaleMultiplier - multiplier) <= 1e-15 * multiplier)
        }
    }

    @Test("sum of inverse frequencies matches the fixture's fsum", arguments: GoldenFixture.cases)
    func sums(_ golden: GoldenCase) throws {
        let result = try golden.configuration.frequencies(sequenceLength: golden.sequenceLength)
        let expected = golden.result["inv_freq_sum_float64"]!.double!
        let sum = result.invFreq.reduce(0.0) { $0 + Double($1) }
        #expect(abs(sum - expected) <= 1e-6 * expected)
    }
}

extension GoldenTests {
    @Test("bit-exact in every case where the float32 recipe is exact; report the count")
    func bitExactSummary() throws {
        var exact: [String] = [], offByOne: [String] = []
        for golden in GoldenFixture.cases {
            let result = try golden.configuration.frequencies(sequenceLength: golden.sequenceLength)
            if result.invFreq.map(\.bitPattern) == golden.expectedInvFreq.map(\.bitPattern) {
                exact.append(golden.name)
            } else {
                offByOne.append(golden.name)
            }
        }
        let recipeExact = GoldenFixture.cases.filter { $0.emulation["max_ulp"]?.int == 0 }.count
        print("golden: \(exact.count)/\(GoldenFixture.cases.count) bit-exact; 1 ULP: \(offByOne)")
        #expect(exact.count >= recipeExact)
    }
}
