import Foundation

/// Python's operators on template values: `+` adds numbers and joins strings and lists, `~` joins
/// the `str()` of anything, `/` is true division, `//` and `%` floor, `*` repeats strings and lists.
/// Mixed types raise TypeError, as they do in jinja2 (so `'a' + none` is an error, not "aNone").
enum Arithmetic {
    static func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue {
        if op == "~" { return try bounded(.string(a.text + b.text)) }
        if case .undefined(let why) = a { throw JinjaError.undefined(why) }
        if case .undefined(let why) = b { throw JinjaError.undefined(why) }
        if let x = a.number, let y = b.number { return try numeric(op, x, y) }
        switch (op, a, b) {
        case ("+", .string(let x), .string(let y)): return try bounded(.string(x + y))
        case ("+", .list(let x), .list(let y)): return try bounded(.list(x + y))
        case ("+", .tuple(let x), .tuple(let y)): return .tuple(x + y)
        case ("*", .string(let s), _), ("*", _, .string(let s)):
            guard let n = (a.number ?? b.number), case .int(let k) = n else { break }
            return .string(try repeated(k, s.utf8.count) { String(repeating: s, count: $0) })
        case ("*", .list(let l), _), ("*", _, .list(let l)):
            guard let n = (a.number ?? b.number), case .int(let k) = n else { break }
            return .list(try repeated(k, l.count) { Array(repeating: l, count: $0).flatMap { $0 } })
        case ("%", .string(let format), _):
            return .string(try PrintfFormat.format(format, b))
        default: break
        }
        throw JinjaError.type("unsupported operand type(s) for \(op): '\(a.typeName)' and '\(b.typeName)'")
    }

    /// Strings and lists built by `~` and `+` stay under the output limit: doubling one in a loop
    /// would otherwise exhaust memory long before anything is printed.
    private static func bounded(_ v: JinjaValue) throws -> JinjaValue {
        let tooLarge: Bool
        switch v {
        case .string(let s): tooLarge = s.utf8.count > JinjaInterpreter.outputLimit
        case .list(let l): tooLarge = l.count > JinjaInterpreter.iterationLimit
        default: tooLarge = false
        }
        if tooLarge { throw JinjaError.type("a value of more than \(JinjaInterpreter.outputLimit >> 20) MiB or \(JinjaInterpreter.iterationLimit) items") }
        return v
    }

    private static func repeated<T>(_ k: Int, _ size: Int, _ make: (Int) -> T) throws -> T {
        let n = max(k, 0)
        guard size == 0 || n <= JinjaInterpreter.outputLimit / size else {
            throw JinjaError.type("a repetition of more than \(JinjaInterpreter.outputLimit >> 20) MiB")
        }
        return make(n)
    }

    private static func numeric(_ op: String, _ x: PyNumber, _ y: PyNumber) throws -> JinjaValue {
        if case .int(let a) = x, case .int(let b) = y {
            func checked(_ r: (Int, Bool)) throws -> JinjaValue {
                guard !r.1 else { throw JinjaError.type("integer overflow in \(a) \(op) \(b)") }
                return .int(r.0)
            }
            switch op {
            case "+": return try checked(a.addingReportingOverflow(b))
            case "-": return try checked(a.subtractingReportingOverflow(b))
            case "*": return try checked(a.multipliedReportingOverflow(by: b))
            case "/":
                guard b != 0 else { throw JinjaError.type("division by zero") }
                return .double(Double(a) / Double(b))
            case "//", "%":
                guard b != 0 else { throw JinjaError.type("integer division or modulo by zero") }
                guard !(a == .min && b == -1) else { throw JinjaError.type("integer overflow in \(a) \(op) \(b)") }
                var q = a / b, r = a % b
                if r != 0 && (r < 0) != (b < 0) { q -= 1; r += b }
                return .int(op == "//" ? q : r)
            case "**":
                if b < 0 { return .double(pow(Double(a), Double(b))) }
                var result = 1, base = a, e = b
                while e > 0 {
                    if e & 1 == 1 { result = try checked(result.multipliedReportingOverflow(by: base)).intValue }
                    e >>= 1
                    if e > 0 { base = try checked(base.multipliedReportingOverflow(by: base)).intValue }
                }
                return .int(result)
            default: break
            }
        }
        let a = x.double, b = y.double
        switch op {
        case "+": return .double(a + b)
        case "-": return .double(a - b)
        case "*": return .double(a * b)
        case "/":
            guard b != 0 else { throw JinjaError.type("float division by zero") }
            return .double(a / b)
        case "//", "%":
            guard b != 0 else { throw JinjaError.type("float modulo") }
            let q = (a / b).rounded(.down)
            return .double(op == "//" ? q : a - q * b)
        case "**": return .double(pow(a, b))
        default: throw JinjaError.syntax("unknown operator \(op)")
        }
    }

    static func negate(_ v: JinjaValue) throws -> JinjaValue {
        switch v.number {
        case .int(let i)?:
            guard i != .min else { throw JinjaError.type("integer overflow in -\(i)") }
            return .int(-i)
        case .double(let d)?: return .double(-d)
        case nil:
            if case .undefined(let why) = v { throw JinjaError.undefined(why) }
            throw JinjaError.type("bad operand type for unary -: '\(v.typeName)'")
        }
    }

    static func compare(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> Bool {
        switch op {
        case "==": return a.equals(b)
        case "!=": return !a.equals(b)
        case "<": return try a.less(than: b)
        case ">": return try b.less(than: a)
        case "<=": return try !b.less(than: a)
        case ">=": return try !a.less(than: b)
        case "in": return try contains(b, a)
        case "not in": return try !contains(b, a)
        default: throw JinjaError.syntax("unknown comparison \(op)")
        }
    }

    /// Python's `needle in container`.
    static func contains(_ container: JinjaValue, _ needle: JinjaValue) throws -> Bool {
        switch container {
        case .string(let s):
            guard case .string(let n) = needle else { throw JinjaError.type("'in <string>' requires string as left operand, not \(needle.typeName)") }
            return n.isEmpty || s.unicodeScalars.indices(of: n) != nil
        case .list(let l), .tuple(let l): return l.contains { $0.equals(needle) }
        case .dict(let d):
            if case .string(let k) = needle { return d[k] != nil }
            return false
        case .namespace(let n):
            if case .string(let k) = needle { return n.values[k] != nil }
            return false
        case .undefined: return false
        default: throw JinjaError.type("argument of type '\(container.typeName)' is not iterable")
        }
    }
}

private extension JinjaValue {
    var intValue: Int { if case .int(let i) = self { return i }; return 0 }
}

extension String.UnicodeScalarView {
    /// The first position of `needle`'s code points in these (Python's `str.find`, which compares
    /// code points, not Swift's canonically equivalent characters).
    func indices(of needle: String) -> Int? {
        let h = Array(self), n = Array(needle.unicodeScalars)
        return h.firstRange(of: n)?.lowerBound
    }
}

private extension Array where Element: Equatable {
    func firstRange(of n: [Element]) -> Range<Int>? {
        guard !n.isEmpty else { return 0..<0 }
        guard n.count <= count else { return nil }
        var i = 0
        while i + n.count <= count {
            if self[i] == n[0] && Array(self[i..<(i + n.count)]) == n { return i..<(i + n.count) }
            i += 1
        }
        return nil
    }
}

/// Python's `'%s' % value` with `%s`, `%d`, `%i`, `%r`, `%f` and `%%` (what templates that format use).
enum PrintfFormat {
    static func format(_ f: String, _ arg: JinjaValue) throws -> String {
        var args: [JinjaValue]
        if case .tuple(let l) = arg { args = l } else { args = [arg] }
        var out = "", it = f.unicodeScalars.makeIterator()
        while let c = it.next() {
            guard c == "%" else { out.unicodeScalars.append(c); continue }
            guard let spec = it.next() else { throw JinjaError.type("incomplete format") }
            if spec == "%" { out += "%"; continue }
            guard !args.isEmpty else { throw JinjaError.type("not enough arguments for format string") }
            let v = args.removeFirst()
            switch spec {
            case "s": out += v.text
            case "r": out += v.repr
            case "d", "i":
                guard let n = v.number else { throw JinjaError.type("%d format: a real number is required, not \(v.typeName)") }
                switch n {
                case .int(let i): out += String(i);
                case .double(let d): out += String(Int(d.rounded(.towardZero)))
                }
            case "f":
                guard let n = v.number else { throw JinjaError.type("must be real number, not \(v.typeName)") }
                out += String(format: "%f", n.double)
            default: throw JinjaError.unsupported("the format character '\(spec)'")
            }
        }
        guard args.isEmpty else { throw JinjaError.type("not all arguments converted during string formatting") }
        return out
    }
}
