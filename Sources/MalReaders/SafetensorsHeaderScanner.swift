import MalCore

/// A strict scanner for the safetensors JSON header.
///
/// It accepts exactly the header grammar of the format: one object mapping tensor names to
/// `{"dtype": STRING, "shape": [UINT...], "data_offsets": [UINT, UINT]}` plus an optional
/// `"__metadata__": {STRING: STRING}` (or null), JSON whitespace anywhere, trailing padding.
/// Duplicate names, unknown fields, negative or fractional numbers and trailing data are errors.
/// It is faster than a generic JSON parser on 90k-tensor headers (`Docs/ARCHITECTURE.md`, JSON)
/// and never allocates more than the header's own size.
struct SafetensorsHeaderScanner {
    struct Entry {
        var name: String
        var dtypeName: String
        var dtypeOffset: Int
        var shape: [Int]
        var begin: Int
        var end: Int
        var entryOffset: Int
    }

    let bytes: UnsafeRawBufferPointer
    /// File offset of `bytes[0]`, for error messages.
    let base: Int
    let file: String
    var i = 0

    init(bytes: UnsafeRawBufferPointer, base: Int, file: String) {
        self.bytes = bytes
        self.base = base
        self.file = file
    }

    func fail(_ msg: String, tensor: String? = nil, at pos: Int? = nil) -> MalError {
        MalError(.invalidHeaderJSON, "invalid header JSON: \(msg)", file: file, tensor: tensor, offset: base + (pos ?? i))
    }

    mutating func skipWhitespace() {
        while i < bytes.count {
            let c = bytes[i]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 } else { break }
        }
    }

    mutating func expect(_ c: UInt8, _ what: String, tensor: String? = nil) throws {
        skipWhitespace()
        guard i < bytes.count else { throw fail("unexpected end of header, expected \(what)", tensor: tensor) }
        guard bytes[i] == c else { throw fail("expected \(what)", tensor: tensor) }
        i += 1
    }

    /// Consumes `c` if it is the next non-blank byte.
    mutating func accept(_ c: UInt8) -> Bool {
        skipWhitespace()
        if i < bytes.count && bytes[i] == c { i += 1; return true }
        return false
    }

    mutating func string(tensor: String? = nil) throws -> String {
        skipWhitespace()
        guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a string", tensor: tensor) }
        let start = i
        i += 1
        var out: [UInt8] = []
        var plainStart = i
        while true {
            guard i < bytes.count else { throw fail("unterminated string", tensor: tensor, at: start) }
            let c = bytes[i]
            if c == UInt8(ascii: "\"") { break }
            if c < 0x20 { throw fail("control character in string", tensor: tensor) }
            if c == UInt8(ascii: "\\") {
                out.append(contentsOf: bytes[plainStart..<i])
                i += 1
                guard i < bytes.count else { throw fail("unterminated escape", tensor: tensor) }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4(tensor: tensor)
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                            throw fail("unpaired surrogate in \\u escape", tensor: tensor)
                        }
                        i += 2
                        let low = try hex4(tensor: tensor)
                        guard (0xDC00..<0xE000).contains(low) else { throw fail("invalid surrogate pair", tensor: tensor) }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        throw fail("unpaired surrogate in \\u escape", tensor: tensor)
                    }
                    out.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar)!)).utf8))
                default: throw fail("invalid escape", tensor: tensor, at: i - 1)
                }
                plainStart = i
                continue
            }
            i += 1
        }
        out.append(contentsOf: bytes[plainStart..<i])
        i += 1
        guard let s = String(validating: out, as: UTF8.self) else {
            throw MalError(
                .invalidHeaderUTF8, "header string is not valid UTF-8", file: file, tensor: tensor,
                offset: base + start)
        }
        return s
    }

    private mutating func hex4(tensor: String?) throws -> UInt32 {
        guard i + 4 <= bytes.count else { throw fail("truncated \\u escape", tensor: tensor) }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw fail("invalid hex digit in \\u escape", tensor: tensor)
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    /// A non-negative JSON integer (no sign, fraction or exponent; no leading zeros).
    mutating func unsigned(tensor: String?, what: String) throws -> Int {
        skipWhitespace()
        let start = i
        var v = 0
        while i < bytes.count, (0x30...0x39).contains(bytes[i]) {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int(bytes[i] - 0x30))
            if o1 || o2 {
                throw MalError(.shapeOverflow, "\(what) does not fit in 64 bits", file: file, tensor: tensor, offset: base + start)
            }
            v = a
            i += 1
        }
        if i == start {
            if i < bytes.count && bytes[i] == UInt8(ascii: "-") {
                throw MalError(.invalidShape, "\(what) is negative", file: file, tensor: tensor, offset: base + start)
            }
            throw fail("expected a non-negative integer for \(what)", tensor: tensor)
        }
        if i - start > 1 && bytes[start] == 0x30 { throw fail("leading zero in \(what)", tensor: tensor, at: start) }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") || bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            throw MalError(.invalidShape, "\(what) is not an integer", file: file, tensor: tensor, offset: base + start)
        }
        return v
    }

    mutating func unsignedArray(tensor: String, what: String) throws -> [Int] {
        try expect(UInt8(ascii: "["), "'[' to start \(what)", tensor: tensor)
        var out: [Int] = []
        if accept(UInt8(ascii: "]")) { return out }
        repeat {
            out.append(try unsigned(tensor: tensor, what: what))
        } while accept(UInt8(ascii: ","))
        try expect(UInt8(ascii: "]"), "',' or ']' in \(what)", tensor: tensor)
        return out
    }

    /// Parses the whole header.
    mutating func parse() throws -> (entries: [Entry], metadata: [(String, String)]) {
        guard bytes.count > 0, bytes[0] == UInt8(ascii: "{") else {
            throw fail("the header must start with '{'", at: 0)
        }
        i = 1
        var entries: [Entry] = []
        var metadata: [(String, String)] = []
        var seen = Set<String>()
        var sawMetadata = false
        if !accept(UInt8(ascii: "}")) {
            repeat {
                skipWhitespace()
                let keyOffset = base + i
                let name = try string()
                try expect(UInt8(ascii: ":"), "':' after a key", tensor: name)
                if name == "__metadata__" {
                    if sawMetadata { throw MalError(.duplicateKey, "duplicate key '__metadata__'", file: file, offset: keyOffset) }
                    sawMetadata = true
                    metadata = try parseMetadata()
                    continue
                }
                if !seen.insert(name).inserted {
                    throw MalError(.duplicateKey, "tensor name appears twice in the header", file: file, tensor: name, offset: keyOffset)
                }
                entries.append(try parseEntry(name: name, at: keyOffset))
            } while accept(UInt8(ascii: ","))
            try expect(UInt8(ascii: "}"), "',' or '}' after a header entry")
        }
        skipWhitespace()
        if i != bytes.count { throw fail("trailing data after the header object") }
        return (entries, metadata)
    }

    private mutating func parseMetadata() throws -> [(String, String)] {
        skipWhitespace()
        if i + 4 <= bytes.count, bytes[i] == UInt8(ascii: "n"), bytes[i + 1] == UInt8(ascii: "u"),
            bytes[i + 2] == UInt8(ascii: "l"), bytes[i + 3] == UInt8(ascii: "l")
        {
            i += 4
            return []
        }
        guard i < bytes.count, bytes[i] == UInt8(ascii: "{") else {
            throw MalError(.invalidMetadata, "__metadata__ must be an object of strings", file: file, offset: base + i)
        }
        i += 1
        var out: [(String, String)] = []
        var keys = Set<String>()
        if accept(UInt8(ascii: "}")) { return out }
        repeat {
            skipWhitespace()
            let at = base + i
            let k = try string()
            try expect(UInt8(ascii: ":"), "':' in __metadata__")
            skipWhitespace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else {
                throw MalError(.invalidMetadata, "__metadata__ value of '\(k)' is not a string", file: file, offset: base + i)
            }
            let v = try string()
            if !keys.insert(k).inserted {
                throw MalError(.duplicateKey, "duplicate key '\(k)' in __metadata__", file: file, offset: at)
            }
            out.append((k, v))
        } while accept(UInt8(ascii: ","))
        try expect(UInt8(ascii: "}"), "',' or '}' in __metadata__")
        return out
    }

    private mutating func parseEntry(name: String, at keyOffset: Int) throws -> Entry {
        try expect(UInt8(ascii: "{"), "'{' to start the tensor entry", tensor: name)
        var dtype: String?
        var dtypeOffset = 0
        var shape: [Int]?
        var offsets: [Int]?
        if !accept(UInt8(ascii: "}")) {
            repeat {
                skipWhitespace()
                let at = base + i
                let key = try string(tensor: name)
                try expect(UInt8(ascii: ":"), "':' after a key", tensor: name)
                func dup() -> MalError { MalError(.duplicateKey, "field '\(key)' appears twice", file: file, tensor: name, offset: at) }
                switch key {
                case "dtype":
                    if dtype != nil { throw dup() }
                    skipWhitespace()
                    dtypeOffset = base + i
                    dtype = try string(tensor: name)
                case "shape":
                    if shape != nil { throw dup() }
                    shape = try unsignedArray(tensor: name, what: "a shape dimension")
                case "data_offsets":
                    if offsets != nil { throw dup() }
                    skipWhitespace()
                    let o = base + i
                    offsets = try unsignedArray(tensor: name, what: "a data offset")
                    if offsets!.count != 2 {
                        throw MalError(
                            .invalidHeaderJSON, "data_offsets must hold exactly [begin, end]", file: file,
                            tensor: name, offset: o)
                    }
                default:
                    throw MalError(.invalidHeaderJSON, "unknown field '\(key)' in tensor entry", file: file, tensor: name, offset: at)
                }
            } while accept(UInt8(ascii: ","))
            try expect(UInt8(ascii: "}"), "',' or '}' in the tensor entry", tensor: name)
        }
        guard let dtype, let shape, let offsets else {
            let missing = [dtype == nil ? "dtype" : nil, shape == nil ? "shape" : nil, offsets == nil ? "data_offsets" : nil]
                .compactMap { $0 }.joined(separator: ", ")
            throw MalError(.invalidHeaderJSON, "tensor entry lacks \(missing)", file: file, tensor: name, offset: keyOffset)
        }
        return Entry(
            name: name, dtypeName: dtype, dtypeOffset: dtypeOffset, shape: shape, begin: offsets[0],
            end: offsets[1], entryOffset: keyOffset)
    }
}
