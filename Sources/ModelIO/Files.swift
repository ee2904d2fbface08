import Basics
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An error tied to a file: the message names the file and what is wrong with it, on one line.
public struct ModelIOError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let message: String
    public init(_ path: String, _ message: String) { self.path = path; self.message = message }
    public var description: String { "\(path): \(message)" }
}

/// A read-only memory map of a whole file. Tensor views borrow from it and keep it alive.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let base: UnsafeRawPointer
    public let size: Int
    private let mapped: Bool

    public init(path: String) throws {
        self.path = path
        // O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; the type is checked right after.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw ModelIOError(path, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ModelIOError(path, "cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw ModelIOError(path, "not a regular file") }
        size = Int(st.st_size)
        if size == 0 {
            base = UnsafeRawPointer(UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 8))
            mapped = false
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw ModelIOError(path, "cannot map into memory: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
        mapped = true
    }

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// Tell the kernel a range will be read soon (sequential streaming of shards).
    public func willNeed(offset: Int, count: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = offset / page * page
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), min(size - start, count + (offset - start)), MADV_WILLNEED)
    }

    deinit {
        if mapped { munmap(UnsafeMutableRawPointer(mutating: base), size) }
        else { UnsafeMutableRawPointer(mutating: base).deallocate() }
    }
}

/// Paths and atomic writes.
public enum FileOps {
    /// Fully resolved absolute path (symlinks followed); the path must exist.
    public static func realPath(_ path: String) -> String? {
        guard let r = realpath(path, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }

    /// The operating system's words for a Foundation file error ("Permission denied", "Not a directory"), rather
    /// than "The operation could not be completed (NSCocoaErrorDomain …)".
    public static func reason(_ error: Error) -> String {
        let ns = error as NSError
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        if let u = ns.userInfo[NSUnderlyingErrorKey] as? NSError, u.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(u.code)))
        }
        switch CocoaError.Code(rawValue: ns.code) {
        case .fileNoSuchFile, .fileReadNoSuchFile: return String(cString: strerror(ENOENT))
        case .fileReadNoPermission, .fileWriteNoPermission: return String(cString: strerror(EACCES))
        case .fileWriteFileExists: return String(cString: strerror(EEXIST))
        case .fileWriteOutOfSpace: return String(cString: strerror(ENOSPC))
        case .fileWriteVolumeReadOnly: return String(cString: strerror(EROFS))
        default: return ns.localizedDescription
        }
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Refuses anything but a regular file (a FIFO or device would block a read forever or never end).
    public static func requireRegularFile(_ path: String) throws {
        var st = stat()
        guard stat(path, &st) == 0 else { throw ModelIOError(path, "cannot read: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw ModelIOError(path, "not a regular file") }
    }

    /// The whole file, or an error naming it.
    public static func read(_ path: String) throws -> Data {
        try requireRegularFile(path)
        do { return try Data(contentsOf: URL(fileURLWithPath: path)) }
        catch { throw ModelIOError(path, "cannot read: \(reason(error))") }
    }

    /// A JSON file whose top level must be an object (config.json, an index), with its raw bytes.
    public static func readJSONObject(_ path: String) throws -> (JSONObject, Data) {
        let data = try read(path)
        let json: JSONValue
        do { json = try JSONValue.parse(data) }
        catch let e as JSONError { throw ModelIOError(path, "not valid JSON: \(e.message) (byte \(e.offset))") }
        guard case .object(let obj) = json else { throw ModelIOError(path, "not a JSON object") }
        return (obj, data)
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Resolves `name` (taken from a file such as an index's `weight_map`) inside `directory`,
    /// refusing anything that would leave it: absolute paths, `..` components, or symlinks that
    /// resolve outside. Returns the joined path.
    public static func containedPath(_ name: String, in directory: String, describedBy source: String) throws -> String {
        if name.isEmpty { throw ModelIOError(source, "empty file name") }
        if name.hasPrefix("/") { throw ModelIOError(source, "file name '\(name)' is an absolute path; only files inside the model directory are read") }
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        if parts.contains("..") || name.contains("\0") {
            throw ModelIOError(source, "file name '\(name)' leaves the model directory; only files inside it are read")
        }
        let joined = (directory as NSString).appendingPathComponent(name)
        if let real = realPath(joined), let root = realPath(directory) {
            let prefix = root.hasSuffix("/") ? root : root + "/"
            let blobs = hubCacheRepository(of: root).map { $0 + "/blobs/" }
            if !real.hasPrefix(prefix) && !(blobs.map { real.hasPrefix($0) } ?? false) {
                throw ModelIOError(source, "file name '\(name)' resolves to \(real), outside the model directory")
            }
        }
        return joined
    }

    /// The repository folder (`…/models--ORG--NAME`) of a Hugging Face hub cache snapshot directory
    /// (`…/models--ORG--NAME/snapshots/REVISION`, resolved), whose files are symlinks into `../../blobs/`; nil for
    /// any other directory.
    public static func hubCacheRepository(of resolvedDirectory: String) -> String? {
        let snapshots = (resolvedDirectory as NSString).deletingLastPathComponent
        guard (snapshots as NSString).lastPathComponent == "snapshots" else { return nil }
        let repo = (snapshots as NSString).deletingLastPathComponent
        guard (repo as NSString).lastPathComponent.hasPrefix("models--"), isDirectory(repo + "/blobs") else { return nil }
        return repo
    }

    /// A temporary path beside `path` (same directory, so `rename` is atomic). Leftovers of writers that were
    /// killed in that directory are removed first (``removeStaleTemporaries(in:)``).
    public static func temporarySibling(of path: String) -> String {
        let dir = (path as NSString).deletingLastPathComponent
        removeStaleTemporaries(in: dir.isEmpty ? "." : dir)
        let base = (path as NSString).lastPathComponent
        let tag = String(UInt64.random(in: 0..<UInt64.max), radix: 36)
        return (dir.isEmpty ? "." : dir) + "/.\(base).tmp-\(getpid())-\(tag)"
    }

    /// The process id in a temporary name written by this tool — `.NAME.tmp-PID-TAG` (``temporarySibling(of:)``)
    /// or `NAME.tmp-PID` (evaluation outputs) — or nil for any other name.
    public static func temporaryOwner(_ name: String) -> Int32? {
        guard let r = name.range(of: ".tmp-", options: .backwards), r.lowerBound > name.startIndex else { return nil }
        let rest = name[r.upperBound...]
        let digits = rest.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, digits.count == rest.count || rest.dropFirst(digits.count).first == "-" else { return nil }
        if digits.count != rest.count && !name.hasPrefix(".") { return nil }
        return Int32(digits)
    }

    /// Removes temporary files and directories in `directory` left by a writer of this tool whose process is gone
    /// (killed mid-write). Those of live processes, this one included, are left alone. Returns the names removed.
    @discardableResult
    public static func removeStaleTemporaries(in directory: String) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        var removed: [String] = []
        for name in names {
            guard let pid = temporaryOwner(name), pid > 0, pid != getpid() else { continue }
            if kill(pid, 0) == 0 || errno != ESRCH { continue }
            remove((directory as NSString).appendingPathComponent(name))
            removed.append(name)
        }
        return removed.sorted()
    }

    /// Writes `data` to `path` through a temporary file and a rename: readers never see half a file.
    public static func writeAtomically(_ data: Data, to path: String) throws {
        let tmp = temporarySibling(of: path)
        do {
            try data.write(to: URL(fileURLWithPath: tmp))
            try rename(tmp, to: path)
        } catch {
            unlink(tmp)
            if let e = error as? ModelIOError { throw e }
            throw ModelIOError(path, "cannot write: \(reason(error))")
        }
    }

    public static func writeAtomically(_ text: String, to path: String) throws {
        try writeAtomically(Data(text.utf8), to: path)
    }

    public static func rename(_ from: String, to: String) throws {
        guard Glibc.rename(from, to) == 0 else {
            throw ModelIOError(to, "cannot rename from \(from): \(String(cString: strerror(errno)))")
        }
    }

    /// Removes a file or directory tree (no error if absent).
    public static func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    public static func makeDirectory(_ path: String) throws {
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
        catch { throw ModelIOError(path, "cannot create directory: \(reason(error))") }
    }

    public static func listDirectory(_ path: String) throws -> [String] {
        do { return try FileManager.default.contentsOfDirectory(atPath: path).sorted() }
        catch { throw ModelIOError(path, "cannot list directory: \(reason(error))") }
    }

    public static func fileSize(_ path: String) -> Int? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Int(st.st_size)
    }
}

/// A file written through a temporary sibling, renamed into place by `commit()`; removed if
/// never committed (an interrupted writer leaves nothing that looks complete).
public final class AtomicFileWriter {
    public let path: String
    let tmpPath: String
    let fd: Int32
    private var committed = false
    private var buffer = [UInt8]()

    public init(path: String) throws {
        self.path = path
        tmpPath = FileOps.temporarySibling(of: path)
        fd = open(tmpPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ModelIOError(path, "cannot create: \(String(cString: strerror(errno)))") }
        buffer.reserveCapacity(1 << 20)
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        if bytes.count >= 1 << 20 {
            try flush()
            try writeAll(bytes)
            return
        }
        buffer.append(contentsOf: bytes)
        if buffer.count >= 1 << 20 { try flush() }
    }

    public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    func flush() throws {
        if buffer.isEmpty { return }
        try buffer.withUnsafeBytes { try writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + off, bytes.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                throw ModelIOError(path, "write failed: \(String(cString: strerror(errno)))")
            }
            off += n
        }
    }

    /// Flushes, syncs and renames into place.
    public func commit() throws {
        try flush()
        guard fsync(fd) == 0 else { throw ModelIOError(path, "fsync failed: \(String(cString: strerror(errno)))") }
        close(fd)
        committed = true
        do { try FileOps.rename(tmpPath, to: path) } catch { unlink(tmpPath); throw error }
    }

    deinit {
        if !committed { close(fd); unlink(tmpPath) }
    }
}
