/// Renders parsed statements. Scopes follow jinja2: each for-loop iteration and each macro call
/// gets a fresh scope over the enclosing one (so a `set` inside a loop is gone after it, which is
/// why templates use `namespace`); `if` has none.
final class Scope {
    var values: [String: JinjaValue] = [:]
    let parent: Scope?
    init(parent: Scope?) { self.parent = parent }

    func lookup(_ name: String) -> JinjaValue? { values[name] ?? parent?.lookup(name) }
}

struct JinjaInterpreter {
    /// Rendering stops past this many output characters or loop iterations: a template is code
    /// from a model repository, and a loop over `range(10**12)` must not hang a server.
    static let outputLimit = 64 << 20
    static let iterationLimit = 250_000

    private enum Flow { case normal, breakLoop, continueLoop }

    /// Loop iterations of one rendering, shared with the macros it calls (each call runs in an
    /// interpreter of its own).
    final class Budget {
        var iterations = 0
    }
    private let budget: Budget

    init(budget: Budget = Budget()) { self.budget = budget }

    func line(_ e: JinjaError, _ line: Int) -> TemplateError { TemplateError(error: e, line: line) }

    mutating func render(_ nodes: [Node], _ scope: Scope) throws -> String {
        var out = ""
        _ = try run(nodes, scope, &out)
        return out
    }

    private mutating func run(_ nodes: [Node], _ scope: Scope, _ out: inout String) throws -> Flow {
        for node in nodes {
            switch node {
            case .text(let t): out += t
            case .output(let e, let l):
                out += try eval(e, scope).text
                if out.utf8.count > Self.outputLimit { throw line(.type("the rendered text exceeds \(Self.outputLimit >> 20) MiB"), l) }
            case .ifChain(let branches, let otherwise, _):
                var taken = false
                for (cond, body) in branches where try eval(cond, scope).truthy {
                    taken = true
                    let f = try run(body, scope, &out)
                    if f != .normal { return f }
                    break
                }
                if !taken {
                    let f = try run(otherwise, scope, &out)
                    if f != .normal { return f }
                }
            case .forLoop(let targets, let iterable, let filter, let body, let otherwise, let l):
                try forLoop(targets, iterable, filter, body, otherwise, l, scope, &out)
            case .set(let target, let e, let l):
                try assign(target, try eval(e, scope), scope, line: l)
            case .setBlock(let name, let body, let filters, let l):
                var value = JinjaValue.string(try render(body, Scope(parent: scope)))
                for (f, args) in filters { value = try applyFilter(f, value, args, scope, line: l) }
                scope.values[name] = value
            case .macro(let name, let parameters, let body, _):
                scope.values[name] = .function(macro(name, parameters, body, scope))
            case .filterBlock(let filters, let body, let l):
                var value = JinjaValue.string(try render(body, Scope(parent: scope)))
                for (f, args) in filters { value = try applyFilter(f, value, args, scope, line: l) }
                out += value.text
            case .breakLoop: return .breakLoop
            case .continueLoop: return .continueLoop
            }
        }
        return .normal
    }

    private mutating func forLoop(
        _ targets: [String], _ iterable: Expr, _ filter: Expr?, _ body: [Node], _ otherwise: [Node],
        _ l: Int, _ scope: Scope, _ out: inout String
    ) throws {
        var items = try iterate(try eval(iterable, scope), line: l)
        if let filter {
            items = try items.filter { item in
                let s = Scope(parent: scope)
                try bind(targets, item, s, line: l)
                return try eval(filter, s).truthy
            }
        }
        if items.isEmpty { _ = try run(otherwise, Scope(parent: scope), &out); return }
        for (k, item) in items.enumerated() {
            budget.iterations += 1
            if budget.iterations > Self.iterationLimit { throw line(.type("more than \(Self.iterationLimit) loop iterations"), l) }
            let s = Scope(parent: scope)
            try bind(targets, item, s, line: l)
            s.values["loop"] = loopObject(items, k)
            if try run(body, s, &out) == .breakLoop { break }
        }
    }

    /// jinja2's `loop`: index, index0, revindex, revindex0, first, last, length, previtem,
    /// nextitem, depth, depth0 and `cycle(…)`.
    private func loopObject(_ items: [JinjaValue], _ k: Int) -> JinjaValue {
        let n = items.count
        var d = JinjaDict([
            ("index", .int(k + 1)), ("index0", .int(k)), ("revindex", .int(n - k)), ("revindex0", .int(n - k - 1)),
            ("first", .bool(k == 0)), ("last", .bool(k == n - 1)), ("length", .int(n)),
            ("depth", .int(1)), ("depth0", .int(0)),
        ])
        d["previtem"] = k > 0 ? items[k - 1] : .undefined("there is no previous item")
        d["nextitem"] = k + 1 < n ? items[k + 1] : .undefined("there is no next item")
        d["cycle"] = .function(
            JinjaFunction(name: "cycle") { args, _ in
                guard !args.isEmpty else { throw JinjaError.type("no items for cycling given") }
                return args[k % args.count]
            })
        return .dict(d)
    }

    /// The items a for loop visits: a list's items, a dict's keys, a string's characters.
    func iterate(_ v: JinjaValue, line l: Int) throws -> [JinjaValue] {
        switch v {
        case .list(let items), .tuple(let items): return items
        case .dict(let d): return d.keys.map { .string($0) }
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        case .undefined: return []
        case .namespace(let n): return n.values.keys.map { .string($0) }
        default: throw line(.type("'\(v.typeName)' object is not iterable"), l)
        }
    }

    private func bind(_ targets: [String], _ item: JinjaValue, _ scope: Scope, line l: Int) throws {
        if targets.count == 1 { scope.values[targets[0]] = item; return }
        guard let parts = item.sequence else { throw line(.type("cannot unpack a '\(item.typeName)' into \(targets.count) names"), l) }
        guard parts.count == targets.count else {
            throw line(.type("expected \(targets.count) values to unpack, got \(parts.count)"), l)
        }
        for (t, p) in zip(targets, parts) { scope.values[t] = p }
    }

    private func assign(_ target: SetTarget, _ value: JinjaValue, _ scope: Scope, line l: Int) throws {
        switch target {
        case .name(let n): scope.values[n] = value
        case .names(let names): try bind(names, value, scope, line: l)
        case .attribute(let obj, let attr):
            guard case .namespace(let ns)? = scope.lookup(obj) else {
                throw line(.type("cannot assign attribute on non-namespace object '\(obj)'"), l)
            }
            if attr.hasPrefix("_") { throw line(.type("chat templates cannot store underscore-prefixed attributes on a namespace ('\(attr)')"), l) }
            ns.values[attr] = value
        }
    }

    /// A macro: its parameters bound from the call (missing ones from their defaults, evaluated at
    /// the call, or undefined), its body rendered in a scope over the one it was defined in.
    private func macro(_ name: String, _ parameters: [(String, Expr?)], _ body: [Node], _ defining: Scope) -> JinjaFunction {
        let budget = self.budget
        return JinjaFunction(name: name) { args, kwargs in
            guard args.count <= parameters.count else {
                throw JinjaError.type("macro '\(name)' takes not more than \(parameters.count) argument(s)")
            }
            let s = Scope(parent: defining)
            var interpreter = JinjaInterpreter(budget: budget)
            for (k, (p, def)) in parameters.enumerated() {
                if k < args.count {
                    s.values[p] = args[k]
                } else if let v = kwargs.first(where: { $0.0 == p })?.1 {
                    s.values[p] = v
                } else if let def {
                    s.values[p] = try interpreter.eval(def, s)
                } else {
                    s.values[p] = .undefined("no value for the macro parameter '\(p)'")
                }
            }
            if let extra = kwargs.first(where: { kw in !parameters.contains { $0.0 == kw.0 } }) {
                throw JinjaError.type("macro '\(name)' takes no keyword argument '\(extra.0)'")
            }
            return .string(try interpreter.render(body, s))
        }
    }

    /// The value of an expression. Long because it is the evaluator's table: one case per kind
    /// of expression (`JinjaSyntax.Expr`), each a few lines.
    mutating func eval(_ e: Expr, _ scope: Scope) throws -> JinjaValue {
        switch e {
        case .literal(let v): return v
        case .name(let n, _): return scope.lookup(n) ?? .undefined("'\(n)' is undefined")
        case .list(let items): return .list(try items.map { try eval($0, scope) })
        case .tuple(let items): return .tuple(try items.map { try eval($0, scope) })
        case .dict(let pairs):
            var d = JinjaDict()
            for (k, v) in pairs {
                guard case .string(let key) = try eval(k, scope) else { throw JinjaError.unsupported("dict keys other than strings") }
                d[key] = try eval(v, scope)
            }
            return .dict(d)
        case .attribute(let base, let name, let l):
            do { return try attribute(try eval(base, scope), name) } catch let err as JinjaError { throw line(err, l) }
        case .item(let base, let index, let l):
            do { return try item(try eval(base, scope), try eval(index, scope)) } catch let err as JinjaError { throw line(err, l) }
        case .slice(let base, let a, let b, let c, let l):
            do {
                return try slice(
                    try eval(base, scope), try a.map { try eval($0, scope) }, try b.map { try eval($0, scope) },
                    try c.map { try eval($0, scope) })
            } catch let err as JinjaError { throw line(err, l) }
        case .call(let callee, let args, let l):
            let f = try eval(callee, scope)
            let (p, k) = try evalArguments(args, scope)
            guard case .function(let fn) = f else {
                if case .undefined(let why) = f { throw line(.undefined(why), l) }
                throw line(.type("'\(f.typeName)' object is not callable"), l)
            }
            do { return try fn.call(p, k) } catch let err as JinjaError { throw line(err, l) }
        case .filter(let base, let name, let args, let l):
            return try applyFilter(name, try eval(base, scope), args, scope, line: l)
        case .test(let base, let name, let args, let negated, let l):
            let v = try eval(base, scope)
            let (p, _) = try evalArguments(args, scope)
            do { return .bool(try JinjaTests.apply(name, v, p) != negated) } catch let err as JinjaError { throw line(err, l) }
        case .negate(let x, let l):
            do { return try Arithmetic.negate(try eval(x, scope)) } catch let err as JinjaError { throw line(err, l) }
        case .plus(let x, _): return try eval(x, scope)
        case .not(let x): return .bool(!(try eval(x, scope).truthy))
        case .and(let a, let b):
            let x = try eval(a, scope)
            return x.truthy ? try eval(b, scope) : x
        case .or(let a, let b):
            let x = try eval(a, scope)
            return x.truthy ? x : try eval(b, scope)
        case .binary(let op, let a, let b, let l):
            do { return try Arithmetic.binary(op, try eval(a, scope), try eval(b, scope)) } catch let err as JinjaError { throw line(err, l) }
        case .compare(let first, let rest, let l):
            var left = try eval(first, scope)
            for (op, rhs) in rest {
                let right = try eval(rhs, scope)
                let ok: Bool
                do { ok = try Arithmetic.compare(op, left, right) } catch let err as JinjaError { throw line(err, l) }
                if !ok { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .conditional(let then, let condition, let otherwise):
            if try eval(condition, scope).truthy { return try eval(then, scope) }
            return try otherwise.map { try eval($0, scope) } ?? .undefined("the conditional expression has no else")
        }
    }

    private mutating func evalArguments(_ a: Arguments, _ scope: Scope) throws -> ([JinjaValue], [(String, JinjaValue)]) {
        (try a.positional.map { try eval($0, scope) }, try a.keywords.map { ($0.0, try eval($0.1, scope)) })
    }

    private mutating func applyFilter(_ name: String, _ v: JinjaValue, _ args: Arguments, _ scope: Scope, line l: Int) throws -> JinjaValue {
        let (p, k) = try evalArguments(args, scope)
        do { return try JinjaFilters.apply(name, v, p, k) } catch let err as JinjaError { throw line(err, l) }
    }

    /// `obj.name`: a method of a str, dict or list first (as jinja2's `getattr`), then a dict item.
    func attribute(_ v: JinjaValue, _ name: String) throws -> JinjaValue {
        if case .undefined(let why) = v { throw JinjaError.undefined(why) }
        if let m = JinjaMethods.method(v, name) { return .function(m) }
        switch v {
        case .dict(let d): return d[name] ?? .undefined("'dict object' has no attribute '\(name)'")
        case .namespace(let n): return n.values[name] ?? .undefined("'Namespace' object has no attribute '\(name)'")
        default: return .undefined("'\(v.typeName) object' has no attribute '\(name)'")
        }
    }

    /// `obj[index]`: a dict item first, then a method (jinja2's `getitem`).
    func item(_ v: JinjaValue, _ index: JinjaValue) throws -> JinjaValue {
        switch (v, index) {
        case (.undefined(let why), _): throw JinjaError.undefined(why)
        case (.dict(let d), .string(let k)): return d[k] ?? .undefined("'dict object' has no attribute '\(k)'")
        case (.namespace(let n), .string(let k)): return n.values[k] ?? .undefined("'Namespace' object has no attribute '\(k)'")
        case (.list(let l), _), (.tuple(let l), _):
            guard let i = index.number, case .int(var k) = i else { return .undefined("list indices must be integers") }
            if k < 0 { k += l.count }
            return (0..<l.count).contains(k) ? l[k] : .undefined("list index out of range")
        case (.string(let s), _):
            guard let i = index.number, case .int(var k) = i else { return .undefined("string indices must be integers") }
            let u = Array(s.unicodeScalars)
            if k < 0 { k += u.count }
            return (0..<u.count).contains(k) ? .string(String(u[k])) : .undefined("string index out of range")
        case (_, .string(let k)):
            return try attribute(v, k)
        default:
            return .undefined("'\(v.typeName)' object has no item \(index.repr)")
        }
    }

    /// Python's `seq[a:b:c]` on lists and strings (code points).
    func slice(_ v: JinjaValue, _ a: JinjaValue?, _ b: JinjaValue?, _ c: JinjaValue?) throws -> JinjaValue {
        func int(_ x: JinjaValue?) throws -> Int? {
            guard let x, !x.isNone else { return nil }
            guard let n = x.number, case .int(let i) = n else { throw JinjaError.type("slice indices must be integers or None") }
            return i
        }
        let step = try int(c) ?? 1
        guard step != 0 else { throw JinjaError.type("slice step cannot be zero") }
        func pick<T>(_ items: [T]) throws -> [T] {
            let n = items.count
            func clamp(_ i: Int?, _ def: Int) -> Int {
                guard var i else { return def }
                if i < 0 { i += n }
                return step > 0 ? min(max(i, 0), n) : min(max(i, -1), n - 1)
            }
            var out: [T] = []
            var i = clamp(try int(a), step > 0 ? 0 : n - 1)
            let end = clamp(try int(b), step > 0 ? n : -1)
            while step > 0 ? i < end : i > end { out.append(items[i]); i += step }
            return out
        }
        switch v {
        case .list(let l): return .list(try pick(l))
        case .tuple(let l): return .tuple(try pick(l))
        case .string(let s): return .string(String(String.UnicodeScalarView(try pick(Array(s.unicodeScalars)))))
        case .undefined(let why): throw JinjaError.undefined(why)
        default: throw JinjaError.type("'\(v.typeName)' object is not subscriptable")
        }
    }
}
