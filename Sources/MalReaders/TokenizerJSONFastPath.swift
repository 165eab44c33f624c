import MalCore

/// The merges of a `tokenizer.json`: each a pair of token keys (byte-level text, UTF-8) as
/// ranges of one buffer.
struct MergeList {
    var bytes: [UInt8] = []
    var pairs: [(Range<Int>, Range<Int>)] = []

    mutating func append(_ a: some Collection<UInt8>, _ b: some Collection<UInt8>) {
        let s = bytes.count
        bytes.append(contentsOf: a)
        let m = bytes.count
        bytes.append(contentsOf: b)
        pairs.append((s..<m, m..<bytes.count))
    }
}

/// A `tokenizer.json` with its two large parts read by hand-written loops: `model.vocab` (an
/// object of 100K+ string → integer entries) and `model.merges` (a list of 100K+ pairs), which
/// through a generic JSON tree made a 128K vocabulary take half a second to load. The rest of
/// the document, with those two values replaced by `{}` and `[]`, goes to json-c as before.
///
/// The loops accept only the plain form (string keys, integer ids, `"a b"` or `["a", "b"]`
/// merges, valid UTF-8); on anything else `split` returns nil and the reader parses the whole
/// document the generic way, which reports the error it finds. A key twice in `model.vocab`
/// (which a JSON tree would silently collapse) is an error the reader reports.
struct TokenizerJSONFastPath {
    var rest: [UInt8]
    var vocab: [(String, Int)]
    var merges: MergeList

    static func split(_ doc: UnsafeRawBufferPointer) -> TokenizerJSONFastPath? {
        let p = doc.bindMemory(to: UInt8.self)
        var s = Scanner(p: p)
        guard let (vocabRange, mergesRange) = s.findModelParts() else { return nil }
        var v = Scanner(p: p, at: vocabRange.lowerBound), m = Scanner(p: p, at: mergesRange.lowerBound)
        guard let vocab = v.vocab(), let merges = m.merges() else { return nil }
        // Both spans must be valid UTF-8 (json-c checks the rest).
        for r in [vocabRange, mergesRange] {
            guard String(validating: UnsafeBufferPointer(rebasing: p[r]), as: UTF8.self) != nil else { return nil }
        }
        let (first, second) = vocabRange.lowerBound < mergesRange.lowerBound ? (vocabRange, mergesRange) : (mergesRange, vocabRange)
        var rest: [UInt8] = []
        rest.reserveCapacity(p.count - vocabRange.count - mergesRange.count + 4)
        rest += p[0..<first.lowerBound]
        rest += Array((first == vocabRange ? "{}" : "[]").utf8)
        rest += p[first.upperBound..<second.lowerBound]
        rest += Array((second == vocabRange ? "{}" : "[]").utf8)
        rest += p[second.upperBound...]
        return TokenizerJSONFastPath(rest: rest, vocab: vocab, merges: merges)
    }

    private struct Scanner {
        let p: UnsafeBufferPointer<UInt8>
        var i = 0
        init(p: UnsafeBufferPointer<UInt8>, at i: Int = 0) {
            self.p = p
            self.i = i
        }

        var done: Bool { i >= p.count }
        mutating func ws() { while i < p.count, p[i] == 0x20 || p[i] == 0x0A || p[i] == 0x0D || p[i] == 0x09 { i += 1 } }
        mutating func eat(_ c: UInt8) -> Bool {
            ws()
            guard i < p.count, p[i] == c else { return false }
            i += 1
            return true
        }

        /// Skips a string at `i` (escapes included); false if unterminated.
        mutating func skipString() -> Bool {
            guard i < p.count, p[i] == 0x22 else { return false }
            i += 1
            while i < p.count {
                switch p[i] {
                case 0x22: i += 1; return true
                case 0x5C: i += 2
                default: i += 1
                }
            }
            return false
        }

        /// Skips any value (loosely: json-c validates what is skipped here, in the rest).
        mutating func skipValue() -> Bool {
            ws()
            guard i < p.count else { return false }
            switch p[i] {
            case 0x22: return skipString()
            case 0x7B, 0x5B:
                var depth = 0
                while i < p.count {
                    switch p[i] {
                    case 0x22: if !skipString() { return false }; continue
                    case 0x7B, 0x5B: depth += 1
                    case 0x7D, 0x5D:
                        depth -= 1
                        if depth == 0 { i += 1; return true }
                    default: break
                    }
                    i += 1
                }
                return false
            default:
                while i < p.count, !",}] \t\n\r".utf8.contains(p[i]) { i += 1 }
                return true
            }
        }

        /// A key without escapes, as raw bytes (nil for anything else: the generic path decides).
        mutating func plainKey() -> ArraySlice<UInt8>? {
            ws()
            let start = i + 1
            guard skipString() else { return nil }
            let key = p[start..<(i - 1)]
            return key.contains(0x5C) ? nil : ArraySlice(key)
        }

        /// The ranges of `model.vocab` and `model.merges`, each exactly once.
        mutating func findModelParts() -> (Range<Int>, Range<Int>)? {
            guard eat(0x7B) else { return nil }
            var found: (Range<Int>, Range<Int>)?
            var sawModel = false
            while true {
                if eat(0x7D) { break }
                guard let key = plainKey(), eat(0x3A) else { return nil }
                if Array(key) == Array("model".utf8) {
                    guard !sawModel else { return nil }
                    sawModel = true
                    found = modelParts()
                    guard found != nil else { return nil }
                } else if !skipValue() {
                    return nil
                }
                if eat(0x2C) { continue }
                guard eat(0x7D) else { return nil }
                break
            }
            return found
        }

        private mutating func modelParts() -> (Range<Int>, Range<Int>)? {
            guard eat(0x7B) else { return nil }
            var vocab: Range<Int>?, merges: Range<Int>?
            while true {
                if eat(0x7D) { break }
                guard let key = plainKey(), eat(0x3A) else { return nil }
                ws()
                let start = i
                guard skipValue() else { return nil }
                switch Array(key) {
                case Array("vocab".utf8): if vocab != nil { return nil }; vocab = start..<i
                case Array("merges".utf8): if merges != nil { return nil }; merges = start..<i
                default: break
                }
                if eat(0x2C) { continue }
                guard eat(0x7D) else { return nil }
                break
            }
            guard let vocab, let merges else { return nil }
            return (vocab, merges)
        }

        /// A string's decoded UTF-8 (JSON escapes, surrogate pairs); nil for control
        /// characters, a lone surrogate or a bad escape.
        mutating func string(into out: inout [UInt8]) -> Bool {
            ws()
            guard i < p.count, p[i] == 0x22 else { return false }
            i += 1
            while i < p.count {
                let c = p[i]
                if c == 0x22 { i += 1; return true }
                if c < 0x20 { return false }
                if c != 0x5C { out.append(c); i += 1; continue }
                guard i + 1 < p.count else { return false }
                i += 2
                switch p[i - 1] {
                case 0x22: out.append(0x22)
                case 0x5C: out.append(0x5C)
                case 0x2F: out.append(0x2F)
                case 0x62: out.append(0x08)
                case 0x66: out.append(0x0C)
                case 0x6E: out.append(0x0A)
                case 0x72: out.append(0x0D)
                case 0x74: out.append(0x09)
                case 0x75:
                    guard var v = hex4() else { return false }
                    if (0xD800...0xDBFF).contains(v) {
                        guard i + 1 < p.count, p[i] == 0x5C, p[i + 1] == 0x75 else { return false }
                        i += 2
                        guard let lo = hex4(), (0xDC00...0xDFFF).contains(lo) else { return false }
                        v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(v) {
                        return false
                    }
                    out.append(contentsOf: String(Unicode.Scalar(v)!).utf8)
                default: return false
                }
            }
            return false
        }

        private mutating func hex4() -> UInt32? {
            guard i + 4 <= p.count else { return nil }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = p[i]
                let d: UInt8
                switch c {
                case 0x30...0x39: d = c - 0x30
                case 0x41...0x46: d = c - 0x41 + 10
                case 0x61...0x66: d = c - 0x61 + 10
                default: return nil
                }
                v = v << 4 | UInt32(d)
                i += 1
            }
            return v
        }

        /// A non-negative JSON integer (no fraction or exponent: the generic path has those).
        mutating func integer() -> Int? {
            ws()
            let start = i
            var v = 0
            while i < p.count, (0x30...0x39).contains(p[i]) {
                let (m, o1) = v.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(Int(p[i] - 0x30))
                guard !o1, !o2 else { return nil }
                v = a
                i += 1
            }
            guard i > start, !(p[start] == 0x30 && i - start > 1) else { return nil }
            guard i >= p.count || !".eE".utf8.contains(p[i]) else { return nil }
            return v
        }

        mutating func vocab() -> [(String, Int)]? {
            guard eat(0x7B) else { return nil }
            var out: [(String, Int)] = []
            var key: [UInt8] = []
            if eat(0x7D) { return out }
            repeat {
                key.removeAll(keepingCapacity: true)
                guard string(into: &key), eat(0x3A), let id = integer() else { return nil }
                out.append((String(decoding: key, as: UTF8.self), id))
            } while eat(0x2C)
            return eat(0x7D) ? out : nil
        }

        mutating func merges() -> MergeList? {
            guard eat(0x5B) else { return nil }
            var out = MergeList()
            var a: [UInt8] = [], b: [UInt8] = []
            if eat(0x5D) { return out }
            repeat {
                a.removeAll(keepingCapacity: true)
                b.removeAll(keepingCapacity: true)
                ws()
                guard i < p.count else { return nil }
                if p[i] == 0x5B {
                    i += 1
                    guard string(into: &a), eat(0x2C), string(into: &b), eat(0x5D) else { return nil }
                    out.append(a, b)
                } else {
                    guard string(into: &a), let space = a.firstIndex(of: 0x20) else { return nil }
                    out.append(a[..<space], a[(space + 1)...])
                }
            } while eat(0x2C)
            return eat(0x5D) ? out : nil
        }
    }
}
