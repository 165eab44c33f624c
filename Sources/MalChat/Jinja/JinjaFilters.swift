import Foundation

/// The filters chat templates use, with jinja2's behaviour (`filters.py`) and transformers'
/// `tojson` (`json.dumps(x, ensure_ascii=False, indent=…, separators=…, sort_keys=…)`, no HTML
/// escaping). An unknown filter is an error naming it.
enum JinjaFilters {
    /// Long because it is the filter table: one short case per filter, found by name in one
    /// place (a table of closures would hide the argument checks that each case makes).
    static func apply(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
        var a = ArgumentList(filter: name, args, kwargs)
        switch name {
        case "trim":
            let chars = try a.optional("chars")
            return .string(try JinjaMethods.strip(v.text, chars, left: true, right: true))
        case "length", "count":
            switch v {
            case .string(let s): return .int(s.unicodeScalars.count)
            case .list(let l), .tuple(let l): return .int(l.count)
            case .dict(let d): return .int(d.count)
            case .undefined: return .int(0)
            default: throw JinjaError.type("object of type '\(v.typeName)' has no len()")
            }
        case "tojson":
            let indent = try a.optional("indent")
            let sortKeys = try a.optional("sort_keys")?.truthy ?? false
            let asciiOnly = try a.optional("ensure_ascii")?.truthy ?? false
            var separators: (String, String)?
            if let s = try a.optional("separators")?.sequence, s.count == 2 { separators = (s[0].text, s[1].text) }
            let width: Int?
            switch indent {
            case nil, .none?: width = nil
            case .int(let i)?: width = i
            case .string(let s)?: width = s.count
            default: throw JinjaError.type("tojson: indent must be an integer")
            }
            return .string(try JSONText.dumps(v, indent: width, separators: separators, sortKeys: sortKeys, asciiOnly: asciiOnly))
        case "upper": return .string(v.text.uppercased())
        case "lower": return .string(v.text.lowercased())
        case "capitalize": return .string(JinjaMethods.capitalize(v.text))
        case "title": return .string(JinjaMethods.title(v.text))
        case "string": return .string(v.text)
        case "safe": return v
        case "e", "escape", "forceescape":
            var out = ""
            for c in v.text.unicodeScalars {
                switch c {
                case "&": out += "&amp;"
                case "<": out += "&lt;"
                case ">": out += "&gt;"
                case "\"": out += "&#34;"
                case "'": out += "&#39;"
                default: out.unicodeScalars.append(c)
                }
            }
            return .string(out)
        case "default", "d":
            let fallback = try a.optional("default_value") ?? .string("")
            let boolean = try a.optional("boolean")?.truthy ?? false
            return v.isUndefined || (boolean && !v.truthy) ? fallback : v
        case "first", "last":
            let items = try JinjaInterpreter().iterate(v, line: 0)
            guard let x = name == "first" ? items.first : items.last else { return .undefined("the sequence is empty") }
            return x
        case "join":
            let sep = try a.optional("d")?.text ?? ""
            let attr = try a.optional("attribute")
            var items = try JinjaInterpreter().iterate(v, line: 0)
            if let attr { items = try items.map { try JinjaInterpreter().item($0, attr) } }
            return .string(items.map(\.text).joined(separator: sep))
        case "replace":
            let old = try a.required("old").text, new = try a.required("new").text
            let count = try a.optional("count")
            return .string(JinjaMethods.replace(v.text, old, new, count: count?.number.map { Int($0.double) } ?? -1))
        case "int":
            let def = try a.optional("default") ?? .int(0)
            switch v {
            case .int, .bool: return .int(Int(v.number!.double))
            case .double(let d): return d.isFinite ? .int(Int(d.rounded(.towardZero))) : def
            case .string(let s): return Int(s.trimmingCharacters(in: .whitespaces)).map { .int($0) } ?? Double(s).map { .int(Int($0)) } ?? def
            default: return def
            }
        case "float":
            let def = try a.optional("default") ?? .double(0)
            if let n = v.number { return .double(n.double) }
            if case .string(let s) = v, let d = Double(s.trimmingCharacters(in: .whitespaces)) { return .double(d) }
            return def
        case "abs":
            guard let n = v.number else { throw JinjaError.type("bad operand type for abs(): '\(v.typeName)'") }
            if case .int(let i) = n { return .int(abs(i)) }
            return .double(abs(n.double))
        case "round":
            let precision = try a.optional("precision")?.number.map { Int($0.double) } ?? 0
            let method = try a.optional("method")?.text ?? "common"
            guard let n = v.number else { throw JinjaError.type("round: a number is required") }
            let scale = pow(10, Double(precision))
            let x = n.double * scale
            let r = method == "floor" ? x.rounded(.down) : method == "ceil" ? x.rounded(.up) : x.rounded(.toNearestOrEven)
            return .double(r / scale)
        case "list": return .list(try JinjaInterpreter().iterate(v, line: 0))
        case "reverse":
            if case .string(let s) = v { return .string(String(String.UnicodeScalarView(s.unicodeScalars.reversed()))) }
            return .list(try JinjaInterpreter().iterate(v, line: 0).reversed())
        case "items":
            guard case .dict(let d) = v else {
                if v.isUndefined { return .list([]) }
                throw JinjaError.type("items: can only get items from a mapping, not '\(v.typeName)'")
            }
            return .list(d.pairs.map { .tuple([.string($0.key), $0.value]) })
        case "sort", "unique", "min", "max", "sum", "map", "select", "reject", "selectattr", "rejectattr", "dictsort":
            return try SequenceFilters.apply(name, v, &a)
        case "indent":
            let width = try a.optional("width") ?? .int(4)
            let first = try a.optional("first")?.truthy ?? false
            let blank = try a.optional("blank")?.truthy ?? false
            let pad = width.number.map { String(repeating: " ", count: max(0, Int($0.double))) } ?? width.text
            var lines = v.text.components(separatedBy: "\n")
            for k in lines.indices where (k > 0 || first) && (blank || !lines[k].allSatisfy(\.isWhitespace)) { lines[k] = pad + lines[k] }
            return .string(lines.joined(separator: "\n"))
        case "wordcount":
            // jinja2 counts matches of `\w+`: runs of letters, digits and `_`.
            let word: (Unicode.Scalar) -> Bool = { u in
                u == "_" || isPythonAlpha(u) || u.properties.numericType != nil
            }
            var n = 0, inWord = false
            for u in v.text.unicodeScalars { let w = word(u); if w && !inWord { n += 1 }; inWord = w }
            return .int(n)
        case "center":
            let width = try a.optional("width")?.number.map { Int($0.double) } ?? 80
            let s = v.text, n = s.unicodeScalars.count
            guard width > n else { return .string(s) }
            let left = (width - n) / 2 + ((width - n) % 2 == 1 && width % 2 == 1 ? 1 : 0)
            return .string(String(repeating: " ", count: left) + s + String(repeating: " ", count: width - n - left))
        case "format": return .string(try PrintfFormat.format(v.text, .tuple(args)))
        case "attr":
            return try JinjaInterpreter().attribute(v, try a.required("name").text)
        default:
            throw JinjaError.unsupported("the filter '\(name)'")
        }
    }
}

/// Positional-or-keyword arguments of a filter, named as in jinja2's signatures.
struct ArgumentList {
    let filter: String
    var positional: [JinjaValue]
    var keywords: [(String, JinjaValue)]

    init(filter: String, _ p: [JinjaValue], _ k: [(String, JinjaValue)]) {
        self.filter = filter
        positional = p
        keywords = k
    }

    mutating func optional(_ name: String) throws -> JinjaValue? {
        if let k = keywords.firstIndex(where: { $0.0 == name }) { return keywords.remove(at: k).1 }
        return positional.isEmpty ? nil : positional.removeFirst()
    }

    mutating func required(_ name: String) throws -> JinjaValue {
        guard let v = try optional(name) else { throw JinjaError.type("\(filter)() is missing the argument '\(name)'") }
        return v
    }

    /// What is left (positional), for `select('equalto', x)` and the like.
    mutating func rest() -> [JinjaValue] {
        defer { positional = [] }
        return positional
    }
}

/// The filters over sequences: sorting, selection by a test, mapping to an attribute or filter.
enum SequenceFilters {
    /// Long because it is a table: one case per sequence filter.
    static func apply(_ name: String, _ v: JinjaValue, _ a: inout ArgumentList) throws -> JinjaValue {
        let items = try JinjaInterpreter().iterate(v, line: 0)
        switch name {
        case "sort", "min", "max", "unique":
            let reverse = name == "sort" ? try a.optional("reverse")?.truthy ?? false : false
            let caseSensitive = try a.optional("case_sensitive")?.truthy ?? false
            let attribute = try a.optional("attribute")
            func key(_ x: JinjaValue) throws -> JinjaValue {
                let k = try attribute.map { try JinjaInterpreter().item(x, $0) } ?? x
                if !caseSensitive, case .string(let s) = k { return .string(s.lowercased()) }
                return k
            }
            if name == "unique" {
                var seen: [JinjaValue] = [], out: [JinjaValue] = []
                for x in items { let k = try key(x); if !seen.contains(where: { $0.equals(k) }) { seen.append(k); out.append(x) } }
                return .list(out)
            }
            let keyed = try items.map { (try key($0), $0) }
            var failure: Error?
            let sorted = keyed.enumerated().sorted { l, r in
                do {
                    if try l.element.0.less(than: r.element.0) { return true }
                    if try r.element.0.less(than: l.element.0) { return false }
                } catch { failure = error }
                return l.offset < r.offset  // stable, as Python's sort
            }.map(\.element.1)
            if let failure { throw failure }
            switch name {
            case "min": return sorted.first ?? .undefined("min of an empty sequence")
            case "max":
                // Python's max keeps the first of equal maxima.
                guard var best = keyed.first else { return .undefined("max of an empty sequence") }
                for x in keyed.dropFirst() where try best.0.less(than: x.0) { best = x }
                return best.1
            default: return .list(reverse ? Array(sorted.reversed()) : sorted)
            }
        case "sum":
            let attribute = try a.optional("attribute")
            var total = try a.optional("start") ?? .int(0)
            for x in items { total = try Arithmetic.binary("+", total, try attribute.map { try JinjaInterpreter().item(x, $0) } ?? x) }
            return total
        case "dictsort":
            guard case .dict(let d) = v else { throw JinjaError.type("dictsort: can only sort a mapping") }
            let sorted = d.pairs.sorted { $0.key.lowercased().unicodeScalars.lexicographicallyPrecedes($1.key.lowercased().unicodeScalars) }
            return .list(sorted.map { .tuple([.string($0.key), $0.value]) })
        case "map":
            if let attr = try keyword(&a, "attribute") {
                let def = try keyword(&a, "default")
                return .list(
                    try items.map { x in
                        let r = try JinjaInterpreter().item(x, attr)
                        return r.isUndefined ? def ?? r : r
                    })
            }
            guard case .string(let filter)? = try a.optional("filter") else { throw JinjaError.type("map: give a filter name or attribute=") }
            let rest = a.rest(), kw = a.keywords
            return .list(try items.map { try JinjaFilters.apply(filter, $0, rest, kw) })
        default:
            // select / reject (a test on the item), selectattr / rejectattr (a test on an attribute)
            let byAttribute = name.hasSuffix("attr")
            let attr = byAttribute ? try a.required("attribute") : nil
            let test = try a.optional("test")?.text
            let rest = a.rest()
            let keep = name.hasPrefix("select")
            return .list(
                try items.filter { x in
                    let subject = try attr.map { try JinjaInterpreter().item(x, $0) } ?? x
                    let passed = try test.map { try JinjaTests.apply($0, subject, rest) } ?? subject.truthy
                    return passed == keep
                })
        }
    }

    private static func keyword(_ a: inout ArgumentList, _ name: String) throws -> JinjaValue? {
        guard let k = a.keywords.firstIndex(where: { $0.0 == name }) else { return nil }
        return a.keywords.remove(at: k).1
    }
}

/// jinja2's tests (`x is defined`, `x is string`, `x is divisibleby 3` …).
enum JinjaTests {
    /// Long because it is the test table: one case per test.
    static func apply(_ name: String, _ v: JinjaValue, _ args: [JinjaValue]) throws -> Bool {
        func arg() throws -> JinjaValue {
            guard let a = args.first else { throw JinjaError.type("the test '\(name)' needs an argument") }
            return a
        }
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": return v.isNone
        case "true": if case .bool(true) = v { return true } else { return false }
        case "false": if case .bool(false) = v { return true } else { return false }
        case "boolean": if case .bool = v { return true } else { return false }
        case "string": if case .string = v { return true } else { return false }
        case "number":
            switch v {
            case .int, .double, .bool: return true;
            default: return false
            }
        case "integer": if case .int = v { return true } else { return false }
        case "float": if case .double = v { return true } else { return false }
        case "mapping":
            switch v {
            case .dict: return true;
            default: return false
            }
        case "sequence":
            switch v {
            case .list, .tuple, .string, .dict: return true;
            default: return false
            }
        case "iterable":
            switch v {
            case .list, .tuple, .string, .dict, .undefined: return true;
            default: return false
            }
        case "callable": if case .function = v { return true } else { return false }
        case "odd", "even", "divisibleby":
            guard case .int(let i)? = v.number else { throw JinjaError.type("the test '\(name)' needs an integer") }
            if name == "divisibleby" {
                guard case .int(let d)? = try arg().number, d != 0 else { throw JinjaError.type("divisibleby needs a non-zero integer") }
                return i % d == 0
            }
            return (i % 2 != 0) == (name == "odd")
        case "eq", "equalto", "==": return v.equals(try arg())
        case "ne", "!=": return !v.equals(try arg())
        case "lt", "lessthan", "<": return try v.less(than: try arg())
        case "gt", "greaterthan", ">": return try arg().less(than: v)
        case "le", "<=": return try !arg().less(than: v)
        case "ge", ">=": return try !v.less(than: try arg())
        case "in": return try Arithmetic.contains(try arg(), v)
        case "sameas":
            let o = try arg()
            switch (v, o) {
            case (.none, .none), (.undefined, .undefined): return true
            case (.bool(let a), .bool(let b)): return a == b
            case (.namespace(let a), .namespace(let b)): return a === b
            default: return false
            }
        case "lower": return v.text == v.text.lowercased()
        case "upper": return v.text == v.text.uppercased()
        default: throw JinjaError.unsupported("the test '\(name)'")
        }
    }
}
