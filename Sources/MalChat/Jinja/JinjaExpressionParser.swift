/// Expressions inside one tag, with jinja2's precedence (see `JinjaParser`).
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
            } else {
                break
            }
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
        if accept(.op("-")) {
            e = .negate(try unary(filters: false), line: line)
        } else if accept(.op("+")) {
            e = .plus(try unary(filters: false), line: line)
        } else {
            e = try primary()
        }
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
            while case .string(let more) = peek { s += more; i += 1 }  // adjacent literals join
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
            } else {
                return e
            }
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
            } else {
                return e
            }
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
