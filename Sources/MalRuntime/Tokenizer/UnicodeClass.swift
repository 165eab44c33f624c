/// Unicode character classes used by the pre-tokenizer patterns (`\p{L}`, `\p{N}`, `\p{P}`,
/// `\p{S}`, `\p{M}`, `\s`), as a bit set per scalar. The classes are HF tokenizers' own, pinned in
/// `UnicodeClassTable` (generated from the oracle by `Tests/Unicode/make_unicode_classes.py`),
/// not the Unicode data of the Swift runtime: a newer runtime knows characters the oracle treats
/// as unassigned, and tokens would differ.
enum UnicodeClass {
    static let letter: UInt8 = 1, number: UInt8 = 2, punctuation: UInt8 = 4, symbol: UInt8 = 8, mark: UInt8 = 16, space: UInt8 = 32

    /// Classes of U+0000..U+FFFF; the rest by binary search in `astral`.
    static let bmp: [UInt8] = {
        var t = [UInt8](repeating: 0, count: 0x10000)
        for (bit, ranges) in tables {
            for k in stride(from: 0, to: ranges.count, by: 2) where ranges[k] < 0x10000 {
                for v in ranges[k]...min(ranges[k + 1], 0xFFFF) { t[Int(v)] |= bit }
            }
        }
        return t
    }()

    /// Ranges above U+FFFF: (lo, hi, classes), sorted and disjoint per class.
    static let astral: [(UInt32, UInt32, UInt8)] = {
        var out: [(UInt32, UInt32, UInt8)] = []
        for (bit, ranges) in tables {
            for k in stride(from: 0, to: ranges.count, by: 2) where ranges[k + 1] >= 0x10000 {
                out.append((max(ranges[k], 0x10000), ranges[k + 1], bit))
            }
        }
        return out.sorted { $0.0 < $1.0 }
    }()

    static let tables: [(UInt8, [UInt32])] = [
        (letter, UnicodeClassTable.letter), (number, UnicodeClassTable.number),
        (punctuation, UnicodeClassTable.punctuation), (symbol, UnicodeClassTable.symbol),
        (mark, UnicodeClassTable.mark), (space, UnicodeClassTable.space),
    ]

    @inline(__always)
    static func of(_ v: UInt32) -> UInt8 {
        v < 0x10000 ? bmp[Int(v)] : astralClass(v)
    }

    static func astralClass(_ v: UInt32) -> UInt8 {
        // The ranges of different classes never overlap, so the last range starting at or before
        // v is the only candidate.
        var lo = 0, hi = astral.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if astral[mid].0 <= v { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0, astral[lo - 1].1 >= v else { return 0 }
        return astral[lo - 1].2
    }
}
