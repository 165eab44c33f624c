/// Splits a template into text, `{{ … }}` and `{% … %}` pieces, with the whitespace rules of the
/// environment transformers renders chat templates in (`trim_blocks=True, lstrip_blocks=True`,
/// `keep_trailing_newline=False`; jinja2's `lexer.py`):
///
/// - line breaks `\r\n` and `\r` become `\n`, and one trailing line break is dropped;
/// - `{%-`, `{{-`, `{#-` strip all whitespace before the tag; `-%}`, `-}}`, `-#}` all after it;
/// - trim_blocks: a block or comment tag eats the one `\n` right after it (not with `+%}`);
/// - lstrip_blocks: spaces and tabs between a line's start and a block or comment tag are dropped
///   (not before `{{`, and not for `{%+`).
struct JinjaLexer {
    enum Piece {
        case text(String)
        case output([JinjaToken], line: Int)
        case statement([JinjaToken], line: Int)
    }

    private let s: [Unicode.Scalar]
    private var pos = 0
    private var line = 1
    /// The last thing read ended with a line break (jinja2's `line_starting`).
    private var lineStarting = true
    private(set) var pieces: [Piece] = []

    init(_ source: String) {
        var chars: [Unicode.Scalar] = []
        chars.reserveCapacity(source.unicodeScalars.count)
        var it = source.unicodeScalars.makeIterator()
        var pendingCR = false
        while let u = it.next() {
            if pendingCR { pendingCR = false; chars.append("\n"); if u == "\n" { continue } }
            if u == "\r" { pendingCR = true } else { chars.append(u) }
        }
        if pendingCR { chars.append("\n") }
        if chars.last == "\n" { chars.removeLast() }
        s = chars
    }

    static func lex(_ source: String) throws -> [Piece] {
        var l = JinjaLexer(source)
        try l.run()
        return l.pieces
    }

    private mutating func run() throws {
        while pos < s.count {
            guard let (start, kind) = nextTagStart() else {
                pieces.append(.text(String(String.UnicodeScalarView(s[pos...]))))
                return
            }
            var text = Array(s[pos..<start])
            let sign = start + 2 < s.count && (s[start + 2] == "-" || s[start + 2] == "+") ? s[start + 2] : nil
            if sign == "-" {
                while let last = text.last, isPythonSpace(last) { text.removeLast() }
            } else if sign != "+" && kind != "{" {
                // lstrip_blocks: only whitespace between the line's start and the tag.
                let lineStart = (text.lastIndex(of: "\n").map { $0 + 1 }) ?? 0
                if (lineStart > 0 || lineStarting) && lineStart < text.count && text[lineStart...].allSatisfy(isPythonSpace) {
                    text.removeSubrange(lineStart...)
                }
            }
            if !text.isEmpty { pieces.append(.text(String(String.UnicodeScalarView(text)))) }
            line += s[pos..<start].filter { $0 == "\n" }.count
            pos = start + 2 + (sign == nil ? 0 : 1)
            switch kind {
            case "#": try comment()
            case "{": try tag(output: true)
            default: try tag(output: false)
            }
        }
    }

    /// The next `{{`, `{%` or `{#` at or after `pos`.
    private func nextTagStart() -> (Int, Unicode.Scalar)? {
        var i = pos
        while i + 1 < s.count {
            if s[i] == "{", s[i + 1] == "{" || s[i + 1] == "%" || s[i + 1] == "#" { return (i, s[i + 1]) }
            i += 1
        }
        return nil
    }

    /// After a tag's closing delimiter: `-` strips all whitespace, trim_blocks one `\n` (blocks and comments).
    private mutating func afterTagEnd(dash: Bool, plus: Bool, trim: Bool) {
        let before = pos
        if dash {
            while pos < s.count && isPythonSpace(s[pos]) { pos += 1 }
        } else if trim && !plus && pos < s.count && s[pos] == "\n" {
            pos += 1
        }
        line += s[before..<pos].filter { $0 == "\n" }.count
        lineStarting = pos > before && s[pos - 1] == "\n"
    }

    private mutating func comment() throws {
        let open = line
        var i = pos
        while i + 1 < s.count && !(s[i] == "#" && s[i + 1] == "}") { i += 1 }
        guard i + 1 < s.count else { throw TemplateError(error: .syntax("missing end of comment tag"), line: open) }
        let dash = i > pos && s[i - 1] == "-", plus = i > pos && s[i - 1] == "+"
        line += s[pos..<i].filter { $0 == "\n" }.count
        pos = i + 2
        afterTagEnd(dash: dash, plus: plus, trim: true)
    }

    /// Reads the tokens of `{{ … }}` or `{% … %}` up to its end delimiter (brackets must balance
    /// first, so `{{ {'a': {}} }}` works as in jinja2); `{% raw %}` takes the text up to `{% endraw %}`.
    private mutating func tag(output: Bool) throws {
        let open = line
        var tokens: [JinjaToken] = []
        var depth = 0
        while true {
            while pos < s.count && isPythonSpace(s[pos]) { if s[pos] == "\n" { line += 1 }; pos += 1 }
            guard pos < s.count else {
                throw TemplateError(error: .syntax("missing end of \(output ? "'{{ … }}'" : "'{% … %}'") tag"), line: open)
            }
            if depth == 0, let (len, dash, plus) = endDelimiter(output: output) {
                pos += len
                if !output, tokens.count == 1, case .name("raw") = tokens[0] { return try raw(open: open, dash: dash, plus: plus) }
                afterTagEnd(dash: dash, plus: plus, trim: !output)
                pieces.append(output ? .output(tokens, line: open) : .statement(tokens, line: open))
                return
            }
            let t: JinjaToken
            do {
                t = try JinjaToken.read(s, &pos, afterDot: tokens.last.map { if case .op(".") = $0 { return true } else { return false } } ?? false)
            } catch let e as JinjaError { throw TemplateError(error: e, line: line) }
            if case .op(let o) = t {
                if "([{".contains(o) {
                    depth += 1
                } else if ")]}".contains(o) {
                    guard depth > 0 else { throw TemplateError(error: .syntax("unexpected '\(o)'"), line: line) }
                    depth -= 1
                }
            }
            if case .string(let str) = t { line += str.unicodeScalars.filter { $0 == "\n" }.count }
            tokens.append(t)
        }
    }

    /// `}}` / `-}}` or `%}` / `-%}` / `+%}` at `pos`: (length, dash, plus).
    private func endDelimiter(output: Bool) -> (Int, Bool, Bool)? {
        let close: Unicode.Scalar = output ? "}" : "%"
        func at(_ i: Int, _ c: Unicode.Scalar) -> Bool { i < s.count && s[i] == c }
        if at(pos, close) && at(pos + 1, "}") { return (2, false, false) }
        if at(pos, "-") && at(pos + 1, close) && at(pos + 2, "}") { return (3, true, false) }
        if !output && at(pos, "+") && at(pos + 1, close) && at(pos + 2, "}") { return (3, false, true) }
        return nil
    }

    /// `{% raw %}…{% endraw %}`: the text in between, verbatim (the endraw tag's own whitespace rules apply).
    private mutating func raw(open: Int, dash: Bool, plus: Bool) throws {
        if dash { while pos < s.count && isPythonSpace(s[pos]) { if s[pos] == "\n" { line += 1 }; pos += 1 } }
        var i = pos
        while i + 1 < s.count {
            if s[i] == "{" && s[i + 1] == "%" {
                var j = i + 2
                let sign = j < s.count && (s[j] == "-" || s[j] == "+") ? s[j] : nil
                if sign != nil { j += 1 }
                while j < s.count && isPythonSpace(s[j]) { j += 1 }
                if Array(s[j..<min(j + 6, s.count)]) == Array("endraw".unicodeScalars) {
                    var k = j + 6
                    while k < s.count && isPythonSpace(s[k]) { k += 1 }
                    let saved = pos
                    pos = k
                    if let (len, d, p) = endDelimiter(output: false) {
                        var text = Array(s[saved..<i])
                        if sign == "-" { while let last = text.last, isPythonSpace(last) { text.removeLast() } }
                        pieces.append(.text(String(String.UnicodeScalarView(text))))
                        line += s[saved..<k].filter { $0 == "\n" }.count
                        pos = k + len
                        afterTagEnd(dash: d, plus: p, trim: true)
                        return
                    }
                    pos = saved
                }
            }
            i += 1
        }
        throw TemplateError(error: .syntax("missing end of raw directive"), line: open)
    }
}

/// Python's `str.isspace` for one character (what `\s` and `str.strip()` use).
func isPythonSpace(_ u: Unicode.Scalar) -> Bool {
    u.properties.isWhitespace || (0x1C...0x1F).contains(u.value)
}

/// Python's `str.isalpha` for one character: a letter (categories Lu, Ll, Lt, Lm, Lo).
func isPythonAlpha(_ u: Unicode.Scalar) -> Bool {
    switch u.properties.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
    default: return false
    }
}

/// One token inside a tag.
enum JinjaToken: Equatable {
    case name(String)
    case string(String)
    case int(Int)
    case double(Double)
    case op(String)

    static let operators = [
        "//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=",
        "(", ")", "[", "]", "{", "}", ",", ".", ":", "|",
    ]

    /// Reads one token at `pos` (whitespace already skipped). After a `.`, digits are an attribute
    /// index (`x.0`), never a float.
    static func read(_ s: [Unicode.Scalar], _ pos: inout Int, afterDot: Bool) throws -> JinjaToken {
        let c = s[pos]
        if c == "_" || c.properties.isXIDStart {
            let start = pos
            while pos < s.count && (s[pos] == "_" || s[pos].properties.isXIDContinue) { pos += 1 }
            return .name(String(String.UnicodeScalarView(s[start..<pos])))
        }
        if ("0"..."9").contains(c) { return try number(s, &pos, afterDot: afterDot) }
        if c == "'" || c == "\"" { return .string(try string(s, &pos)) }
        for o in operators {
            let u = Array(o.unicodeScalars)
            if pos + u.count <= s.count && Array(s[pos..<(pos + u.count)]) == u { pos += u.count; return .op(o) }
        }
        throw JinjaError.syntax("unexpected character \(String(c).debugDescription)")
    }

    private static func digits(_ s: [Unicode.Scalar], _ pos: inout Int) -> String {
        var out = ""
        while pos < s.count && (("0"..."9").contains(s[pos]) || (s[pos] == "_" && pos + 1 < s.count && ("0"..."9").contains(s[pos + 1]))) {
            if s[pos] != "_" { out.unicodeScalars.append(s[pos]) }
            pos += 1
        }
        return out
    }

    private static func number(_ s: [Unicode.Scalar], _ pos: inout Int, afterDot: Bool) throws -> JinjaToken {
        var text = digits(s, &pos)
        var isFloat = false
        if !afterDot && pos + 1 < s.count && s[pos] == "." && ("0"..."9").contains(s[pos + 1]) {
            pos += 1
            text += "." + digits(s, &pos)
            isFloat = true
        }
        if !afterDot && pos < s.count && (s[pos] == "e" || s[pos] == "E") {
            var p = pos + 1
            var exp = "e"
            if p < s.count && (s[p] == "+" || s[p] == "-") { exp.unicodeScalars.append(s[p]); p += 1 }
            if p < s.count && ("0"..."9").contains(s[p]) {
                pos = p
                text += exp + digits(s, &pos)
                isFloat = true
            }
        }
        if isFloat { return .double(Double(text)!) }
        guard let i = Int(text) else { throw JinjaError.syntax("integer \(text) is too large") }
        return .int(i)
    }

    /// A string literal with Python's escapes (`\n`, `\t`, `\\`, `\'`, `\xHH`, `\uHHHH`, `\UHHHHHHHH`,
    /// octal); an unknown escape keeps its backslash, as Python's `unicode-escape` does.
    private static func string(_ s: [Unicode.Scalar], _ pos: inout Int) throws -> String {
        let quote = s[pos]
        pos += 1
        var out = String.UnicodeScalarView()
        while pos < s.count && s[pos] != quote {
            var c = s[pos]
            pos += 1
            guard c == "\\", pos < s.count else { out.append(c); continue }
            c = s[pos]
            pos += 1
            switch c {
            case "n": out.append("\n")
            case "t": out.append("\t")
            case "r": out.append("\r")
            case "\\", "'", "\"": out.append(c)
            case "a": out.append("\u{07}")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "v": out.append("\u{0B}")
            case "\n": break
            case "x", "u", "U":
                let n = c == "x" ? 2 : c == "u" ? 4 : 8
                guard pos + n <= s.count, let v = UInt32(String(String.UnicodeScalarView(s[pos..<(pos + n)])), radix: 16),
                    let u = Unicode.Scalar(v)
                else { throw JinjaError.syntax("invalid \\\(c) escape in a string") }
                out.append(u)
                pos += n
            case "0"..."7":
                var v = c.value - 48, k = 1
                while k < 3 && pos < s.count && ("0"..."7").contains(s[pos]) { v = v * 8 + s[pos].value - 48; pos += 1; k += 1 }
                out.append(Unicode.Scalar(v)!)
            default: out.append("\\"); out.append(c)
            }
        }
        guard pos < s.count else { throw JinjaError.syntax("unterminated string") }
        pos += 1
        return String(out)
    }
}
