/// Parses the lexer's pieces into statements, and the tokens of one tag into an expression, with
/// jinja2's grammar and precedence (`parser.py`): conditional < `or` < `and` < `not` < comparisons
/// (`==`, `in`, `not in` …) < `+ -` < `~` < `* / // %` < `**` < unary `- +` < postfix (`.a`, `[i]`,
/// `(…)`) and then filters (`|f`) and tests (`is t`), so `'a' + x | trim` trims `x` alone.
struct JinjaParser {
    private var pieces: [JinjaLexer.Piece]
    private var index = 0

    static func parse(_ source: String) throws -> [Node] {
        var p = JinjaParser(pieces: try JinjaLexer.lex(source))
        let (nodes, end) = try p.nodes(until: [])
        if let end { throw TemplateError(error: .syntax("unexpected '{% \(end.name) %}'"), line: end.line) }
        return nodes
    }

    private init(pieces: [JinjaLexer.Piece]) { self.pieces = pieces }

    /// A statement tag that ended a body: its keyword, its line and the parser of its other tokens.
    private struct EndTag {
        let name: String
        let line: Int
        var rest: TokenParser
    }

    /// Statements up to one of the keywords in `ends` (nil at the template's end).
    private mutating func nodes(until ends: Set<String>) throws -> ([Node], EndTag?) {
        var out: [Node] = []
        while index < pieces.count {
            let piece = pieces[index]
            index += 1
            switch piece {
            case .text(let t): out.append(.text(t))
            case .output(let tokens, let line):
                var tp = TokenParser(tokens, line: line)
                let e = try tp.expression()
                try tp.expectEnd()
                out.append(.output(e, line: line))
            case .statement(let tokens, let line):
                var tp = TokenParser(tokens, line: line)
                guard case .name(let keyword) = tp.next() else {
                    throw TemplateError(error: .syntax("a '{% %}' tag must start with a statement name"), line: line)
                }
                if ends.contains(keyword) { return (out, EndTag(name: keyword, line: line, rest: tp)) }
                if keyword.hasPrefix("end") || keyword == "elif" || keyword == "else" {
                    let expected = ends.isEmpty ? "" : " (expected " + ends.sorted().map { "'{% \($0) %}'" }.joined(separator: " or ") + ")"
                    throw TemplateError(error: .syntax("unexpected '{% \(keyword) %}'\(expected)"), line: line)
                }
                out.append(try statement(keyword, &tp, line: line))
            }
        }
        if !ends.isEmpty {
            throw TemplateError(error: .syntax("the template ended inside a block (expected \(ends.sorted().map { "'{% \($0) %}'" }.joined(separator: " or ")))"),
                                line: lastLine)
        }
        return (out, nil)
    }

    private var lastLine: Int {
        for p in pieces.reversed() {
            switch p {
            case .output(_, let l), .statement(_, let l): return l
            case .text: continue
            }
        }
        return 1
    }

    private mutating func statement(_ keyword: String, _ tp: inout TokenParser, line: Int) throws -> Node {
        switch keyword {
        case "if":
            var branches: [(Expr, [Node])] = []
            var cond = try tp.expression()
            try tp.expectEnd()
            while true {
                let (body, end) = try nodes(until: ["elif", "else", "endif"])
                branches.append((cond, body))
                guard var end else { fatalError("unreachable: nodes(until:) throws at the end") }
                switch end.name {
                case "elif":
                    cond = try end.rest.expression()
                    try end.rest.expectEnd()
                case "else":
                    try end.rest.expectEnd()
                    let (otherwise, last) = try nodes(until: ["endif"])
                    try last!.rest.expectEnd()
                    return .ifChain(branches, otherwise: otherwise, line: line)
                default:
                    try end.rest.expectEnd()
                    return .ifChain(branches, otherwise: [], line: line)
                }
            }
        case "for":
            let targets = try tp.nameList()
            try tp.expectName("in")
            let iterable = try tp.tuple(conditional: false)
            var filter: Expr?
            if tp.acceptName("if") { filter = try tp.expression() }
            if tp.acceptName("recursive") { throw TemplateError(error: .unsupported("recursive for loops"), line: line) }
            try tp.expectEnd()
            let (body, end) = try nodes(until: ["else", "endfor"])
            var otherwise: [Node] = []
            if let end, end.name == "else" {
                try end.rest.expectEnd()
                let (o, last) = try nodes(until: ["endfor"])
                try last!.rest.expectEnd()
                otherwise = o
            } else if let end { try end.rest.expectEnd() }
            return .forLoop(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise, line: line)
        case "set":
            let first = try tp.identifier()
            var target = SetTarget.name(first)
            if tp.accept(.op(".")) {
                target = .attribute(first, try tp.identifier())
            } else if tp.peek == .op(",") {
                var names = [first]
                while tp.accept(.op(",")) { if tp.peek == .op("=") { break }; names.append(try tp.identifier()) }
                target = .names(names)
            }
            if tp.accept(.op("=")) {
                let value = try tp.tuple(conditional: true)
                try tp.expectEnd()
                return .set(target, value, line: line)
            }
            guard case .name(let name) = target else {
                throw TemplateError(error: .syntax("a block '{% set %}' assigns one name"), line: line)
            }
            var filters: [(String, Arguments)] = []
            while tp.accept(.op("|")) { filters.append(try tp.filterCall()) }
            try tp.expectEnd()
            let (body, end) = try nodes(until: ["endset"])
            try end!.rest.expectEnd()
            return .setBlock(name, body, filters: filters, line: line)
        case "macro":
            let name = try tp.identifier()
            try tp.expect(.op("("))
            var parameters: [(String, Expr?)] = []
            while !tp.accept(.op(")")) {
                if !parameters.isEmpty { try tp.expect(.op(",")); if tp.accept(.op(")")) { break } }
                let p = try tp.identifier()
                parameters.append((p, tp.accept(.op("=")) ? try tp.expression() : nil))
            }
            try tp.expectEnd()
            let (body, end) = try nodes(until: ["endmacro"])
            var rest = end!.rest
            _ = rest.acceptName(name)
            try rest.expectEnd()
            return .macro(name: name, parameters: parameters, body: body, line: line)
        case "filter":
            var filters = [try tp.filterCall()]
            while tp.accept(.op("|")) { filters.append(try tp.filterCall()) }
            try tp.expectEnd()
            let (body, end) = try nodes(until: ["endfilter"])
            try end!.rest.expectEnd()
            return .filterBlock(filters, body, line: line)
        case "generation":
            // transformers' AssistantTracker tag: marks assistant text for masks, renders its body.
            try tp.expectEnd()
            let (body, end) = try nodes(until: ["endgeneration"])
            try end!.rest.expectEnd()
            return .ifChain([(.literal(.bool(true)), body)], otherwise: [], line: line)
        case "break":
            try tp.expectEnd()
            return .breakLoop(line: line)
        case "continue":
            try tp.expectEnd()
            return .continueLoop(line: line)
        case "include", "import", "from", "extends", "block", "call", "with", "do", "autoescape", "trans":
            throw TemplateError(error: .unsupported("the '{% \(keyword) %}' statement (chat templates are single files; "
                                                    + "supported: if, for, set, macro, filter, break, continue, raw, generation)"), line: line)
        default:
            throw TemplateError(error: .syntax("unknown statement '\(keyword)'"), line: line)
        }
    }
}

/// The tokens of one tag, read by recursive descent.
struct TokenParser {
    private let tokens: [JinjaToken]
    private var i = 0
    let line: Int

    init(_ tokens: [JinjaToken], line: Int) {
        self.tokens = tokens
        self.line = line
    }

    var peek: JinjaToken? { i < tokens.count ? tokens[i] : nil }
    private var peek2: JinjaToken? { i + 1 < tokens.count ? tokens[i + 1] : nil }
    mutating func next() -> JinjaToken? { defer { i += 1 }; return peek }

    func fail(_ m: String) -> TemplateError { TemplateError(error: .syntax(m), line: line) }

    mutating func accept(_ t: JinjaToken) -> Bool {
        if peek == t { i += 1; return true }
        return false
    }
    mutating func acceptName(_ n: String) -> Bool { accept(.name(n)) }
    mutating func expect(_ t: JinjaToken) throws {
        guard accept(t) else { throw fail("expected \(describe(t)), found \(peek.map(describe) ?? "the end of the tag")") }
    }
    mutating func expectName(_ n: String) throws { try expect(.name(n)) }
    func expectEnd() throws {
        if let t = peek { throw fail("unexpected \(describe(t))") }
    }
    mutating func identifier() throws -> String {
        guard case .name(let n) = peek else { throw fail("expected a name, found \(peek.map(describe) ?? "the end of the tag")") }
        i += 1
        return n
    }

    func describe(_ t: JinjaToken) -> String {
        switch t {
        case .name(let n): return "'\(n)'"
        case .string(let s): return "string \(s.debugDescription)"
        case .int(let v): return "\(v)"
        case .double(let v): return "\(v)"
        case .op(let o): return "'\(o)'"
        }
    }

    /// `a` or `a, b` (for-loop targets, parenthesised or not).
    mutating func nameList() throws -> [String] {
        let paren = accept(.op("("))
        var names = [try identifier()]
        while accept(.op(",")) {
            if case .name = peek { names.append(try identifier()) } else { break }
        }
        if paren { try expect(.op(")")) }
        return names
    }

    /// An expression, or a tuple of them without brackets (`{% set a = 1, 2 %}`, `for x in a, b`).
    mutating func tuple(conditional: Bool) throws -> Expr {
        let first = conditional ? try expression() : try orExpr()
        guard peek == .op(",") else { return first }
        var items = [first]
        while accept(.op(",")) {
            guard let t = peek, t != .name("if"), t != .op(")") else { break }
            items.append(conditional ? try expression() : try orExpr())
        }
        return .tuple(items)
    }

    mutating func expression() throws -> Expr {
        let value = try orExpr()
        guard acceptName("if") else { return value }
        let condition = try orExpr()
        let otherwise = acceptName("else") ? try expression() : nil
        return .conditional(then: value, condition: condition, otherwise: otherwise)
    }

    private mutating func orExpr() throws -> Expr {
        var e = try andExpr()
        while acceptName("or") { e = .or(e, try andExpr()) }
        return e
    }

    private mutating func andExpr() throws -> Expr {
        var e = try notExpr()
        while acceptName("and") { e = .and(e, try notExpr()) }
        return e
    }

    private mutating func notExpr() throws -> Expr {
        if acceptName("not") { return .not(try notExpr()) }
        return try comparison()
    }

    private mutating func comparison() throws -> Expr {
        let first = try sum()
        var rest: [(String, Expr)] = []
        while true {
            if case .op(let o) = peek, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                i += 1
                rest.append((o, try sum()))
            } else if acceptName("in") {
                rest.append(("in", try sum()))
            } else if peek == .name("not"), peek2 == .name("in") {
                i += 2
                rest.append(("not in", try sum()))
            } else { break }
        }
        return rest.isEmpty ? first : .compare(first, rest, line: line)
    }

    private mutating func sum() throws -> Expr {
        var e = try concat()
        while case .op(let o) = peek, o == "+" || o == "-" {
            i += 1
            e = .binary(o, e, try concat(), line: line)
        }
        return e
    }

    private mutating func concat() throws -> Expr {
        var e = try product()
        while accept(.op("~")) { e = .binary("~", e, try product(), line: line) }
        return e
    }

    private mutating func product() throws -> Expr {
        var e = try power()
        while case .op(let o) = peek, ["*", "/", "//", "%"].contains(o) {
            i += 1
            e = .binary(o, e, try power(), line: line)
        }
        return e
    }

    private mutating func power() throws -> Expr {
        var e = try unary(filters: true)
        while accept(.op("**")) { e = .binary("**", e, try unary(filters: true), line: line) }
        return e
    }

    private mutating func unary(filters: Bool) throws -> Expr {
        var e: Expr
        if accept(.op("-")) { e = .negate(try unary(filters: false), line: line) }
        else if accept(.op("+")) { e = .plus(try unary(filters: false), line: line) }
        else { e = try primary() }
        e = try postfix(e)
        return filters ? try filtersAndTests(e) : e
    }

    private mutating func primary() throws -> Expr {
        guard let t = next() else { throw fail("expected an expression, found the end of the tag") }
        switch t {
        case .name(let n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n, line: line)
            }
        case .string(var s):
            while case .string(let more) = peek { s += more; i += 1 }   // adjacent literals join
            return .literal(.string(s))
        case .int(let v): return .literal(.int(v))
        case .double(let v): return .literal(.double(v))
        case .op("("):
            if accept(.op(")")) { return .tuple([]) }
            let e = try tuple(conditional: true)
            try expect(.op(")"))
            return e
        case .op("["):
            var items: [Expr] = []
            while !accept(.op("]")) {
                if !items.isEmpty { try expect(.op(",")); if accept(.op("]")) { break } }
                items.append(try expression())
            }
            return .list(items)
        case .op("{"):
            var pairs: [(Expr, Expr)] = []
            while !accept(.op("}")) {
                if !pairs.isEmpty { try expect(.op(",")); if accept(.op("}")) { break } }
                let k = try expression()
                try expect(.op(":"))
                pairs.append((k, try expression()))
            }
            return .dict(pairs)
        default:
            throw fail("unexpected \(describe(t))")
        }
    }

    private mutating func postfix(_ base: Expr) throws -> Expr {
        var e = base
        while true {
            if accept(.op(".")) {
                switch next() {
                case .name(let n)?: e = .attribute(e, n, line: line)
                case .int(let v)?: e = .item(e, .literal(.int(v)), line: line)
                default: throw fail("expected an attribute name after '.'")
                }
            } else if accept(.op("[")) {
                e = try subscriptExpr(e)
            } else if peek == .op("(") {
                i += 1
                e = .call(e, try arguments(), line: line)
            } else { return e }
        }
    }

    /// `[i]` or a slice `[a:b:c]` (each part optional).
    private mutating func subscriptExpr(_ base: Expr) throws -> Expr {
        var parts: [Expr?] = [nil]
        var colons = 0
        while !accept(.op("]")) {
            if accept(.op(":")) { colons += 1; parts.append(nil); continue }
            guard parts[parts.count - 1] == nil else { throw fail("expected ']' or ':' in a subscript") }
            parts[parts.count - 1] = try expression()
        }
        if colons == 0 {
            guard let index = parts[0] else { throw fail("empty subscript") }
            return .item(base, index, line: line)
        }
        guard colons <= 2 else { throw fail("a slice has at most two ':'") }
        while parts.count < 3 { parts.append(nil) }
        return .slice(base, parts[0], parts[1], parts[2], line: line)
    }

    /// Call arguments after `(`: positional, then `name=value`.
    private mutating func arguments() throws -> Arguments {
        var a = Arguments()
        while !accept(.op(")")) {
            if !a.positional.isEmpty || !a.keywords.isEmpty { try expect(.op(",")); if accept(.op(")")) { break } }
            if case .name(let n) = peek, peek2 == .op("=") {
                i += 2
                a.keywords.append((n, try expression()))
            } else {
                guard a.keywords.isEmpty else { throw fail("a positional argument follows a keyword argument") }
                a.positional.append(try expression())
            }
        }
        return a
    }

    /// A filter's name (dotted names are not supported) and its arguments.
    mutating func filterCall() throws -> (String, Arguments) {
        let name = try identifier()
        if accept(.op("(")) { return (name, try arguments()) }
        return (name, Arguments())
    }

    private mutating func filtersAndTests(_ base: Expr) throws -> Expr {
        var e = base
        while true {
            if accept(.op("|")) {
                let (name, args) = try filterCall()
                e = .filter(e, name, args, line: line)
            } else if acceptName("is") {
                let negated = acceptName("not")
                let name = try identifier()
                var args = Arguments()
                if accept(.op("(")) {
                    args = try arguments()
                } else if let t = peek, startsTestArgument(t) {
                    // `x is divisibleby 3`, `x is sameas none`: one argument without parentheses.
                    args.positional = [try postfix(try primary())]
                }
                e = .test(e, name, args, negated: negated, line: line)
            } else if peek == .op("(") {
                i += 1
                e = .call(e, try arguments(), line: line)
            } else { return e }
        }
    }

    private func startsTestArgument(_ t: JinjaToken) -> Bool {
        switch t {
        case .name(let n): return !["else", "or", "and", "if", "in", "not", "is"].contains(n)
        case .string, .int, .double: return true
        case .op(let o): return o == "[" || o == "{"
        }
    }
}
