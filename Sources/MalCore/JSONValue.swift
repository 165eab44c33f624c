import CJSONC

/// A parsed JSON document (configs, shard indexes, tokenizer files), read with json-c.
///
/// json-c was the fastest parser measured on this machine (Docs/ARCHITECTURE.md); this wrapper
/// turns its tree into a Swift value once, keeping object key order (configs are small; the
/// tokenizer loader walks the json-c tree directly where size matters).
public indirect enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.double(x), .double(y)): return x == y
        case let (.int(x), .double(y)), let (.double(y), .int(x)): return Double(x) == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// Parses a complete JSON text. Trailing garbage, invalid UTF-8 and nesting deeper than
    /// 64 levels are errors; the error names the file and the byte where parsing stopped.
    public static func parse(_ bytes: UnsafeRawBufferPointer, file: String) throws -> JSONValue {
        guard let tok = json_tokener_new_ex(64) else {
            throw MalError(.ioError, "cannot allocate JSON tokenizer", file: file)
        }
        defer { json_tokener_free(tok) }
        json_tokener_set_flags(tok, Int32(JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8))
        if bytes.count > Int(Int32.max) {
            throw MalError(.invalidJSON, "JSON document larger than 2 GiB", file: file)
        }
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count > 0 else {
            throw MalError(.invalidJSON, "invalid JSON: the document is empty", file: file, offset: 0)
        }
        let obj = json_tokener_parse_ex(tok, base, Int32(bytes.count))
        let err = json_tokener_get_error(tok)
        let end = Int(json_tokener_get_parse_end(tok))
        guard let obj, err == json_tokener_success else {
            let reason =
                err == json_tokener_continue
                ? "unexpected end of document"
                : String(cString: json_tokener_error_desc(err))
            throw MalError(.invalidJSON, "invalid JSON: \(reason)", file: file, offset: end)
        }
        defer { json_object_put(obj) }
        // Only whitespace may follow the value.
        if end < bytes.count {
            for i in end..<bytes.count where !(bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09) {
                throw MalError(.invalidJSON, "invalid JSON: trailing data after the document", file: file, offset: i)
            }
        }
        return convert(obj)
    }

    public static func parse(_ text: String, file: String) throws -> JSONValue {
        var t = text
        return try t.withUTF8 { try parse(UnsafeRawBufferPointer($0), file: file) }
    }

    private static func convert(_ o: OpaquePointer?) -> JSONValue {
        guard let o else { return .null }
        switch json_object_get_type(o) {
        case json_type_null: return .null
        case json_type_boolean: return .bool(json_object_get_boolean(o) != 0)
        case json_type_int: return .int(json_object_get_int64(o))
        case json_type_double: return .double(json_object_get_double(o))
        case json_type_string:
            let n = Int(json_object_get_string_len(o))
            let p = json_object_get_string(o)!
            return .string(String(decoding: UnsafeRawBufferPointer(start: p, count: n), as: UTF8.self))
        case json_type_array:
            let n = json_object_array_length(o)
            var out: [JSONValue] = []
            out.reserveCapacity(n)
            for i in 0..<n { out.append(convert(json_object_array_get_idx(o, i))) }
            return .array(out)
        case json_type_object:
            var out: [(String, JSONValue)] = []
            var it = json_object_iter_begin(o)
            var end = json_object_iter_end(o)
            while json_object_iter_equal(&it, &end) == 0 {
                let name = String(cString: json_object_iter_peek_name(&it))
                out.append((name, convert(json_object_iter_peek_value(&it))))
                json_object_iter_next(&it)
            }
            return .object(out)
        default: return .null
        }
    }

    // MARK: access

    public subscript(key: String) -> JSONValue? {
        if case let .object(pairs) = self { return pairs.first(where: { $0.0 == key })?.1 }
        return nil
    }

    public var objectPairs: [(String, JSONValue)]? { if case let .object(p) = self { return p }; return nil }
    public var arrayValue: [JSONValue]? { if case let .array(a) = self { return a }; return nil }
    public var stringValue: String? { if case let .string(s) = self { return s }; return nil }
    public var boolValue: Bool? { if case let .bool(b) = self { return b }; return nil }
    public var isNull: Bool { if case .null = self { return true }; return false }

    /// Integer value; a float with no fractional part (e.g. `32.0`) counts as an integer.
    public var intValue: Int? {
        switch self {
        case let .int(i): return Int(exactly: i)
        case let .double(d): return d.rounded() == d && abs(d) < 9e15 ? Int(d) : nil
        default: return nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case let .int(i): return Double(i)
        case let .double(d): return d
        default: return nil
        }
    }

    /// Serialises compactly (sorted keys are not imposed; key order is kept).
    public var serialized: String {
        var out = ""
        write(to: &out)
        return out
    }

    /// Serialises with two-space indentation (how HF writes config.json).
    public var prettySerialized: String {
        var out = ""
        writePretty(to: &out, indent: 0)
        return out + "\n"
    }

    private func writePretty(to out: inout String, indent: Int) {
        let pad = String(repeating: " ", count: indent + 2), end = String(repeating: " ", count: indent)
        switch self {
        case let .array(a) where !a.isEmpty:
            out += "[\n"
            for (i, v) in a.enumerated() {
                out += pad
                v.writePretty(to: &out, indent: indent + 2)
                out += i + 1 < a.count ? ",\n" : "\n"
            }
            out += end + "]"
        case let .object(p) where !p.isEmpty:
            out += "{\n"
            for (i, (k, v)) in p.enumerated() {
                out += pad
                JSONValue.writeString(k, to: &out)
                out += ": "
                v.writePretty(to: &out, indent: indent + 2)
                out += i + 1 < p.count ? ",\n" : "\n"
            }
            out += end + "}"
        default:
            write(to: &out)
        }
    }

    private func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case let .bool(b): out += b ? "true" : "false"
        case let .int(i): out += String(i)
        case let .double(d):
            if d.isFinite && d.rounded() == d && abs(d) < 1e15 { out += String(Int64(d)) + ".0" } else { out += "\(d)" }
        case let .string(s): JSONValue.writeString(s, to: &out)
        case let .array(a):
            out += "["
            for (i, v) in a.enumerated() { if i > 0 { out += "," }; v.write(to: &out) }
            out += "]"
        case let .object(p):
            out += "{"
            for (i, (k, v)) in p.enumerated() {
                if i > 0 { out += "," }
                JSONValue.writeString(k, to: &out)
                out += ":"
                v.write(to: &out)
            }
            out += "}"
        }
    }

    /// A JSON string as Python's `json.dumps` writes it (`\b` and `\f` short, other controls as
    /// `\u00XX`, non-ASCII kept unless `asciiOnly`, which escapes it as UTF-16 `\uXXXX`).
    public static func writeString(_ s: String, to out: inout String, asciiOnly: Bool = false) {
        func hex4(_ v: UInt32) {
            let h = String(v, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
        }
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 || (asciiOnly && u.value > 0x7E) {
                    if u.value > 0xFFFF {
                        hex4(0xD800 + ((u.value - 0x10000) >> 10))
                        hex4(0xDC00 + ((u.value - 0x10000) & 0x3FF))
                    } else {
                        hex4(u.value)
                    }
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}
