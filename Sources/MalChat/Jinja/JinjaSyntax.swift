/// The parsed form of a template: statements (`Node`) holding expressions (`Expr`), each with the
/// template line it starts on.
indirect enum Expr {
    case literal(JinjaValue)
    case name(String, line: Int)
    case list([Expr])
    case tuple([Expr])
    case dict([(Expr, Expr)])
    case attribute(Expr, String, line: Int)
    case item(Expr, Expr, line: Int)
    case slice(Expr, Expr?, Expr?, Expr?, line: Int)
    case call(Expr, Arguments, line: Int)
    case filter(Expr, String, Arguments, line: Int)
    case test(Expr, String, Arguments, negated: Bool, line: Int)
    case negate(Expr, line: Int)
    case plus(Expr, line: Int)
    case not(Expr)
    case and(Expr, Expr)
    case or(Expr, Expr)
    /// `a + b`, `a ~ b`, `a // b` …
    case binary(String, Expr, Expr, line: Int)
    /// `a < b <= c`: Python's chained comparison (`in` and `not in` too).
    case compare(Expr, [(String, Expr)], line: Int)
    /// `a if cond else b` (no `else`: undefined).
    case conditional(then: Expr, condition: Expr, otherwise: Expr?)
}

struct Arguments {
    var positional: [Expr] = []
    var keywords: [(String, Expr)] = []
}

/// Where `{% set … %}` stores: a name, a namespace attribute, or names unpacked from a sequence.
enum SetTarget {
    case name(String)
    case attribute(String, String)
    case names([String])
}

indirect enum Node {
    case text(String)
    case output(Expr, line: Int)
    case ifChain([(Expr, [Node])], otherwise: [Node], line: Int)
    case forLoop(targets: [String], iterable: Expr, filter: Expr?, body: [Node], otherwise: [Node], line: Int)
    case set(SetTarget, Expr, line: Int)
    /// `{% set x %}…{% endset %}`, optionally through filters.
    case setBlock(String, [Node], filters: [(String, Arguments)], line: Int)
    case macro(name: String, parameters: [(String, Expr?)], body: [Node], line: Int)
    /// `{% filter f %}…{% endfilter %}`.
    case filterBlock([(String, Arguments)], [Node], line: Int)
    case breakLoop(line: Int)
    case continueLoop(line: Int)
}
