import Foundation

/// A value inside a Jinja template, with Python's semantics where chat templates can tell the
/// difference: truthiness, `str()` for output, `==` between ints, floats and bools (a bool is an
/// int in Python), ordering, and string length and indexing in code points.
public indirect enum JinjaValue {
    /// A name or attribute that does not exist; the payload says which (for error messages).
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([JinjaValue])
    /// A Python tuple (`(1, 2)`, `dict.items()`'s pairs): a list that prints as `(1, 2)`.
    case tuple([JinjaValue])
    case dict(JinjaDict)
    /// `namespace(...)`: the one mutable object templates have (`{% set ns.x = … %}`).
    case namespace(JinjaNamespace)
    /// A macro, a global function or a bound method.
    case function(JinjaFunction)

    public var isUndefined: Bool { if case .undefined = self { return true } else { return false } }
    public var isNone: Bool { if case .none = self { return true } else { return false } }
    /// The items of a list or tuple.
    public var sequence: [JinjaValue]? {
        switch self {
        case .list(let l), .tuple(let l): return l;
        default: return nil
        }
    }

    /// Python's `bool(x)`.
    public var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .list(let l), .tuple(let l): return !l.isEmpty
        case .dict(let d): return !d.isEmpty
        case .namespace, .function: return true
        }
    }

    /// Python's type name, for error messages (`'int' object has no attribute …`).
    public var typeName: String {
        switch self {
        case .undefined: return "undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .list: return "list"
        case .tuple: return "tuple"
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .function: return "function"
        }
    }

    /// A number as Python sees it in arithmetic (bools are 0 and 1); nil for other types.
    var number: PyNumber? {
        switch self {
        case .bool(let b): return .int(b ? 1 : 0)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        default: return nil
        }
    }

    /// `str(x)`: what `{{ x }}` prints (undefined prints nothing).
    public var text: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return repr
        }
    }

    /// `repr(x)`, which is also how lists and dicts print their items.
    public var repr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return pythonFloatRepr(d)
        case .string(let s): return pythonStringRepr(s)
        case .list(let l): return "[" + l.map(\.repr).joined(separator: ", ") + "]"
        case .tuple(let l): return "(" + l.map(\.repr).joined(separator: ", ") + (l.count == 1 ? ",)" : ")")
        case .dict(let d): return "{" + d.pairs.map { pythonStringRepr($0.key) + ": " + $0.value.repr }.joined(separator: ", ") + "}"
        case .namespace(let n): return "<Namespace " + n.values.pairs.map { "\($0.key)=\($0.value.repr)" }.joined(separator: ", ") + ">"
        case .function(let f): return "<function \(f.name)>"
        }
    }
}

/// An insertion-ordered dictionary with string keys (what JSON messages and template literals give).
public struct JinjaDict {
    public private(set) var keys: [String] = []
    private var storage: [String: JinjaValue] = [:]

    public init() {}
    public init(_ pairs: [(String, JinjaValue)]) { for (k, v) in pairs { self[k] = v } }

    public var isEmpty: Bool { keys.isEmpty }
    public var count: Int { keys.count }
    public var pairs: [(key: String, value: JinjaValue)] { keys.map { ($0, storage[$0]!) } }

    public subscript(key: String) -> JinjaValue? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }
}

public final class JinjaNamespace {
    public var values: JinjaDict
    public init(_ values: JinjaDict) { self.values = values }
}

/// A callable: `(positional arguments, keyword arguments) -> value`.
public struct JinjaFunction {
    public let name: String
    public let call: ([JinjaValue], [(String, JinjaValue)]) throws -> JinjaValue
}

enum PyNumber {
    case int(Int)
    case double(Double)
    var double: Double {
        switch self {
        case .int(let i): return Double(i);
        case .double(let d): return d
        }
    }
}

extension JinjaValue {
    /// Python's `==` (numbers compare by value across int, float and bool; undefined equals only undefined).
    func equals(_ other: JinjaValue) -> Bool {
        if let a = number, let b = other.number {
            if case .int(let x) = a, case .int(let y) = b { return x == y }
            return a.double == b.double
        }
        switch (self, other) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let a), .string(let b)): return a.unicodeScalars.elementsEqual(b.unicodeScalars)
        case (.list(let a), .list(let b)), (.tuple(let a), .tuple(let b)): return a.count == b.count && zip(a, b).allSatisfy { $0.equals($1) }
        case (.dict(let a), .dict(let b)):
            return a.count == b.count && a.pairs.allSatisfy { p in b[p.key].map { $0.equals(p.value) } ?? false }
        case (.namespace(let a), .namespace(let b)): return a === b
        default: return false
        }
    }

    /// Python's ordering (`<`): numbers, strings (by code point) and lists; anything else is a TypeError.
    func less(than other: JinjaValue) throws -> Bool {
        if let a = number, let b = other.number {
            if case .int(let x) = a, case .int(let y) = b { return x < y }
            return a.double < b.double
        }
        switch (self, other) {
        case (.string(let a), .string(let b)): return a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars)
        case (.list(let a), .list(let b)), (.tuple(let a), .tuple(let b)):
            for (x, y) in zip(a, b) where !x.equals(y) { return try x.less(than: y) }
            return a.count < b.count
        default:
            throw JinjaError.type("'<' is not supported between '\(typeName)' and '\(other.typeName)'")
        }
    }
}

/// Python's `repr` of a float: the shortest digits that round-trip, in positional notation for
/// exponents -4 ..< 16 and scientific notation (`1e-05`, `1e+16`) outside.
func pythonFloatRepr(_ d: Double) -> String {
    if d.isNaN { return "nan" }
    if d.isInfinite { return d < 0 ? "-inf" : "inf" }
    if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
    // Swift's description has the shortest round-trip digits; take them apart and re-place the point.
    let s = "\(abs(d))"
    var mantissa = s, exp = 0
    if let e = s.firstIndex(where: { $0 == "e" || $0 == "E" }) {
        mantissa = String(s[..<e])
        exp = Int(s[s.index(after: e)...])!
    }
    let parts = mantissa.split(separator: ".", omittingEmptySubsequences: false)
    var digits = String(parts[0]) + (parts.count > 1 ? String(parts[1]) : "")
    var pointAt = parts[0].count + exp  // digits before the point
    let lead = digits.prefix { $0 == "0" }.count
    digits.removeFirst(lead)
    pointAt -= lead
    while digits.count > 1 && digits.hasSuffix("0") { digits.removeLast() }
    if digits.isEmpty { digits = "0" }
    let decimalExp = pointAt - 1  // scientific exponent
    let sign = d < 0 ? "-" : ""
    if decimalExp < -4 || decimalExp >= 16 {
        let m = digits.count > 1 ? "\(digits.first!).\(digits.dropFirst())" : digits
        return sign + m + "e" + (decimalExp < 0 ? "-" : "+") + (abs(decimalExp) < 10 ? "0" : "") + String(abs(decimalExp))
    }
    if pointAt <= 0 { return sign + "0." + String(repeating: "0", count: -pointAt) + digits }
    if pointAt >= digits.count { return sign + digits + String(repeating: "0", count: pointAt - digits.count) + ".0" }
    return sign + String(digits.prefix(pointAt)) + "." + String(digits.dropFirst(pointAt))
}

/// Python's `repr` of a str: single quotes unless the text has one and no double quote.
func pythonStringRepr(_ s: String) -> String {
    let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
    var out = String(quote)
    for u in s.unicodeScalars {
        switch u {
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if Character(u) == quote {
                out += "\\" + String(quote)
            } else if u.value < 0x20 || u.value == 0x7F {
                out += String(format: "\\x%02x", u.value)
            } else if !pythonPrintable(u) {
                out +=
                    u.value <= 0xFF
                    ? String(format: "\\x%02x", u.value)
                    : u.value <= 0xFFFF ? String(format: "\\u%04x", u.value) : String(format: "\\U%08x", u.value)
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    out.append(quote)
    return out
}

/// Python's `str.isprintable` for one character: not a control, format, surrogate, private-use,
/// unassigned, line or paragraph separator, and no space but U+0020.
private func pythonPrintable(_ u: Unicode.Scalar) -> Bool {
    switch u.properties.generalCategory {
    case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator: return false
    case .spaceSeparator: return u == " "
    default: return true
    }
}
