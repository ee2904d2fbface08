import Basics
import Foundation
import ModelIO

/// The JSON parser: any input parses or fails cleanly, and whatever parses survives a serialize → parse round trip
/// unchanged (checked: a difference is a crash).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    guard let v = try? JSONValue.parse(FuzzInput.data(start, count)) else { return 0 }
    let text = v.serialized(indent: nil)
    guard let again = try? JSONValue.parse(Data(text.utf8)) else { fatalError("serialized JSON does not parse: \(text.prefix(200))") }
    if again.serialized(indent: nil) != text { fatalError("JSON round trip changed the value: \(text.prefix(200))") }
    return 0
}
