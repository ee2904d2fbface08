import Basics
import Foundation
import Testing

@Suite("seeded random")
struct SeededRandomTests {
    @Test("SplitMix64 from seed 0 gives the published reference outputs")
    func splitMixReference() {
        // Reference values of SplitMix64 (Steele, Lea & Flood; Vigna's splitmix64.c) for seed 0.
        var rng = SeededRandom(seed: 0)
        #expect(rng.next() == 0xe220_a839_7b1d_cdaf)
        #expect(rng.next() == 0x6e78_9e6a_a1b9_65f4)
        #expect(rng.next() == 0x06c4_5d18_8009_454f)
    }

    @Test("the string-parts seed is FNV-1a (published vector for \"a\") with 0xff after each part")
    func fnvSeed() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (Fowler/Noll/Vo test vectors).
        let fnvA: UInt64 = 0xaf63_dc4c_8601_ec8c, prime: UInt64 = 0x0000_0100_0000_01b3
        #expect(SeededRandom(["a"]).state == (fnvA ^ 0xff) &* prime)
        #expect(SeededRandom([]).state == 0xcbf2_9ce4_8422_2325)
        #expect(SeededRandom(["ab"]).state != SeededRandom(["a", "b"]).state)
    }

    @Test("saved state (counter and Box–Muller spare) resumes the exact stream")
    func codableResume() throws {
        var rng = SeededRandom(seed: 42)
        _ = rng.normal()  // leaves a spare
        let saved = try JSONEncoder().encode(rng)
        var resumed = try JSONDecoder().decode(SeededRandom.self, from: saved)
        #expect(resumed == rng)
        for _ in 0..<5 {
            #expect(resumed.normal() == rng.normal())
            #expect(resumed.next() == rng.next())
        }
    }

    @Test("normal samples have mean 0 and variance 1 (200 000 draws, ±0.01 / ±0.02)")
    func normalMoments() {
        var rng = SeededRandom(seed: 7)
        let n = 200_000
        let xs = (0..<n).map { _ in Double(rng.normal()) }
        let mean = xs.reduce(0, +) / Double(n)
        let variance = xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n)
        #expect(abs(mean) < 0.01)
        #expect(abs(variance - 1) < 0.02)
    }

    @Test("integers stay in range and cover it; sample-k gives k distinct values; uuid is version 4")
    func helpers() {
        var rng = SeededRandom(seed: 3)
        var seen = Set<Int>()
        for _ in 0..<1000 {
            let v = rng.int(-2...2)
            #expect((-2...2).contains(v))
            seen.insert(v)
        }
        #expect(seen == Set(-2...2))
        let picked = rng.sample(10, 4)
        #expect(picked.count == 4 && Set(picked).count == 4 && picked.allSatisfy { (0..<10).contains($0) })
        let u = rng.uuid()
        #expect(u.count == 36 && Array(u)[14] == "4" && "89ab".contains(Array(u)[19]))
        let x = rng.uniform()
        #expect(x >= 0 && x < 1)
    }
}
