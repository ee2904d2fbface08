import Foundation
@testable import ModelIO

/// Safetensors reader: header parse, every tensor view and its f32 conversion. Errors are fine; traps are bugs.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    guard let f = try? SafetensorsFile(path: FuzzInput.file(start, count)) else { return 0 }
    for name in f.names.prefix(16) {
        if let t = try? f.tensor(name), t.count <= 1 << 16 { _ = t.floats() }
    }
    return 0
}
