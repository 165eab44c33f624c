import Foundation

/// The Python methods templates call on strings (`content.strip()`, `.split('</think>')`,
/// `.startswith(…)`) and dicts (`.items()`, `.get(…)`), and the globals transformers provides
/// (`raise_exception`, `strftime_now`, `namespace`, `dict`, plus jinja2's `range`). Methods that
/// modify a list or dict are refused, as jinja2's ImmutableSandboxedEnvironment refuses them.
enum JinjaMethods {
    static func method(_ v: JinjaValue, _ name: String) -> JinjaFunction? {
        switch v {
        case .string(let s): return stringMethod(s, name)
        case .dict(let d): return dictMethod(d, name)
        case .list where ["append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse"].contains(name),
            .dict where ["update", "pop", "popitem", "setdefault", "clear"].contains(name):
            return JinjaFunction(name: name) { _, _ in
                throw JinjaError.type("the template may not modify a \(v.typeName) (\(name)): chat templates run in an immutable sandbox")
            }
        default: return nil
        }
    }

    private static func dictMethod(_ d: JinjaDict, _ name: String) -> JinjaFunction? {
        switch name {
        case "items": return JinjaFunction(name: name) { _, _ in .list(d.pairs.map { .tuple([.string($0.key), $0.value]) }) }
        case "keys": return JinjaFunction(name: name) { _, _ in .list(d.keys.map { .string($0) }) }
        case "values": return JinjaFunction(name: name) { _, _ in .list(d.pairs.map(\.value)) }
        case "get":
            return JinjaFunction(name: name) { args, _ in
                guard let k = args.first else { throw JinjaError.type("get expected at least 1 argument") }
                if case .string(let key) = k, let v = d[key] { return v }
                return args.count > 1 ? args[1] : .none
            }
        default: return nil
        }
    }

    /// Python's `str` methods that templates call. Long because it is the method table: one case
    /// per method, each a line or two.
    private static func stringMethod(_ s: String, _ name: String) -> JinjaFunction? {
        func f(_ body: @escaping ([JinjaValue], [(String, JinjaValue)]) throws -> JinjaValue) -> JinjaFunction {
            JinjaFunction(name: name, call: body)
        }
        func arg(_ a: [JinjaValue], _ k: [(String, JinjaValue)], _ i: Int, _ key: String) -> JinjaValue? {
            i < a.count ? a[i] : k.first { $0.0 == key }?.1
        }
        switch name {
        case "strip", "lstrip", "rstrip":
            return f { a, k in .string(try strip(s, arg(a, k, 0, "chars"), left: name != "rstrip", right: name != "lstrip")) }
        case "split", "rsplit":
            return f { a, k in
                let sep = arg(a, k, 0, "sep"), maxsplit = arg(a, k, 1, "maxsplit")?.number.map { Int($0.double) } ?? -1
                return .list(
                    try split(s, sep: sep.flatMap { $0.isNone ? nil : $0.text }, maxsplit: maxsplit, fromRight: name == "rsplit")
                        .map { .string($0) })
            }
        case "startswith", "endswith":
            return f { a, _ in
                guard let p = a.first else { throw JinjaError.type("\(name) takes at least 1 argument") }
                let options: [JinjaValue]
                options = p.sequence ?? [p]
                let u = Array(s.unicodeScalars)
                return .bool(
                    try options.contains { o in
                        guard case .string(let x) = o else { throw JinjaError.type("\(name) first arg must be str or a tuple of str") }
                        let n = Array(x.unicodeScalars)
                        return n.count <= u.count && (name == "startswith" ? Array(u.prefix(n.count)) == n : Array(u.suffix(n.count)) == n)
                    })
            }
        case "upper": return f { _, _ in .string(s.uppercased()) }
        case "lower": return f { _, _ in .string(s.lowercased()) }
        case "title": return f { _, _ in .string(title(s)) }
        case "capitalize": return f { _, _ in .string(capitalize(s)) }
        case "replace":
            return f { a, _ in
                guard a.count >= 2 else { throw JinjaError.type("replace expected at least 2 arguments") }
                return .string(replace(s, a[0].text, a[1].text, count: a.count > 2 ? a[2].number.map { Int($0.double) } ?? -1 : -1))
            }
        case "find", "rfind", "count", "index":
            return f { a, _ in
                guard case .string(let n)? = a.first else { throw JinjaError.type("\(name) takes a string argument") }
                let h = Array(s.unicodeScalars), needle = Array(n.unicodeScalars)
                var hits: [Int] = []
                var i = 0
                while i + needle.count <= h.count {
                    if Array(h[i..<(i + needle.count)]) == needle { hits.append(i); i += max(needle.count, 1) } else { i += 1 }
                }
                if name == "count" { return .int(needle.isEmpty ? h.count + 1 : hits.count) }
                if name == "index" && hits.isEmpty { throw JinjaError.type("substring not found") }
                return .int((name == "rfind" ? hits.last : hits.first) ?? -1)
            }
        case "join":
            return f { a, _ in
                guard let items = a.first else { throw JinjaError.type("join takes exactly one argument") }
                return .string(try JinjaInterpreter().iterate(items, line: 0).map(\.text).joined(separator: s))
            }
        case "splitlines":
            return f { _, _ in
                var lines = s.components(separatedBy: "\n").map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }
                if lines.last == "" { lines.removeLast() }
                return .list(lines.map { .string($0) })
            }
        case "removeprefix", "removesuffix":
            return f { a, _ in
                let x = a.first?.text ?? ""
                if name == "removeprefix" { return .string(s.hasPrefix(x) && !x.isEmpty ? String(s.dropFirst(x.count)) : s) }
                return .string(s.hasSuffix(x) && !x.isEmpty ? String(s.dropLast(x.count)) : s)
            }
        case "isdigit", "isalpha", "isalnum", "isspace", "isupper", "islower":
            return f { _, _ in
                let u = s.unicodeScalars
                switch name {
                case "isdigit": return .bool(!u.isEmpty && u.allSatisfy { $0.properties.numericType != nil && $0.properties.numericType != .numeric })
                case "isalpha": return .bool(!u.isEmpty && u.allSatisfy(isPythonAlpha))
                case "isalnum": return .bool(!u.isEmpty && u.allSatisfy { isPythonAlpha($0) || $0.properties.numericType != nil })
                case "isspace": return .bool(!u.isEmpty && u.allSatisfy(isPythonSpace))
                case "isupper": return .bool(s.contains { $0.isUppercase } && s == s.uppercased())
                default: return .bool(s.contains { $0.isLowercase } && s == s.lowercased())
                }
            }
        case "format":
            return f { a, k in .string(try braceFormat(s, a, k)) }
        default: return nil
        }
    }

    /// Python's `str.strip([chars])`: whitespace, or any of `chars`.
    static func strip(_ s: String, _ chars: JinjaValue?, left: Bool, right: Bool) throws -> String {
        var u = Array(s.unicodeScalars)
        let set: ((Unicode.Scalar) -> Bool)
        if let chars, !chars.isNone {
            guard case .string(let c) = chars else { throw JinjaError.type("strip arg must be None or str") }
            let cs = Set(c.unicodeScalars)
            set = { cs.contains($0) }
        } else {
            set = isPythonSpace
        }
        if right { while let l = u.last, set(l) { u.removeLast() } }
        if left { let n = u.prefix(while: set).count; u.removeFirst(n) }
        return String(String.UnicodeScalarView(u))
    }

    /// Python's `str.split(sep, maxsplit)` (no `sep`: runs of whitespace, ends dropped).
    static func split(_ s: String, sep: String?, maxsplit: Int, fromRight: Bool) throws -> [String] {
        var u = Array(s.unicodeScalars)
        func str(_ x: ArraySlice<Unicode.Scalar>) -> String { String(String.UnicodeScalarView(x)) }
        if fromRight { u.reverse() }
        var parts: [String] = []
        if let sep {
            var n = Array(sep.unicodeScalars)
            guard !n.isEmpty else { throw JinjaError.type("empty separator") }
            if fromRight { n.reverse() }
            var start = 0, i = 0
            while i + n.count <= u.count && (maxsplit < 0 || parts.count < maxsplit) {
                if Array(u[i..<(i + n.count)]) == n { parts.append(str(u[start..<i])); i += n.count; start = i } else { i += 1 }
            }
            parts.append(str(u[start...]))
        } else {
            var i = 0
            while i < u.count {
                while i < u.count && isPythonSpace(u[i]) { i += 1 }
                guard i < u.count else { break }
                if maxsplit >= 0 && parts.count == maxsplit {
                    var rest = Array(u[i...])
                    while let l = rest.last, isPythonSpace(l) { rest.removeLast() }
                    parts.append(str(rest[...]))
                    break
                }
                let start = i
                while i < u.count && !isPythonSpace(u[i]) { i += 1 }
                parts.append(str(u[start..<i]))
            }
        }
        if fromRight { return parts.reversed().map { String(String.UnicodeScalarView($0.unicodeScalars.reversed())) } }
        return parts
    }

    static func replace(_ s: String, _ old: String, _ new: String, count: Int) -> String {
        let u = Array(s.unicodeScalars), o = Array(old.unicodeScalars)
        var out = String.UnicodeScalarView(), i = 0, done = 0
        if o.isEmpty {
            // Python inserts `new` between every character (and at both ends).
            for c in u { if count < 0 || done < count { out.append(contentsOf: new.unicodeScalars); done += 1 }; out.append(c) }
            if count < 0 || done < count { out.append(contentsOf: new.unicodeScalars) }
            return String(out)
        }
        while i < u.count {
            if (count < 0 || done < count) && i + o.count <= u.count && Array(u[i..<(i + o.count)]) == o {
                out.append(contentsOf: new.unicodeScalars)
                i += o.count
                done += 1
            } else {
                out.append(u[i]); i += 1
            }
        }
        return String(out)
    }

    static func capitalize(_ s: String) -> String {
        guard let f = s.first else { return s }
        return String(f).uppercased() + s.dropFirst().lowercased()
    }

    /// Python's `str.title()`: a letter after a non-letter is upper case, other letters lower.
    static func title(_ s: String) -> String {
        var out = "", previousLetter = false
        for c in s {
            out += previousLetter ? c.lowercased() : c.uppercased()
            previousLetter = c.isLetter
        }
        return out
    }

    /// `str.format` with `{}`, `{0}`, `{name}` and `{{`/`}}` (no format specs).
    static func braceFormat(_ s: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> String {
        var out = "", auto = 0
        var it = Array(s.unicodeScalars)[...]
        while let c = it.popFirst() {
            if c == "{" {
                if it.first == "{" { it.removeFirst(); out += "{"; continue }
                var field = ""
                while let d = it.popFirst(), d != "}" { field.unicodeScalars.append(d) }
                if field.contains(":") || field.contains("!") { throw JinjaError.unsupported("format specs in str.format") }
                let v: JinjaValue?
                if field.isEmpty {
                    v = auto < args.count ? args[auto] : nil; auto += 1
                } else if let i = Int(field) {
                    v = i < args.count ? args[i] : nil
                } else {
                    v = kwargs.first { $0.0 == field }?.1
                }
                guard let v else { throw JinjaError.type("format: no value for '{\(field)}'") }
                out += v.text
            } else if c == "}" {
                if it.first == "}" { it.removeFirst() }
                out += "}"
            } else {
                out.unicodeScalars.append(c)
            }
        }
        return out
    }
}

/// The names every chat template can use.
enum JinjaGlobals {
    /// - Parameter now: the clock `strftime_now` reads (tests pin it).
    static func scope(now: @escaping () -> Date) -> Scope {
        let s = Scope(parent: nil)
        s.values["raise_exception"] = .function(
            JinjaFunction(name: "raise_exception") { args, _ in
                throw JinjaError.raised(args.first?.text ?? "")
            })
        s.values["strftime_now"] = .function(
            JinjaFunction(name: "strftime_now") { args, _ in
                .string(strftime(args.first?.text ?? "", now()))
            })
        s.values["namespace"] = .function(
            JinjaFunction(name: "namespace") { args, kwargs in
                var d = JinjaDict()
                if case .dict(let initial)? = args.first { d = initial }
                for (k, v) in kwargs {
                    if k.hasPrefix("_") { throw JinjaError.type("chat templates cannot store underscore-prefixed attributes on a namespace ('\(k)')") }
                    d[k] = v
                }
                return .namespace(JinjaNamespace(d))
            })
        s.values["dict"] = .function(
            JinjaFunction(name: "dict") { args, kwargs in
                var d = JinjaDict()
                if case .dict(let initial)? = args.first { d = initial }
                for (k, v) in kwargs { d[k] = v }
                return .dict(d)
            })
        s.values["range"] = .function(
            JinjaFunction(name: "range") { args, _ in
                let n = try args.map { a -> Int in
                    guard case .int(let i)? = a.number else { throw JinjaError.type("range() takes integers") }
                    return i
                }
                let (start, stop, step) = n.count == 1 ? (0, n[0], 1) : n.count == 2 ? (n[0], n[1], 1) : n.count == 3 ? (n[0], n[1], n[2]) : (0, 0, 0)
                guard step != 0 else { throw JinjaError.type("range() needs 1 to 3 arguments and a non-zero step") }
                let count = step > 0 ? max(0, (stop - start + step - 1) / step) : max(0, (start - stop - step - 1) / -step)
                guard count <= JinjaInterpreter.iterationLimit else { throw JinjaError.type("range() of \(count) items is too large") }
                return .list((0..<count).map { .int(start + $0 * step) })
            })
        return s
    }

    /// C's strftime in the C locale (Python's `datetime.strftime` on Linux), local time.
    static func strftime(_ format: String, _ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970)
        var tmv = tm()
        localtime_r(&t, &tmv)
        var buffer = [Int8](repeating: 0, count: 512)
        let n = Foundation.strftime(&buffer, buffer.count, format, &tmv)
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
