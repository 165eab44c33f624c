/// Unicode character classes used by the pre-tokenizer patterns (`\p{L}`, `\p{N}`, `\p{P}`,
/// `\p{S}`, `\p{M}`, `\s`), as a bit set per scalar. From the Unicode data of the Swift
/// standard library; `\s` is the White_Space property (as Oniguruma and Python `regex` use it).
enum UnicodeClass {
    static let letter: UInt8 = 1, number: UInt8 = 2, punctuation: UInt8 = 4, symbol: UInt8 = 8, mark: UInt8 = 16, space: UInt8 = 32

    /// Classes of U+0000..U+FFFF, computed once.
    static let bmp: [UInt8] = (0..<0x10000).map { v in Unicode.Scalar(UInt32(v)).map(compute) ?? 0 }

    @inline(__always)
    static func of(_ v: UInt32) -> UInt8 {
        v < 0x10000 ? bmp[Int(v)] : (Unicode.Scalar(v).map(compute) ?? 0)
    }

    static func compute(_ u: Unicode.Scalar) -> UInt8 {
        var c: UInt8 = 0
        switch u.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: c = letter
        case .decimalNumber, .letterNumber, .otherNumber: c = number
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
             .finalPunctuation, .otherPunctuation: c = punctuation
        case .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol: c = symbol
        case .nonspacingMark, .spacingMark, .enclosingMark: c = mark
        default: c = 0
        }
        if u.properties.isWhitespace { c |= space }
        return c
    }
}
