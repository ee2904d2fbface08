import Foundation
import TensorCore

/// A GGUF file's quantized weight blocks kept beside an imported model directory (`gguf-blocks.safetensors`), so
/// that decoding can run on the file's own blocks where re-quantizing the dequantized weights would not give them
/// back (k-quants: their scales come from a search that a re-quantization does not repeat).
///
/// Each tensor is stored under its Hugging Face name as `U8 [rows, bytesPerRow]`: the GGUF blocks of one row after
/// another (ggml's block layout, rows in Hugging Face order: Q/K rows un-permuted like the dequantized weights);
/// the safetensors metadata maps the name to its ggml type number (`"12"` for Q4_K).
public enum GGUFBlocks {
    public static let fileName = "gguf-blocks.safetensors"

    /// Types whose blocks a re-quantization of the dequantized values reproduces (`ck_q8_quantize`,
    /// `ck_q4_quantize`, `ck_q4_1_quantize` follow ggml's rules): a file quantized only with these needs no blocks
    /// kept.
    public static let reproducible: Set<GGMLType> = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1]

    /// One kept tensor: its blocks and ggml type.
    public struct Blocks {
        public let type: GGMLType
        public let rows: Int
        public let cols: Int
        public let bytes: UnsafeRawBufferPointer
        public var bytesPerRow: Int { bytes.count / max(rows, 1) }
        public init(type: GGMLType, rows: Int, cols: Int, bytes: UnsafeRawBufferPointer) {
            self.type = type; self.rows = rows; self.cols = cols; self.bytes = bytes
        }
    }

    /// The kept blocks of the model directory at `directory`, or nil when it has none.
    public final class Store: @unchecked Sendable {
        let file: SafetensorsFile

        public init?(directory: String) throws {
            let path = (directory as NSString).appendingPathComponent(GGUFBlocks.fileName)
            guard FileManager.default.fileExists(atPath: path) else { return nil }
            file = try SafetensorsFile(path: path)
        }

        /// Blocks of tensor `name` (a `[rows, cols]` weight), or nil when not kept. Throws when the entry does not
        /// describe whole blocks of that shape.
        public func blocks(_ name: String, rows: Int, cols: Int) throws -> Blocks? {
            guard let info = file.info(name) else { return nil }
            guard let raw = file.metadata?[name], let n = UInt32(raw), let type = GGMLType(rawValue: n) else {
                throw ModelIOError(file.path, "tensor '\(name)' has no ggml type in the metadata")
            }
            let (be, bb) = type.blockGeometry
            guard info.dtype == .u8, cols % be == 0, info.shape == [rows, cols / be * bb] else {
                throw ModelIOError(file.path, "tensor '\(name)' is \(info.dtype.rawValue) \(info.shape), expected U8 [\(rows), \(cols / max(be, 1) * bb)] of \(type) blocks")
            }
            return Blocks(type: type, rows: rows, cols: cols, bytes: try file.bytes(name))
        }
    }

    /// Rows of `src` (`rows` rows of `rowBytes` bytes) reordered: output row `i` is input row `order[i]`.
    public static func reorderRows(_ src: UnsafeRawBufferPointer, rowBytes: Int, order: [Int]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: order.count * rowBytes)
        out.withUnsafeMutableBytes { dst in
            for (i, r) in order.enumerated() {
                dst.baseAddress!.advanced(by: i * rowBytes).copyMemory(from: src.baseAddress! + r * rowBytes,
                                                                       byteCount: rowBytes)
            }
        }
        return out
    }
}
