import Basics
import Foundation
import ModelIO
import TensorCore

/// How a module's LoRA delta is laid out, as PEFT stores it.
public enum LoRAKind: String, Sendable {
    /// `nn.Linear` weight `[out, in]`: `ΔW = B·A`, `B` `[out, r]` (`lora_B.weight`), `A` `[r, in]` (`lora_A.weight`).
    case linear
    /// `nn.Embedding` weight `[V, D]`: `ΔW = (B·A)ᵀ`, `B` `[D, r]` (`lora_embedding_B`), `A` `[r, V]` (`lora_embedding_A`).
    case embedding
}

/// How per-module ranks are encoded in `adapter_config.json`.
public enum ScalingMode: String, Sendable, CaseIterable {
    /// One `lora_alpha = r = R` (largest rank), lower ranks listed in `rank_pattern` only, and the
    /// compensation `√(rₘ/R)` baked into both factors: PEFT (`alpha/rₘ`), llama.cpp (`alpha/rank` per
    /// tensor) and vLLM all apply exactly `B·A`.
    case portable
    /// mergekit's encoding: `rank_pattern = alpha_pattern = rₘ`, factors unscaled (PEFT applies `B·A`;
    /// llama.cpp mis-scales lower-rank modules by `R/rₘ`).
    case mergekit
}

/// The fields of a PEFT `adapter_config.json` that decide what a LoRA adapter does (peft 0.21 `LoraConfig`).
public struct AdapterConfig: Sendable {
    public var r = 8
    public var loraAlpha = 8.0
    public var rankPattern: [(String, Int)] = []
    public var alphaPattern: [(String, Double)] = []
    public var useRSLoRA = false
    public var useDoRA = false
    public var fanInFanOut = false
    public var loraBias = false
    public var targetModules: [String] = []
    public var modulesToSave: [String]? = nil
    public var baseModel: String? = nil
    public var json = JSONObject()

    public init() {}

    /// Parses `adapter_config.json` (`path` names it in errors). Only LoRA is accepted; DoRA,
    /// `fan_in_fan_out` and LoRA biases are refused as unsupported rather than silently mis-merged.
    public init(json obj: JSONObject, path: String) throws {
        json = obj
        let peftType = obj["peft_type"]?.stringValue ?? "LORA"
        guard peftType == "LORA" else { throw ModelIOError(path, "peft_type is '\(peftType)'; only LORA adapters are supported") }
        if let v = obj["r"], !v.isNull {
            guard let x = v.intValue, x > 0 else { throw ModelIOError(path, "'r' must be a positive integer") }
            r = x
        }
        loraAlpha = Double(r)
        if let v = obj["lora_alpha"], !v.isNull {
            guard let x = v.doubleValue, x.isFinite else { throw ModelIOError(path, "'lora_alpha' must be a finite number") }
            loraAlpha = x
        } else { loraAlpha = 8 }
        for (k, v) in obj["rank_pattern"]?.objectValue?.entries ?? [] {
            guard let x = v.intValue, x > 0 else { throw ModelIOError(path, "rank_pattern['\(k)'] must be a positive integer") }
            rankPattern.append((k, x))
        }
        for (k, v) in obj["alpha_pattern"]?.objectValue?.entries ?? [] {
            guard let x = v.doubleValue, x.isFinite else { throw ModelIOError(path, "alpha_pattern['\(k)'] must be a finite number") }
            alphaPattern.append((k, x))
        }
        useRSLoRA = obj["use_rslora"]?.boolValue ?? false
        useDoRA = obj["use_dora"]?.boolValue ?? false
        fanInFanOut = obj["fan_in_fan_out"]?.boolValue ?? false
        loraBias = obj["lora_bias"]?.boolValue ?? false
        if useDoRA { throw ModelIOError(path, "use_dora is true; DoRA adapters are not supported") }
        if fanInFanOut { throw ModelIOError(path, "fan_in_fan_out is true (GPT-2 Conv1D layout); only nn.Linear layouts are supported") }
        if let t = obj["target_modules"] {
            if let s = t.stringValue { targetModules = [s] }
            else { targetModules = (t.arrayValue ?? []).compactMap(\.stringValue) }
        }
        if let m = obj["modules_to_save"], !m.isNull { modulesToSave = (m.arrayValue ?? []).compactMap(\.stringValue) }
        baseModel = obj["base_model_name_or_path"]?.stringValue
    }

    /// PEFT's `get_pattern_key`: the first key `k` (in file order) such that `(.*\.)?(k)$` matches the
    /// whole module name (keys are regular expressions).
    static func patternMatch<T>(_ pattern: [(String, T)], module: String) -> T? {
        for (k, v) in pattern {
            if let re = try? NSRegularExpression(pattern: "^(.*\\.)?(\(k))$"),
               re.firstMatch(in: module, range: NSRange(module.startIndex..., in: module)) != nil { return v }
        }
        return nil
    }

    /// The rank PEFT gives `module`: `rank_pattern` match or `r`.
    public func rank(of module: String) -> Int { Self.patternMatch(rankPattern, module: module) ?? r }

    /// PEFT's scaling for `module`: `alpha/r` (or `alpha/√r` with rsLoRA), with both taken from the patterns.
    public func scaling(of module: String) -> Double {
        let rm = Double(rank(of: module))
        let alpha = Self.patternMatch(alphaPattern, module: module) ?? loraAlpha
        return useRSLoRA ? alpha / rm.squareRoot() : alpha / rm
    }
}

/// Adapter tensor names as PEFT saves them (`base_model.model.` + module name + suffix).
public enum AdapterKeys {
    public static let prefix = "base_model.model."
    public static func a(_ module: String, _ kind: LoRAKind) -> String {
        prefix + module + (kind == .linear ? ".lora_A.weight" : ".lora_embedding_A")
    }
    public static func b(_ module: String, _ kind: LoRAKind) -> String {
        prefix + module + (kind == .linear ? ".lora_B.weight" : ".lora_embedding_B")
    }
    /// A full tensor saved for `modules_to_save` (`base_model.model.` + the model's tensor name).
    public static func saved(_ tensor: String) -> String { prefix + tensor }
}

/// One module's LoRA pair inside an adapter file.
public struct AdapterLoRA: Sendable {
    public let module: String
    public let kind: LoRAKind
    public let aKey: String, bKey: String
    public let rank: Int
    /// Rows and columns of `B·A` (`[out, in]` for Linear; `[D, V]` for Embedding).
    public let rows: Int, cols: Int
    public let scaling: Double
}

/// A PEFT LoRA adapter directory (`adapter_config.json` + `adapter_model.safetensors`), validated.
public final class Adapter: @unchecked Sendable {
    public static let configFile = "adapter_config.json"
    public static let weightsFile = "adapter_model.safetensors"

    public let path: String
    public let config: AdapterConfig
    public let file: SafetensorsFile
    /// LoRA modules by module name, in file order.
    public let modules: [AdapterLoRA]
    /// Full tensors (`modules_to_save`): model tensor name → adapter key.
    public let saved: [(tensor: String, key: String)]

    public init(path: String) throws {
        self.path = path
        let cfgPath = (path as NSString).appendingPathComponent(Self.configFile)
        guard FileOps.exists(cfgPath) else {
            throw ModelIOError(path, FileOps.exists(path) ? "no \(Self.configFile): not a PEFT adapter directory" : "no such adapter directory")
        }
        let (obj, _) = try FileOps.readJSONObject(cfgPath)
        config = try AdapterConfig(json: obj, path: cfgPath)
        let wPath = (path as NSString).appendingPathComponent(Self.weightsFile)
        guard FileOps.exists(wPath) else {
            let bin = (path as NSString).appendingPathComponent("adapter_model.bin")
            throw ModelIOError(wPath, FileOps.exists(bin) ? "missing; only adapter_model.bin (a pickle) is present, which LongContext never loads" : "missing")
        }
        file = try SafetensorsFile(path: wPath)
        var aKeys = [String: (String, LoRAKind)](), bKeys = [String: String]()
        var order = [String]()
        var saved = [(String, String)]()
        for name in file.names {
            guard name.hasPrefix(AdapterKeys.prefix) else {
                throw ModelIOError(wPath, "tensor '\(name)' does not start with '\(AdapterKeys.prefix)'")
            }
            let rest = String(name.dropFirst(AdapterKeys.prefix.count))
            func module(_ suffix: String) -> String? { rest.hasSuffix(suffix) ? String(rest.dropLast(suffix.count)) : nil }
            if let m = module(".lora_A.weight") { aKeys[m] = (name, .linear); order.append(m) }
            else if let m = module(".lora_embedding_A") { aKeys[m] = (name, .embedding); order.append(m) }
            else if let m = module(".lora_B.weight") ?? module(".lora_embedding_B") { bKeys[m] = name }
            else if module(".lora_B.bias") != nil {
                if config.loraBias { throw ModelIOError(wPath, "tensor '\(name)': LoRA biases (lora_bias) are not supported") }
                continue   // PEFT ignores it without lora_bias (mergekit writes bias deltas there)
            }
            else if rest.hasSuffix(".base_layer.weight") { continue }  // PEFT's save_embedding_layers copy of the base
            else if rest.contains(".lora_") { throw ModelIOError(wPath, "tensor '\(name)': unknown LoRA tensor kind") }
            else { saved.append((rest, name)) }
        }
        var modules = [AdapterLoRA]()
        for m in order {
            let (aKey, kind) = aKeys[m]!
            guard let bKey = bKeys.removeValue(forKey: m) else { throw ModelIOError(wPath, "module '\(m)' has \(aKey) but no matching B tensor") }
            let ai = file.info(aKey)!, bi = file.info(bKey)!
            guard ai.shape.count == 2, bi.shape.count == 2, ai.shape[0] == bi.shape[1] else {
                throw ModelIOError(wPath, "module '\(m)': A \(ai.shape) and B \(bi.shape) do not form a product B·A")
            }
            let rank = ai.shape[0]
            let cfgRank = config.rank(of: m)
            guard cfgRank == rank else {
                throw ModelIOError(wPath, "module '\(m)': factors have rank \(rank) but adapter_config.json gives r=\(cfgRank) (r / rank_pattern)")
            }
            guard ai.dtype.isFloatingPoint, bi.dtype.isFloatingPoint else { throw ModelIOError(wPath, "module '\(m)': factors are not floating point") }
            modules.append(AdapterLoRA(module: m, kind: kind, aKey: aKey, bKey: bKey, rank: rank, rows: bi.shape[0], cols: ai.shape[1],
                                       scaling: config.scaling(of: m)))
        }
        if let (m, k) = bKeys.first { throw ModelIOError(wPath, "module '\(m)' has \(k) but no matching A tensor") }
        self.modules = modules
        self.saved = saved
    }

    /// Factors of one module as f32 (`B` rows × rank, `A` rank × cols).
    public func factors(_ m: AdapterLoRA) throws -> LoRAFactors {
        let a = try file.tensor(m.aKey).floats(), b = try file.tensor(m.bKey).floats()
        for (key, values) in [(m.aKey, a), (m.bKey, b)] where values.contains(where: { !$0.isFinite }) {
            throw ModelIOError(file.path, "module '\(m.module)': tensor '\(key)' has NaN or infinite values")
        }
        return LoRAFactors(a: a, b: b, rank: m.rank, rows: m.rows, cols: m.cols)
    }
}

/// Everything needed to write an adapter: LoRA modules (unscaled factors, `B·A` = the delta), full
/// tensors for `modules_to_save`, and the config fields.
public struct AdapterContents {
    public struct Module {
        public var name: String
        public var kind: LoRAKind
        public var factors: LoRAFactors
        public init(name: String, kind: LoRAKind, factors: LoRAFactors) { self.name = name; self.kind = kind; self.factors = factors }
    }
    public var modules: [Module] = []
    /// (model tensor name, tensor) written as `base_model.model.<name>`.
    public var saved: [(String, Tensor)] = []
    public var modulesToSave: [String] = []
    public var targetModules: [String] = []
    public var baseModel: String = ""
    public var scaling: ScalingMode = .portable
    /// Storage type of the factors.
    public var factorDType: DType = .f32
    /// Extra config keys (appended after the standard ones).
    public var extraConfig: [(String, JSONValue)] = []
    public init() {}

    /// The largest rank (the config's `r` and `lora_alpha`; at least 1).
    public var maxRank: Int { max(1, modules.map(\.factors.rank).max() ?? 1) }

    /// `adapter_config.json` as PEFT reads it (see `ScalingMode` for the rank encoding).
    public func configJSON() -> JSONObject {
        let big = maxRank
        var pattern = JSONObject()
        for m in modules where m.factors.rank != big { pattern[m.name] = .int(m.factors.rank) }
        var o = JSONObject([
            ("base_model_name_or_path", .string(baseModel)),
            ("peft_type", .string("LORA")),
            ("task_type", .string("CAUSAL_LM")),
            ("r", .int(big)),
            ("lora_alpha", .int(big)),
            ("target_modules", .array(targetModules.map { .string($0) })),
            ("modules_to_save", modulesToSave.isEmpty ? .null : .array(modulesToSave.map { .string($0) })),
            ("rank_pattern", .object(pattern)),
            ("alpha_pattern", .object(scaling == .mergekit ? pattern : JSONObject())),
            ("use_rslora", .bool(false)),
            ("use_dora", .bool(false)),
            ("lora_dropout", .double(0)),
            ("fan_in_fan_out", .bool(false)),
            ("bias", .string("none")),
            ("init_lora_weights", .bool(true)),
            ("layers_to_transform", .null),
            ("layers_pattern", .null),
            ("inference_mode", .bool(true)),
        ])
        for (k, v) in extraConfig { o[k] = v }
        return o
    }

    /// Target-module list for `modules`: a leaf name (`q_proj`) when every module in `allModules` with
    /// that leaf is a LoRA module, the full names otherwise (PEFT matches `key == t` or `key.endswith("." + t)`,
    /// so a leaf would wrap modules with no tensors and PEFT would warn about missing keys).
    public static func targetList(loraModules: [String], allModules: [String]) -> [String] {
        let lora = Set(loraModules)
        var out = [String](), seen = Set<String>()
        for m in loraModules {
            let leaf = String(m.split(separator: ".").last ?? Substring(m))
            let all = allModules.filter { $0 == leaf || $0.hasSuffix("." + leaf) }
            let item = all.allSatisfy({ lora.contains($0) }) ? leaf : m
            if seen.insert(item).inserted { out.append(item) }
        }
        return out
    }

    /// Writes `adapter_config.json`, `adapter_model.safetensors` and `readme` (when given) into `dir`
    /// (an existing, empty directory: the caller assembles it atomically).
    public func write(into dir: String, readme: String?) throws {
        let big = maxRank
        var specs = [TensorSpec]()
        for m in modules {
            let f = m.factors
            specs.append(TensorSpec(name: AdapterKeys.a(m.name, m.kind), dtype: factorDType, shape: [f.rank, f.cols]))
            specs.append(TensorSpec(name: AdapterKeys.b(m.name, m.kind), dtype: factorDType, shape: [f.rows, f.rank]))
        }
        for (n, t) in saved { specs.append(TensorSpec(name: AdapterKeys.saved(n), dtype: t.dtype, shape: t.shape)) }
        let w = try SafetensorsWriter(path: (dir as NSString).appendingPathComponent(Adapter.weightsFile), specs: specs,
                                      metadata: ["format": "pt"])
        for m in modules {
            let f = m.factors
            // Portable: PEFT/llama.cpp scale this module by R/r, so each factor carries √(r/R).
            let c: Float = scaling == .portable ? (Float(f.rank) / Float(big)).squareRoot() : 1
            let a = c == 1 ? f.a : f.a.map { $0 * c }
            let b = c == 1 ? f.b : f.b.map { $0 * c }
            try w.append(name: AdapterKeys.a(m.name, m.kind), tensor: Tensor(shape: [f.rank, f.cols], floats: a, dtype: factorDType))
            try w.append(name: AdapterKeys.b(m.name, m.kind), tensor: Tensor(shape: [f.rows, f.rank], floats: b, dtype: factorDType))
        }
        for (n, t) in saved { try w.append(name: AdapterKeys.saved(n), tensor: t); MappedPages.release(t) }
        try w.finish()
        try FileOps.writeAtomically(JSONValue.object(configJSON()).serialized() + "\n",
                                    to: (dir as NSString).appendingPathComponent(Adapter.configFile))
        if let readme { try FileOps.writeAtomically(readme, to: (dir as NSString).appendingPathComponent("README.md")) }
    }
}
