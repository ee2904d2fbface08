/// Element types of tensors, named as safetensors names them (`"F32"`, `"BF16"`, …).
///
/// Compute happens in `f32`; weights may stay `bf16`/`f16`. The integer and boolean types are
/// read and carried (token ids, masks, position tensors) and converted to `f32` on request.
public enum DType: String, Sendable, CaseIterable, Codable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8"
    case bool = "BOOL"
    case f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool, .f8e4m3, .f8e5m2: return 1
        }
    }

    /// True for types whose values are floating point.
    public var isFloatingPoint: Bool {
        switch self {
        case .f64, .f32, .f16, .bf16, .f8e4m3, .f8e5m2: return true
        default: return false
        }
    }

    /// The name torch uses (`torch.bfloat16` → `"bfloat16"`), as `torch_dtype` in `config.json` does.
    public var torchName: String {
        switch self {
        case .f64: return "float64"
        case .f32: return "float32"
        case .f16: return "float16"
        case .bf16: return "bfloat16"
        case .i64: return "int64"
        case .i32: return "int32"
        case .i16: return "int16"
        case .i8: return "int8"
        case .u64: return "uint64"
        case .u32: return "uint32"
        case .u16: return "uint16"
        case .u8: return "uint8"
        case .bool: return "bool"
        case .f8e4m3: return "float8_e4m3fn"
        case .f8e5m2: return "float8_e5m2"
        }
    }

    /// Parses `torch_dtype`/`dtype` strings from `config.json` and the CLI (`bf16`, `bfloat16`, `float32`…).
    public init?(name: String) {
        switch name.lowercased() {
        case "f32", "float32", "float": self = .f32
        case "f16", "float16", "half": self = .f16
        case "bf16", "bfloat16": self = .bf16
        case "f64", "float64", "double": self = .f64
        default:
            if let d = DType(rawValue: name.uppercased()) { self = d } else { return nil }
        }
    }
}
