import Basics
import Foundation
import LoRA
import ModelIO

/// PEFT adapter_config.json: parse, then the rank and scaling of a few module names.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPEFT(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    guard case .object(let o)? = try? JSONValue.parse(FuzzInput.data(start, count)),
          let c = try? AdapterConfig(json: o, path: "fuzz/adapter_config.json") else { return 0 }
    for m in ["model.layers.0.self_attn.q_proj", "model.embed_tokens", "lm_head", ""] {
        _ = c.rank(of: m)
        _ = c.scaling(of: m)
    }
    return 0
}
