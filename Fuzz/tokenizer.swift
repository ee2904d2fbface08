import Foundation
@testable import Tokenizers

/// tokenizer.json loader, then encoding and decoding of a few strings with whatever loaded.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTokenizer(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    guard let t = try? Tokenizer(tokenizerJSON: FuzzInput.data(start, count), configJSON: nil, path: "fuzz/tokenizer.json") else { return 0 }
    for s in ["Hello world", " the  quick\nbrown\tfox 123 ünïcödé 🙂", "<s>[INST] hi [/INST]", ""] {
        let ids = t.encode(s)
        _ = t.decode(ids)
    }
    return 0
}
