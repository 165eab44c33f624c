import Foundation
import MalCore

/// Pre-tokenisation and normalisation steps of `Tokenizer`: a step (a split by pattern, a
/// literal or a regex, digits, the byte-level split) cuts each piece of the text into smaller ones
/// with HF tokenizers' split behaviours (`removed`, `isolated`, merged with the previous or next
/// piece, `contiguous`), and normalizers rewrite the text before that.
extension Tokenizer {
    func apply(_ step: Step, _ t: ScalarText, _ pieces: [(Int, Int)]) -> [(Int, Int)] {
        var out: [(Int, Int)] = []
        out.reserveCapacity(pieces.count * 2)
        for (s, e) in pieces {
            switch step {
            case let .digits(individual):
                var i = s
                while i < e {
                    var j = i + 1
                    if t.isN(i) { if !individual { while j < e && t.isN(j) { j += 1 } } } else { while j < e && !t.isN(j) { j += 1 } }
                    out.append((i, j))
                    i = j
                }
            case let .split(splitter, behavior, invert):
                var matches: [(Int, Int)] = []
                switch splitter {
                case let .scanner(sc): sc.matches(t, s, e) { matches.append(($0, $1)) }
                case let .literal(lit): Tokenizer.literalMatches(lit, t, s, e) { matches.append(($0, $1)) }
                case let .regex(r): Tokenizer.regexMatches(r, t, s, e) { matches.append(($0, $1)) }
                }
                Tokenizer.splitPieces(s, e, matches, behavior, invert, &out)
            }
        }
        return out
    }

    /// HF `split` with a behaviour: matches and the gaps between them become pieces.
    static func splitPieces(
        _ s: Int, _ e: Int, _ matches: [(Int, Int)], _ behavior: TokenizerModel.SplitBehavior, _ invert: Bool,
        _ out: inout [(Int, Int)]
    ) {
        // (range, isDelimiter)
        var parts: [((Int, Int), Bool)] = []
        var pos = s
        for (a, b) in matches {
            if a > pos { parts.append(((pos, a), invert)) }
            parts.append(((a, b), !invert))
            pos = b
        }
        if pos < e { parts.append(((pos, e), invert)) }
        switch behavior {
        case .removed: for (r, d) in parts where !d { out.append(r) }
        case .isolated: for (r, _) in parts { out.append(r) }
        case .contiguous:
            var cur: (Int, Int)? = nil
            var curDelim = false
            for (r, d) in parts {
                if let c = cur, d && curDelim {
                    cur = (c.0, r.1)
                } else {
                    if let c = cur { out.append(c) }
                    cur = r
                    curDelim = d
                }
            }
            if let c = cur { out.append(c) }
        case .mergedWithPrevious:
            var cur: (Int, Int)? = nil
            for (r, d) in parts {
                if d, let c = cur {
                    cur = (c.0, r.1)
                } else {
                    if let c = cur { out.append(c) }
                    cur = r
                }
            }
            if let c = cur { out.append(c) }
        case .mergedWithNext:
            var pending: Int? = nil
            for (r, d) in parts {
                if d {
                    if pending == nil { pending = r.0 }
                } else {
                    out.append((pending ?? r.0, r.1))
                    pending = nil
                }
            }
            if let p = pending { out.append((p, e)) }
        }
    }

    static func literalMatches(_ lit: [UInt32], _ t: ScalarText, _ s: Int, _ e: Int, _ emit: (Int, Int) -> Void) {
        guard !lit.isEmpty else { return }
        var i = s
        while i + lit.count <= e {
            var ok = true
            for k in 0..<lit.count where t.scalars[i + k] != lit[k] { ok = false; break }
            if ok { emit(i, i + lit.count); i += lit.count } else { i += 1 }
        }
    }

    /// General path: Swift Regex over the piece, with Unicode-scalar semantics. Match bounds are
    /// turned into scalar offsets by walking on from the previous match, never from the start
    /// (that walk made a long line quadratic).
    static func regexMatches(_ r: Regex<AnyRegexOutput>, _ t: ScalarText, _ s: Int, _ e: Int, _ emit: (Int, Int) -> Void) {
        var str = String.UnicodeScalarView()
        for k in s..<e { str.append(Unicode.Scalar(t.scalars[k]) ?? "\u{FFFD}") }
        let text = String(str)
        let scalars = text.unicodeScalars
        var index = scalars.startIndex, walked = 0
        func offset(of target: String.Index) -> Int {
            walked += scalars.distance(from: index, to: target)
            index = target
            return walked
        }
        for m in text.matches(of: r) where !m.range.isEmpty {
            let a = offset(of: m.range.lowerBound)
            let b = offset(of: m.range.upperBound)
            emit(s + a, s + b)
        }
    }

    static func normalize(_ s: String, _ n: TokenizerModel.Normalizer) -> String {
        switch n {
        case let .sequence(list): return list.reduce(s) { normalize($0, $1) }
        case .nfc: return s.precomposedStringWithCanonicalMapping
        case .nfd: return s.decomposedStringWithCanonicalMapping
        case .nfkc: return s.precomposedStringWithCompatibilityMapping
        case .nfkd: return s.decomposedStringWithCompatibilityMapping
        case .lowercase: return s.lowercased()
        case let .replace(p, c): return s.replacingOccurrences(of: p, with: c)
        case let .prepend(p): return s.isEmpty ? s : p + s
        case let .strip(l, r):
            var x = Substring(s)
            if l { x = x.drop { $0.isWhitespace } }
            if r { while let last = x.last, last.isWhitespace { x = x.dropLast() } }
            return String(x)
        }
    }
}
