import Foundation
import RoPE

/// Any JSON value from the fixture (numbers kept as Double, strings as String).
enum FixtureValue: Decodable, Sendable {
    case number(Double), string(String), bool(Bool), array([FixtureValue]), object([String: FixtureValue]), null

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([FixtureValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: FixtureValue].self)) }
    }

    /// Numbers are stored either as JSON numbers or as '%.17g' strings; both parse to the same Double.
    var double: Double? {
        switch self {
        case .number(let value): return value
        case .string(let text): return Double(text)
        default: return nil
        }
    }
    var int: Int? { double.flatMap { Int(exactly: $0) } }
    var string: String? { if case .string(let s) = self { return s } else { return nil } }
    var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    subscript(key: String) -> FixtureValue? {
        if case .object(let dictionary) = self { return dictionary[key] }
        return nil
    }
    var array: [FixtureValue]? { if case .array(let a) = self { return a } else { return nil } }
}

/// One golden case from `rope-inv-freq.json` (transformers 5.23.0 outputs).
struct GoldenCase: Sendable, CustomStringConvertible {
    let name: String
    let spec: FixtureValue
    let intermediates: FixtureValue
    let result: FixtureValue
    let emulation: FixtureValue

    var description: String { name }

    /// Expected Float32 inverse frequencies, from the binary32 bit patterns.
    var expectedInvFreq: [Float] {
        (result["inv_freq_all_f32_hex"]?.array ?? []).map { value in
            var text = value.string ?? ""
            if text.hasPrefix("0x") { text.removeFirst(2) }
            return Float(bitPattern: UInt32(text, radix: 16)!)
        }
    }

    var expectedAttentionFactor: Double { result["attention_factor"]!.double! }

    /// The configuration transformers was given, rebuilt from `spec` (see the fixture's `meta.config_construction`):
    /// `LlamaConfig(head_dim, max_position_embeddings, rope_parameters={rope_type, rope_theta, ...})`;
    /// longrope cases are `Phi3Config` with a top-level `original_max_position_embeddings` and the synthetic
    /// lists `short_factor[i] = 1 + i/32`, `long_factor[i] = 1 + i`.
    var configuration: RopeConfiguration {
        let type = RopeType(configName: spec["rope_type"]!.string!)!
        let headDim = spec["head_dim"]!.int!
        var config = RopeConfiguration(ropeType: type, theta: spec["theta"]!.double!, headDim: headDim,
                                       maxPositionEmbeddings: spec["max_pos"]!.int!)
        let params = spec["params"]!
        config.factor = params["factor"]?.double
        config.originalMaxPositionEmbeddings = params["original_max_position_embeddings"]?.int
        config.attentionFactor = params["attention_factor"]?.double
        config.betaFast = params["beta_fast"]?.double
        config.betaSlow = params["beta_slow"]?.double
        config.mscale = params["mscale"]?.double
        config.mscaleAllDim = params["mscale_all_dim"]?.double
        config.truncate = params["truncate"]?.bool
        config.lowFreqFactor = params["low_freq_factor"]?.double
        config.highFreqFactor = params["high_freq_factor"]?.double
        if type == .longrope {
            let half = config.rotaryDim / 2
            config.shortFactor = (0..<half).map { 1 + Double($0) / 32 }
            config.longFactor = (0..<half).map { 1 + Double($0) }
            if let top = spec["top_orig"]?.int { config.originalMaxPositionEmbeddings = top }
        } else if [.yarn, .llama3].contains(type), config.originalMaxPositionEmbeddings == nil {
            config.originalMaxPositionEmbeddings = config.maxPositionEmbeddings
        }
        return config
    }

    var sequenceLength: Int? { spec["seq_len"]?.int }
}

enum GoldenFixture {
    /// All cases, sorted by name. Loaded from the test bundle (`Fixtures/rope-inv-freq.json`).
    static let cases: [GoldenCase] = {
        do {
            return try load()
        } catch {
            fatalError("cannot load golden fixture: \(error)")
        }
    }()

    static let meta: FixtureValue = {
        do {
            return try root()["meta"]!
        } catch {
            fatalError("cannot load golden fixture: \(error)")
        }
    }()

    static func root() throws -> FixtureValue {
        guard let url = Bundle.module.url(forResource: "rope-inv-freq", withExtension: "json",
                                          subdirectory: "Fixtures") else {
            throw CocoaError(.fileNoSuchFile)
        }
        return try JSONDecoder().decode(FixtureValue.self, from: Data(contentsOf: url))
    }

    static func load() throws -> [GoldenCase] {
        guard case .object(let cases) = try root()["cases"]! else { return [] }
        return cases.keys.sorted().map { name in
            let value = cases[name]!
            return GoldenCase(name: name, spec: value["spec"]!, intermediates: value["intermediates"]!,
                              result: value["transformers_5.23.0"]!,
                              emulation: value["numpy_float32_emulation_vs_torch"] ?? .null)
        }
    }
}

/// Distance in units in the last place between two finite Float32 values of the same sign.
func ulpDistance(_ a: Float, _ b: Float) -> Int {
    if a == b { return 0 }
    func ordered(_ x: Float) -> Int64 {
        let bits = Int64(x.bitPattern)
        return x.sign == .minus ? -(bits & 0x7fff_ffff) : bits
    }
    return Int(abs(ordered(a) - ordered(b)))
}
