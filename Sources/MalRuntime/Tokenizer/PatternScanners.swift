/// Hand-written matchers for the pre-tokenizer regexes of GPT-2, Llama 3 and DeepSeek-V3
/// (the patterns of their `tokenizer.json` files), with the exact leftmost-first alternation and
/// backtracking semantics of the regex engines HF uses (including `\s+(?!\S)`). Recognised by
/// the pattern text; any other pattern goes to the general regex path.
///
/// A scanner reports the matches in `[start, end)` of a scalar array; the `Split` logic turns
/// matches and the gaps between them into pieces.
struct ScalarText {
    let scalars: [UInt32]
    let classes: [UInt8]
    var count: Int { scalars.count }

    @inline(__always) func isL(_ i: Int) -> Bool { classes[i] & UnicodeClass.letter != 0 }
    @inline(__always) func isN(_ i: Int) -> Bool { classes[i] & UnicodeClass.number != 0 }
    @inline(__always) func isS(_ i: Int) -> Bool { classes[i] & UnicodeClass.space != 0 }
    @inline(__always) func isCRLF(_ i: Int) -> Bool { scalars[i] == 0x0D || scalars[i] == 0x0A }
}

enum PatternScanner {
    case gpt2, llama3, deepseekDigits, deepseekCJK, deepseekMain

    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let deepseekDigitsPattern = #"\p{N}{1,3}"#
    static let deepseekCJKPattern = "[一-龥\u{3040}-ゟ゠-ヿ]+"
    static let deepseekMainPattern =
        "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"

    init?(pattern: String) {
        switch pattern {
        case PatternScanner.gpt2Pattern: self = .gpt2
        case PatternScanner.llama3Pattern: self = .llama3
        case PatternScanner.deepseekDigitsPattern: self = .deepseekDigits
        case PatternScanner.deepseekCJKPattern: self = .deepseekCJK
        case PatternScanner.deepseekMainPattern: self = .deepseekMain
        default: return nil
        }
    }

    /// Calls `emit(start, end)` for each match in [from, to), left to right.
    func matches(_ t: ScalarText, _ from: Int, _ to: Int, _ emit: (Int, Int) -> Void) {
        var i = from
        while i < to {
            if let e = matchAt(t, i, to) { emit(i, e); i = e } else { i += 1 }
        }
    }

    /// End of the match starting at `i`, or nil.
    @inline(__always)
    func matchAt(_ t: ScalarText, _ i: Int, _ to: Int) -> Int? {
        switch self {
        case .gpt2: return gpt2(t, i, to)
        case .llama3: return llama3(t, i, to)
        case .deepseekDigits:
            var j = i
            while j < to && j - i < 3 && t.isN(j) { j += 1 }
            return j > i ? j : nil
        case .deepseekCJK:
            var j = i
            while j < to && PatternScanner.isCJK(t.scalars[j]) { j += 1 }
            return j > i ? j : nil
        case .deepseekMain: return deepseekMain(t, i, to)
        }
    }

    static func isCJK(_ v: UInt32) -> Bool {
        (0x4E00...0x9FA5).contains(v) || (0x3040...0x309F).contains(v) || (0x30A0...0x30FF).contains(v)
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d`, optionally case-insensitive. Oniguruma's case folding for these
    /// letters (asked of HF tokenizers for every scalar: `Tests/Unicode`) is ASCII case plus
    /// U+017F LATIN SMALL LETTER LONG S, which folds to `s`.
    @inline(__always)
    static func contraction(_ t: ScalarText, _ i: Int, _ to: Int, caseInsensitive: Bool) -> Int? {
        guard t.scalars[i] == 0x27, i + 1 < to else { return nil }
        func c(_ k: Int) -> UInt32 {
            guard k < to else { return 0 }
            let v = t.scalars[k]
            guard caseInsensitive else { return v }
            return v >= 0x41 && v <= 0x5A ? v + 32 : v == 0x17F ? 0x73 : v
        }
        switch c(i + 1) {
        case 0x73, 0x74, 0x6D, 0x64: return i + 2  // s t m d
        case 0x72: return c(i + 2) == 0x65 ? i + 3 : nil  // re
        case 0x76: return c(i + 2) == 0x65 ? i + 3 : nil  // ve
        case 0x6C: return c(i + 2) == 0x6C ? i + 3 : nil  // ll
        default: return nil
        }
    }

    /// `\s+(?!\S)|\s+` at a whitespace scalar: the run minus its last scalar when a non-space
    /// follows (that scalar then leads the next piece), unless the run is a single scalar.
    @inline(__always)
    static func spaceRun(_ t: ScalarText, _ i: Int, _ to: Int) -> Int {
        var j = i
        while j < to && t.isS(j) { j += 1 }
        if j < to && j - i > 1 { return j - 1 }
        return j
    }

    func gpt2(_ t: ScalarText, _ i: Int, _ to: Int) -> Int? {
        if let e = PatternScanner.contraction(t, i, to, caseInsensitive: false) { return e }
        let sp = t.scalars[i] == 0x20
        let k = sp && i + 1 < to ? i + 1 : i
        if t.isL(k) && (k == i || sp) {
            var j = k + 1
            while j < to && t.isL(j) { j += 1 }
            return j
        }
        if t.isN(k) && (k == i || sp) {
            var j = k + 1
            while j < to && t.isN(j) { j += 1 }
            return j
        }
        func other(_ x: Int) -> Bool { t.classes[x] & (UnicodeClass.space | UnicodeClass.letter | UnicodeClass.number) == 0 }
        if other(k) && (k == i || sp) {
            var j = k + 1
            while j < to && other(j) { j += 1 }
            return j
        }
        if t.isS(i) { return PatternScanner.spaceRun(t, i, to) }
        return nil
    }

    func llama3(_ t: ScalarText, _ i: Int, _ to: Int) -> Int? {
        if let e = PatternScanner.contraction(t, i, to, caseInsensitive: true) { return e }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if t.isL(i) {
            var j = i + 1
            while j < to && t.isL(j) { j += 1 }
            return j
        }
        if !t.isCRLF(i) && !t.isN(i) && i + 1 < to && t.isL(i + 1) {
            var j = i + 2
            while j < to && t.isL(j) { j += 1 }
            return j
        }
        // \p{N}{1,3}
        if t.isN(i) {
            var j = i + 1
            while j < to && j - i < 3 && t.isN(j) { j += 1 }
            return j
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        func other(_ x: Int) -> Bool { t.classes[x] & (UnicodeClass.space | UnicodeClass.letter | UnicodeClass.number) == 0 }
        let k = t.scalars[i] == 0x20 && i + 1 < to ? i + 1 : i
        if other(k) {
            var j = k + 1
            while j < to && other(j) { j += 1 }
            while j < to && t.isCRLF(j) { j += 1 }
            return j
        }
        if t.isS(i) { return PatternScanner.newlineOrSpaceRun(t, i, to) }
        return nil
    }

    /// `\s*[\r\n]+|\s+(?!\S)|\s+` at a whitespace scalar.
    @inline(__always)
    static func newlineOrSpaceRun(_ t: ScalarText, _ i: Int, _ to: Int) -> Int {
        var j = i
        var lastNL = -1
        while j < to && t.isS(j) {
            if t.isCRLF(j) { lastNL = j }
            j += 1
        }
        if lastNL >= 0 { return lastNL + 1 }
        return spaceRun(t, i, to)
    }

    func deepseekMain(_ t: ScalarText, _ i: Int, _ to: Int) -> Int? {
        let v = t.scalars[i]
        func asciiLetter(_ x: Int) -> Bool { let s = t.scalars[x]; return (s >= 0x41 && s <= 0x5A) || (s >= 0x61 && s <= 0x7A) }
        // [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+
        if v < 0x80, PatternScanner.asciiPunct(v), i + 1 < to, asciiLetter(i + 1) {
            var j = i + 2
            while j < to && asciiLetter(j) { j += 1 }
            return j
        }
        // [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
        func lm(_ x: Int) -> Bool { t.classes[x] & (UnicodeClass.letter | UnicodeClass.mark) != 0 }
        let notLPS = !t.isCRLF(i) && t.classes[i] & (UnicodeClass.letter | UnicodeClass.punctuation | UnicodeClass.symbol) == 0
        if notLPS && i + 1 < to && lm(i + 1) {
            var j = i + 2
            while j < to && lm(j) { j += 1 }
            return j
        }
        if lm(i) {
            var j = i + 1
            while j < to && lm(j) { j += 1 }
            return j
        }
        // ` ?[\p{P}\p{S}]+[\r\n]*`
        func ps(_ x: Int) -> Bool { t.classes[x] & (UnicodeClass.punctuation | UnicodeClass.symbol) != 0 }
        let k = v == 0x20 && i + 1 < to ? i + 1 : i
        if ps(k) {
            var j = k + 1
            while j < to && ps(j) { j += 1 }
            while j < to && t.isCRLF(j) { j += 1 }
            return j
        }
        if t.isS(i) { return PatternScanner.newlineOrSpaceRun(t, i, to) }
        return nil
    }

    static func asciiPunct(_ v: UInt32) -> Bool {
        (0x21...0x2F).contains(v) || (0x3A...0x40).contains(v) || (0x5B...0x60).contains(v) || (0x7B...0x7E).contains(v)
    }
}
