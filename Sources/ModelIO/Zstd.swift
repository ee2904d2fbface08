import Foundation
import CZstd

/// zstd compression for what the toolkit stores (checkpoints, caches), via Debian's libzstd.
public enum Zstd {
    /// Compresses `data` at `level` (1…19; 3 is zstd's default). With `checksum`, the frame carries zstd's content
    /// checksum (XXH64), which `decompress` verifies: a corrupted frame is then always reported, never decoded.
    public static func compress(_ data: Data, level: Int = 3, checksum: Bool = false) throws -> Data {
        let bound = ZSTD_compressBound(data.count)
        var out = Data(count: bound)
        guard let ctx = ZSTD_createCCtx() else { throw ModelIOError("zstd", "cannot create a compression context") }
        defer { ZSTD_freeCCtx(ctx) }
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, Int32(level))
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_checksumFlag, checksum ? 1 : 0)
        let n = out.withUnsafeMutableBytes { dst in
            data.withUnsafeBytes { src in
                ZSTD_compress2(ctx, dst.baseAddress, bound, src.baseAddress, data.count)
            }
        }
        if ZSTD_isError(n) != 0 { throw ModelIOError("zstd", "compression failed: \(String(cString: ZSTD_getErrorName(n)))") }
        out.count = n
        return out
    }

    /// Decompresses a whole zstd frame (streams frames of unknown size too). `source` names the
    /// input in errors.
    public static func decompress(_ data: Data, source: String = "zstd data") throws -> Data {
        guard let ctx = ZSTD_createDStream() else { throw ModelIOError(source, "cannot create a zstd stream") }
        defer { ZSTD_freeDStream(ctx) }
        ZSTD_initDStream(ctx)
        var out = Data()
        let chunk = ZSTD_DStreamOutSize()
        var buf = [UInt8](repeating: 0, count: chunk)
        var last: Int = 0
        try data.withUnsafeBytes { (src: UnsafeRawBufferPointer) in
            var input = ZSTD_inBuffer(src: src.baseAddress, size: src.count, pos: 0)
            var filled = false
            repeat {
                let (r, produced): (Int, Int) = buf.withUnsafeMutableBytes { b in
                    var output = ZSTD_outBuffer(dst: b.baseAddress, size: chunk, pos: 0)
                    let r = ZSTD_decompressStream(ctx, &output, &input)
                    out.append(b.baseAddress!.assumingMemoryBound(to: UInt8.self), count: output.pos)
                    return (r, output.pos)
                }
                if ZSTD_isError(r) != 0 { throw ModelIOError(source, "corrupt zstd data: \(String(cString: ZSTD_getErrorName(r)))") }
                last = r
                filled = produced == chunk
            } while input.pos < input.size || filled
        }
        if last != 0 { throw ModelIOError(source, "truncated zstd data (frame incomplete)") }
        return out
    }
}
