import Foundation
import Serving

/// The server's request decoding: completions/chat bodies decoded with their JSON types checked, then
/// range-checked. Any input is a request or a 4xx naming a field; never a trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequest(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    do {
        let b = try OpenAIRequest.decode(FuzzInput.data(start, count))
        let s = try OpenAIRequest.sampling(b)
        precondition(s.request.maxTokens >= 0 && s.request.topP > 0 && s.request.topP <= 1)
    } catch let e as OpenAIRequest.Invalid {
        precondition((400..<500).contains(e.status) && !e.message.isEmpty)
    } catch {
        fatalError("unexpected error type: \(error)")
    }
    return 0
}
