import Basics
import Testing
@testable import Evaluation

/// The budget search against a brute-force scan (RULER tasks' tightness: RulerGoldenTests.fittingIsTightForEachTask).
struct FittingTests {
    /// Monotone, roughly linear token counts with per-unit noise, plateaus and jumps.
    static func counts(_ seed: UInt64, units: Int) -> [Int] {
        var r = SeededRandom(["fit", "\(seed)"])
        let base = r.int(0...500)
        var c = [base]
        let slope = [1, 3, 17, 40][Int(seed % 4)]
        for i in 1...units {
            let step = (i % 97 == 0 ? 0 : r.int(0...(2 * slope))) + (i % 211 == 0 ? 300 : 0)
            c.append(c[i - 1] + step)
        }
        return c
    }

    @Test(arguments: 0..<24)
    func largestMatchesBruteForce(_ seed: Int) {
        let c = Self.counts(UInt64(seed), units: 20_000)
        for budget in [c[0], c[0] + 1, c[100], c[5000] + 1, c[19_999], c[20_000] - 1] {
            let want = c.lastIndex { $0 <= budget }!
            var probes = 0
            let got = LengthFit.largest(lo: 0, budget: budget, hint: max(1, want / 3 + seed), cap: 20_000) { n in
                probes += 1
                return c[n]
            }
            #expect(got == want, "seed \(seed) budget \(budget)")
            #expect(probes <= 40, "seed \(seed): \(probes) probes")
        }
        #expect(LengthFit.largest(lo: 0, budget: c[0] - 1, hint: 10) { c[$0] } == nil)
    }
}
