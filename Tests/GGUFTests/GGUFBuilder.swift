import Foundation
@testable import ModelIO

/// Writes GGUF bytes field by field, so tests can build valid files and break them on purpose.
struct GGUFBuilder {
    var bytes = [UInt8]()

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func f32(_ v: Float) { u32(v.bitPattern) }
    mutating func string(_ s: String) { u64(UInt64(s.utf8.count)); bytes.append(contentsOf: s.utf8) }
    mutating func kvString(_ k: String, _ v: String) { string(k); u32(8); string(v) }
    mutating func kvU32(_ k: String, _ v: UInt32) { string(k); u32(4); u32(v) }
    mutating func kvF32(_ k: String, _ v: Float) { string(k); u32(6); f32(v) }
    mutating func kvStrings(_ k: String, _ v: [String]) { string(k); u32(9); u32(8); u64(UInt64(v.count)); for s in v { string(s) } }
    mutating func kvI32s(_ k: String, _ v: [Int32]) { string(k); u32(9); u32(5); u64(UInt64(v.count)); for x in v { u32(UInt32(bitPattern: x)) } }
    mutating func tensorInfo(_ name: String, ne: [UInt64], type: UInt32, offset: UInt64) {
        string(name); u32(UInt32(ne.count)); for d in ne { u64(d) }; u32(type); u64(offset)
    }
    mutating func pad(to alignment: Int = 32) { while bytes.count % alignment != 0 { bytes.append(0) } }

    /// A small valid file: version 3, two metadata entries, tensors `a` (F32 [4]) and `b` (F32 [2,3] ne=[3,2]).
    static func valid(version: UInt32 = 3, magic: [UInt8] = Array("GGUF".utf8), kvCount: UInt64 = 2, tensorCount: UInt64 = 2,
                      aType: UInt32 = 0, bOffset: UInt64 = 32, extraKV: ((inout GGUFBuilder) -> Void)? = nil,
                      extraCount: UInt64 = 0, truncateData: Int = 0) -> [UInt8] {
        var g = GGUFBuilder()
        g.bytes.append(contentsOf: magic)
        g.u32(version)
        g.u64(tensorCount)
        g.u64(kvCount + extraCount)
        g.kvString("general.architecture", "llama")
        g.kvU32("test.value", 7)
        extraKV?(&g)
        g.tensorInfo("a", ne: [4], type: aType, offset: 0)
        g.tensorInfo("b", ne: [3, 2], type: 0, offset: bOffset)
        g.pad()
        for i in 0..<4 { g.f32(Float(i)) }
        g.pad()
        for i in 0..<6 { g.f32(Float(10 + i)) }
        if truncateData > 0 { g.bytes.removeLast(truncateData) }
        return g.bytes
    }

    func write(_ path: String) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }
}
