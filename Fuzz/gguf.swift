import Foundation
@testable import GGUFImport
@testable import ModelIO

/// GGUF reader, then what import derives from it: hyperparameters (sizes checked against the tensors present),
/// the tensor plan and the tokenizer. Errors are fine; traps and huge allocations are bugs.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGGUF(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    guard let g = try? GGUFFile(path: FuzzInput.file(start, count)) else { return 0 }
    for t in g.tensors.prefix(8) where t.count <= 1 << 16 { _ = try? g.dequantized(t.name) }
    guard let arch = try? g.string("general.architecture"),
          let hp = try? Hyperparameters(g, arch: arch) else { return 0 }
    _ = try? GGUFImporter.tensorPlan(g, hp: hp)
    _ = try? GGUFTokenizerBuilder(g)
    return 0
}
