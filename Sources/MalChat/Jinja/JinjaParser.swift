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
            throw TemplateError(
                error: .syntax("the template ended inside a block (expected \(ends.sorted().map { "'{% \($0) %}'" }.joined(separator: " or ")))"),
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

    /// The statement a `{% keyword … %}` tag opens. Long because it is the statement table: one
    /// case per keyword, each parsing its own tag and body.
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
            } else if let end {
                try end.rest.expectEnd()
            }
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
            throw TemplateError(
                error: .unsupported(
                    "the '{% \(keyword) %}' statement (chat templates are single files; "
                        + "supported: if, for, set, macro, filter, break, continue, raw, generation)"), line: line)
        default:
            throw TemplateError(error: .syntax("unknown statement '\(keyword)'"), line: line)
        }
    }
}
