import Basics
import Foundation
import ModelIO

/// Byte-pair-encoding model with the semantics of `tokenizers`' `BPE` (no dropout): initial symbols are
/// the word's Unicode scalars (looked up as one-scalar tokens, with `continuing_subword_prefix` /
/// `end_of_word_suffix` when set), unknown scalars go to `<0xXX>` byte tokens (`byte_fallback`) or to
/// `unk_token` (fused when `fuse_unk`); then the adjacent pair with the lowest merge rank is merged,
/// leftmost first, until no pair has a rank. `ignore_merges` returns a whole-word vocabulary hit directly.
final class BPEModel: @unchecked Sendable {
    let vocab: [[UInt8]: Int]            // token UTF-8 bytes → id (byte-exact keys, no Unicode equivalence)
    let idToToken: [Int: String]
    /// (left id << 32 | right id) → (rank << 32 | merged id)
    let merges: [UInt64: UInt64]
    let smallScalars: [Int32]            // one-scalar tokens for scalars < 0x800 (-1: absent)
    let scalarTokens: [UInt32: Int]
    let unkId: Int?
    let byteFallbackIds: [Int]?          // <0x00>…<0xFF> when byte_fallback and all present
    let byteFallback: Bool
    let fuseUnk: Bool
    let ignoreMerges: Bool
    let prefix: String?
    let suffix: String?
    private var cache: [[UInt32]: [Int]] = [:]
    private let lock = NSLock()

    init(json m: JSONValue, path: String) throws {
        guard let vocabObj = m["vocab"]?.objectValue else { throw TokenizerError(path, "model.vocab missing or not an object") }
        var vocab = [[UInt8]: Int](minimumCapacity: vocabObj.count)
        var idToToken = [Int: String](minimumCapacity: vocabObj.count)
        for (k, v) in vocabObj.entries {
            guard let id = v.intValue, id >= 0 else { throw TokenizerError(path, "model.vocab['\(k)'] is not a non-negative integer") }
            vocab[Array(k.utf8)] = id
            idToToken[id] = k
        }
        self.vocab = vocab
        self.idToToken = idToToken
        prefix = m["continuing_subword_prefix"]?.stringValue
        suffix = m["end_of_word_suffix"]?.stringValue
        let mergeList = try m.list("merges", field: "model.merges", path: path)
        var merges = [UInt64: UInt64](minimumCapacity: mergeList.count)
        let prefixLen = prefix?.utf8.count ?? 0
        for (rank, e) in mergeList.enumerated() {
            let a: String, b: String
            if let s = e.stringValue {
                let parts = s.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw TokenizerError(path, "model.merges[\(rank)] '\(s)' is not 'a b'") }
                a = String(parts[0]); b = String(parts[1])
            } else if let arr = e.arrayValue, arr.count == 2, let x = arr[0].stringValue, let y = arr[1].stringValue {
                a = x; b = y
            } else { throw TokenizerError(path, "model.merges[\(rank)] is neither 'a b' nor [a, b]") }
            var merged = Array(a.utf8)
            let bb = Array(b.utf8)
            if prefixLen > 0, let p = prefix, b.hasPrefix(p) { merged += bb[prefixLen...] } else { merged += bb }
            guard let ia = vocab[Array(a.utf8)], let ib = vocab[bb] else {
                throw TokenizerError(path, "model.merges[\(rank)] uses a token missing from the vocabulary ('\(a)', '\(b)')")
            }
            guard let im = vocab[merged] else {
                throw TokenizerError(path, "model.merges[\(rank)]: merged token '\(String(decoding: merged, as: UTF8.self))' is not in the vocabulary")
            }
            let key = UInt64(ia) << 32 | UInt64(ib)
            if merges[key] == nil { merges[key] = UInt64(rank) << 32 | UInt64(im) }
        }
        self.merges = merges
        var small = [Int32](repeating: -1, count: 0x800)
        var scalarTokens = [UInt32: Int]()
        for (k, id) in vocab {
            let s = String(decoding: k, as: UTF8.self)
            let us = Array(s.unicodeScalars)
            if us.count == 1 {
                scalarTokens[us[0].value] = id
                if us[0].value < 0x800 { small[Int(us[0].value)] = Int32(id) }
            }
        }
        smallScalars = small
        self.scalarTokens = scalarTokens
        if let u = m["unk_token"]?.stringValue {
            unkId = vocab[Array(u.utf8)]
        } else { unkId = nil }
        byteFallback = m["byte_fallback"]?.boolValue ?? false
        var fb = [Int]()
        for b in 0..<256 {
            let name = "<0x" + String(format: "%02X", b) + ">"
            if let id = vocab[Array(name.utf8)] { fb.append(id) }
        }
        byteFallbackIds = fb.count == 256 ? fb : nil
        fuseUnk = m["fuse_unk"]?.boolValue ?? false
        ignoreMerges = m["ignore_merges"]?.boolValue ?? false
        if let d = m["dropout"]?.doubleValue, d > 0 { throw TokenizerError(path, "BPE dropout (\(d)) is not supported") }
    }

    @inline(__always) func scalarId(_ v: UInt32) -> Int? {
        if v < 0x800 { let i = smallScalars[Int(v)]; return i >= 0 ? Int(i) : nil }
        return scalarTokens[v]
    }

    /// Appends the ids of one pre-tokenized word.
    func tokenize(_ word: [UInt32], into out: inout [Int]) {
        if word.isEmpty { return }
        let cacheable = word.count < 256
        if cacheable {
            lock.lock()
            let hit = cache[word]
            lock.unlock()
            if let hit { out += hit; return }
        }
        let ids = compute(word)
        if cacheable {
            lock.lock()
            if cache.count > 100_000 { cache.removeAll(keepingCapacity: true) }
            cache[word] = ids
            lock.unlock()
        }
        out += ids
    }

    private func compute(_ word: [UInt32]) -> [Int] {
        if ignoreMerges, let id = vocab[word.utf8Bytes()] { return [id] }
        var syms = [Int](); syms.reserveCapacity(word.count)
        var unk: Int? = nil   // pending unknown run (fuse_unk) — only the id matters for ids
        let simple = prefix == nil && suffix == nil
        for (i, v) in word.enumerated() {
            var id: Int?
            var bytes: [UInt8] = []
            if simple { id = scalarId(v) } else {
                var s = [UInt8]()
                if i > 0, let p = prefix { s += Array(p.utf8) }
                appendUTF8(v, to: &s)
                if i == word.count - 1, let x = suffix { s += Array(x.utf8) }
                id = vocab[s]
                bytes = s
            }
            if let id {
                if let u = unk { syms.append(u); unk = nil }
                syms.append(id)
                continue
            }
            if byteFallback {
                if bytes.isEmpty { appendUTF8(v, to: &bytes) }
                if let fb = byteFallbackIds {
                    for b in bytes { syms.append(fb[Int(b)]) }
                    continue
                }
            }
            if let u = unkId {
                if unk != nil && !fuseUnk { syms.append(unk!) }
                unk = u
            }
        }
        if let u = unk { syms.append(u) }
        return merge(syms)
    }

    /// Repeatedly merges the adjacent pair with the lowest rank (leftmost on ties).
    private func merge(_ input: [Int]) -> [Int] {
        if input.count < 2 { return input }
        if input.count > 48 { return mergeLong(input) }
        var syms = input
        let merges = self.merges
        // ranks[i]: rank<<32|id of merging syms[i], syms[i+1], or UInt64.max.
        var ranks = [UInt64](repeating: .max, count: syms.count - 1)
        for i in 0..<(syms.count - 1) {
            ranks[i] = merges[UInt64(syms[i]) << 32 | UInt64(syms[i + 1])] ?? .max
        }
        while true {
            var best = UInt64.max, at = -1
            for i in 0..<ranks.count where ranks[i] < best { best = ranks[i]; at = i }
            if at < 0 { break }
            syms[at] = Int(best & 0xFFFF_FFFF)
            syms.remove(at: at + 1)
            ranks.remove(at: at)
            if at < ranks.count { ranks[at] = merges[UInt64(syms[at]) << 32 | UInt64(syms[at + 1])] ?? .max }
            if at > 0 { ranks[at - 1] = merges[UInt64(syms[at - 1]) << 32 | UInt64(syms[at])] ?? .max }
        }
        return syms
    }

    /// The same merge order for long words, in O(n log n): a linked list of symbols and a min-heap of
    /// (rank, position) with stale entries skipped (as `tokenizers`' `Word::merge_all`).
    private func mergeLong(_ input: [Int]) -> [Int] {
        let n = input.count
        var sym = input
        var next = Array(1...n); next[n - 1] = -1
        var prev = Array(-1..<(n - 1))
        var alive = [Bool](repeating: true, count: n)
        var heap = [UInt64](); heap.reserveCapacity(n)
        func push(_ x: UInt64) {
            heap.append(x)
            var i = heap.count - 1
            while i > 0 { let p = (i - 1) / 2; if heap[p] <= heap[i] { break }; heap.swapAt(p, i); i = p }
        }
        func pop() -> UInt64 {
            let top = heap[0]
            let last = heap.removeLast()
            if !heap.isEmpty {
                heap[0] = last
                var i = 0
                while true {
                    let l = 2 * i + 1, r = l + 1
                    var m = i
                    if l < heap.count && heap[l] < heap[m] { m = l }
                    if r < heap.count && heap[r] < heap[m] { m = r }
                    if m == i { break }
                    heap.swapAt(i, m); i = m
                }
            }
            return top
        }
        func rank(_ a: Int, _ b: Int) -> UInt64? { merges[UInt64(sym[a]) << 32 | UInt64(sym[b])] }
        for i in 0..<(n - 1) { if let r = rank(i, i + 1) { push((r >> 32) << 32 | UInt64(i)) } }
        while !heap.isEmpty {
            let top = pop()
            let pos = Int(top & 0xFFFF_FFFF), r = top >> 32
            guard alive[pos], next[pos] >= 0, let cur = rank(pos, next[pos]), cur >> 32 == r else { continue }
            let right = next[pos]
            sym[pos] = Int(cur & 0xFFFF_FFFF)
            alive[right] = false
            next[pos] = next[right]
            if next[pos] >= 0 { prev[next[pos]] = pos }
            if prev[pos] >= 0, let r2 = rank(prev[pos], pos) { push((r2 >> 32) << 32 | UInt64(prev[pos])) }
            if next[pos] >= 0, let r2 = rank(pos, next[pos]) { push((r2 >> 32) << 32 | UInt64(pos)) }
        }
        var out = [Int]()
        var i = 0
        while i >= 0 { out.append(sym[i]); i = next[i] }
        return out
    }
}
