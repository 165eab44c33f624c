import MalCore

/// Python's `json.dumps` for template values, as transformers' `tojson` calls it: separators
/// `", "` and `": "` (`","` and `": "` with an indent), non-ASCII kept unless `ensure_ascii`,
/// control characters as `\uXXXX`, floats as Python prints them.
enum JSONText {
    static func dumps(_ v: JinjaValue, indent: Int?, separators: (String, String)?, sortKeys: Bool, asciiOnly: Bool) throws -> String {
        let (item, key) = separators ?? (indent == nil ? (", ", ": ") : (",", ": "))
        var out = ""
        func write(_ v: JinjaValue, _ level: Int) throws {
            func open(_ bracket: String, _ items: [() throws -> Void], _ close: String) throws {
                out += bracket
                guard !items.isEmpty else { out += close; return }
                for (k, body) in items.enumerated() {
                    if k > 0 { out += item }
                    if let indent { out += "\n" + String(repeating: " ", count: indent * (level + 1)) }
                    try body()
                }
                if let indent { out += "\n" + String(repeating: " ", count: indent * level) }
                out += close
            }
            switch v {
            case .none: out += "null"
            case .bool(let b): out += b ? "true" : "false"
            case .int(let i): out += String(i)
            case .double(let d):
                out += d.isNaN ? "NaN" : d.isInfinite ? (d < 0 ? "-Infinity" : "Infinity") : pythonFloatRepr(d)
            case .string(let s): out += quote(s, asciiOnly: asciiOnly)
            case .list(let l), .tuple(let l): try open("[", l.map { x in { try write(x, level + 1) } }, "]")
            case .dict(let d):
                let pairs = sortKeys ? d.pairs.sorted { $0.key.unicodeScalars.lexicographicallyPrecedes($1.key.unicodeScalars) } : d.pairs
                try open(
                    "{",
                    pairs.map { p in
                        {
                            out += quote(p.key, asciiOnly: asciiOnly) + key; try write(p.value, level + 1)
                        }
                    }, "}")
            case .namespace, .function, .undefined:
                throw JinjaError.type("Object of type \(v.typeName) is not JSON serializable")
            }
        }
        try write(v, 0)
        return out
    }

    static func quote(_ s: String, asciiOnly: Bool) -> String {
        var out = ""
        JSONValue.writeString(s, to: &out, asciiOnly: asciiOnly)
        return out
    }
}

extension JinjaValue {
    /// A JSON document as template data (objects keep their key order, as Python's dicts do).
    public init(json: JSONValue) {
        switch json {
        case .null: self = .none
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(Int(i))
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let a): self = .list(a.map(JinjaValue.init(json:)))
        case .object(let pairs): self = .dict(JinjaDict(pairs.map { ($0.0, JinjaValue(json: $0.1)) }))
        }
    }
}
