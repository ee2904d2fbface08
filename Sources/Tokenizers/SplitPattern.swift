import Foundation

/// A pattern that finds non-overlapping matches in a scalar sequence, with Oniguruma's leftmost-first
/// alternation semantics (what `tokenizers` uses).
///
/// The split regexes that real tokenizer files use (GPT-2, Llama 3, Qwen2) are matched by hand-written
/// code; any other regex goes through `NSRegularExpression` (ICU syntax, close to Oniguruma's for
/// these patterns); a literal string or a single character matches exactly.
enum SplitPattern {
    case gpt2
    case llama3
    case qwen2
    case literal([UInt32])
    case regex(NSRegularExpression)
    case predicate(@Sendable (UInt32) -> Bool)

    static let gpt2Source = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Source = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Source = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    static func regex(_ source: String, path: String) throws -> SplitPattern {
        switch source {
        case gpt2Source: return .gpt2
        case llama3Source: return .llama3
        case qwen2Source: return .qwen2
        default:
            if let at = nestedQuantifier(source) {
                throw TokenizerError(path, "split regex '\(source)' repeats a group that itself repeats (at character \(at)): matching it can take exponential time, so it is not accepted")
            }
            do { return .regex(try NSRegularExpression(pattern: source)) }
            catch { throw TokenizerError(path, "unsupported split regex '\(source)': \(error)") }
        }
    }

    /// The offset of a quantifier applied to a group that already contains a quantifier (`(a+)+`, `(\w*)*`,
    /// `(x|y+){2,}`), the shape of catastrophic backtracking; nil when there is none. Escapes and character classes
    /// are skipped; `?` alone and `{n}` with one count are not repetition.
    static func nestedQuantifier(_ source: String) -> Int? {
        let c = Array(source.unicodeScalars)
        var stack: [Bool] = []      // per open group: does it contain a quantifier?
        var closedHadQuantifier = false
        var i = 0
        func repeats(_ j: Int) -> Bool {
            guard j < c.count else { return false }
            if c[j] == "*" || c[j] == "+" { return true }
            if c[j] == "{" {
                var k = j + 1, body = ""
                while k < c.count && c[k] != "}" { body.unicodeScalars.append(c[k]); k += 1 }
                return body.contains(",") && k < c.count
            }
            return false
        }
        while i < c.count {
            let ch = c[i]
            if ch == "\\" { i += 2; closedHadQuantifier = false; continue }
            if ch == "[" {
                i += 1
                if i < c.count && c[i] == "^" { i += 1 }
                if i < c.count && c[i] == "]" { i += 1 }
                while i < c.count && c[i] != "]" { if c[i] == "\\" { i += 1 }; i += 1 }
                i += 1
                closedHadQuantifier = false
                continue
            }
            if ch == "(" { stack.append(false); i += 1; closedHadQuantifier = false; continue }
            if ch == ")" {
                closedHadQuantifier = stack.popLast() ?? false
                i += 1
                if closedHadQuantifier && repeats(i) { return i }
                if repeats(i), !stack.isEmpty { stack[stack.count - 1] = true }
                if closedHadQuantifier, !stack.isEmpty { stack[stack.count - 1] = true }
                continue
            }
            if repeats(i), !stack.isEmpty { stack[stack.count - 1] = true }
            closedHadQuantifier = false
            i += 1
        }
        return nil
    }

    /// Matches as half-open scalar ranges, in order, non-overlapping, never empty.
    func matches(_ s: [UInt32]) -> [Range<Int>] {
        switch self {
        case .gpt2, .llama3, .qwen2:
            return s.withUnsafeBufferPointer { buf in
                var cls = [UInt8](repeating: 0, count: buf.count)
                for i in 0..<buf.count { cls[i] = CharClass.of(buf[i]) }
                return cls.withUnsafeBufferPointer { c in
                    var out = [Range<Int>](); out.reserveCapacity(buf.count / 3)
                    var i = 0
                    let n = buf.count
                    while i < n {
                        let e: Int
                        switch self {
                        case .gpt2: e = SplitPattern.gpt2Match(buf, c, i)
                        case .llama3: e = SplitPattern.llama3Match(buf, c, i, maxDigits: 3)
                        default: e = SplitPattern.llama3Match(buf, c, i, maxDigits: 1)
                        }
                        out.append(i..<e)
                        i = e
                    }
                    return out
                }
            }
        case .literal(let lit):
            guard !lit.isEmpty, lit.count <= s.count else { return [] }
            var out = [Range<Int>]()
            var i = 0
            while i + lit.count <= s.count {
                if s[i] == lit[0] && Array(s[i..<i + lit.count]) == lit { out.append(i..<i + lit.count); i += lit.count }
                else { i += 1 }
            }
            return out
        case .predicate(let f):
            var out = [Range<Int>]()
            for (i, v) in s.enumerated() where f(v) { out.append(i..<i + 1) }
            return out
        case .regex(let re):
            // NSRegularExpression reports UTF-16 offsets: map them back to scalar indices.
            let str = s.string
            var utf16ToScalar = [Int](); utf16ToScalar.reserveCapacity(s.count * 2 + 1)
            for (i, v) in s.enumerated() { utf16ToScalar.append(i); if v > 0xFFFF { utf16ToScalar.append(i) } }
            utf16ToScalar.append(s.count)
            var out = [Range<Int>]()
            for m in re.matches(in: str, range: NSRange(location: 0, length: (str as NSString).length)) {
                let a = utf16ToScalar[m.range.location], b = utf16ToScalar[m.range.location + m.range.length]
                if b > a { out.append(a..<b) }
            }
            return out
        }
    }

    @inline(__always) static func runOf(_ c: UnsafeBufferPointer<UInt8>, _ i: Int, _ f: (UInt8) -> Bool) -> Int {
        var j = i
        while j < c.count && f(c[j]) { j &+= 1 }
        return j
    }
    @inline(__always) static func isOther(_ k: UInt8) -> Bool { k & (CharClass.letter | CharClass.number | CharClass.space) == 0 }

    /// One match of `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` at `i`; returns its end.
    static func gpt2Match(_ s: UnsafeBufferPointer<UInt32>, _ c: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int {
        let n = s.count
        let ch = s[i]
        if ch == 0x27 && i + 1 < n {
            let a = s[i + 1]
            if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 { return i + 2 }  // s t m d
            if i + 2 < n {
                let b = s[i + 2]
                if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) { return i + 3 }  // re ve ll
            }
        }
        let k = (ch == 0x20 && i + 1 < n) ? i + 1 : i
        let ck = c[k]
        if ck & CharClass.letter != 0 { return runOf(c, k) { $0 & CharClass.letter != 0 } }
        if ck & CharClass.number != 0 { return runOf(c, k) { $0 & CharClass.number != 0 } }
        if isOther(ck) { return runOf(c, k, isOther) }
        // s[i] is white space here.
        let e = runOf(c, i) { $0 & CharClass.space != 0 }
        if e == n { return e }
        return e - 1 > i ? e - 1 : e
    }

    /// One match of Llama 3's pattern (`maxDigits` 3) or Qwen2's (`maxDigits` 1) at `i`; returns its end.
    static func llama3Match(_ s: UnsafeBufferPointer<UInt32>, _ c: UnsafeBufferPointer<UInt8>, _ i: Int, maxDigits: Int) -> Int {
        let n = s.count
        let ch = s[i]
        if ch == 0x27 && i + 1 < n {
            // (?i:'s|'t|'re|'ve|'m|'ll|'d) with Unicode case folding (ſ folds to s, K to k: only ſ matters here).
            let a = s[i + 1] | 0x20
            if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 || s[i + 1] == 0x17F { return i + 2 }
            if i + 2 < n {
                let b = s[i + 2] | 0x20
                if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) {
                    if s[i + 1] < 128 && s[i + 2] < 128 { return i + 3 }
                }
            }
        }
        let cc = c[i]
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if cc & CharClass.letter != 0 { return runOf(c, i) { $0 & CharClass.letter != 0 } }
        if cc & (CharClass.newline | CharClass.number) == 0 && i + 1 < n && c[i + 1] & CharClass.letter != 0 {
            return runOf(c, i + 1) { $0 & CharClass.letter != 0 }
        }
        // \p{N}{1,maxDigits}
        if cc & CharClass.number != 0 {
            var j = i + 1
            while j < n && j - i < maxDigits && c[j] & CharClass.number != 0 { j += 1 }
            return j
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let k = (ch == 0x20 && i + 1 < n) ? i + 1 : i
        if isOther(c[k]) {
            let e = runOf(c, k, isOther)
            return runOf(c, e) { $0 & CharClass.newline != 0 }
        }
        // s[i] is white space here.
        let e = runOf(c, i) { $0 & CharClass.space != 0 }
        // \s*[\r\n]+ : ends after the last newline in the run.
        var last = e - 1
        while last >= i && c[last] & CharClass.newline == 0 { last -= 1 }
        if last >= i { return last + 1 }
        if e == n { return e }
        return e - 1 > i ? e - 1 : e
    }
}

/// How a split treats the matched parts (`SplitDelimiterBehavior` in `tokenizers`).
enum SplitBehavior: String {
    case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"

    /// Splits `s` by `matches` the way `NormalizedString::split` does; returns non-empty ranges.
    func apply(_ matches: [Range<Int>], count n: Int, invert: Bool) -> [Range<Int>] {
        var parts = [(Range<Int>, Bool)]()
        var prev = 0
        for m in matches {
            if m.lowerBound > prev { parts.append((prev..<m.lowerBound, false)) }
            parts.append((m, true))
            prev = m.upperBound
        }
        if prev < n { parts.append((prev..<n, false)) }
        if invert { parts = parts.map { ($0.0, !$0.1) } }
        var out = [Range<Int>]()
        switch self {
        case .isolated: out = parts.map(\.0)
        case .removed: out = parts.filter { !$0.1 }.map(\.0)
        case .mergedWithPrevious:
            var previousMatch = false
            for (r, m) in parts {
                if m && !previousMatch, let last = out.last { out[out.count - 1] = last.lowerBound..<r.upperBound }
                else { out.append(r) }
                previousMatch = m
            }
        case .mergedWithNext:
            var previousMatch = false
            for (r, m) in parts.reversed() {
                if m && !previousMatch, let last = out.last { out[out.count - 1] = r.lowerBound..<last.upperBound }
                else { out.append(r) }
                previousMatch = m
            }
            out.reverse()
        case .contiguous:
            var previousMatch = false
            for (i, (r, m)) in parts.enumerated() {
                if m == previousMatch && i > 0, let last = out.last { out[out.count - 1] = last.lowerBound..<r.upperBound }
                else { out.append(r) }
                previousMatch = m
            }
        }
        return out.filter { !$0.isEmpty }
    }
}
