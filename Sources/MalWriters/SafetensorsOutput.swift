import MalCore

/// The safetensors header of tensors laid out back to back in the given order: the u64 length
/// prefix and the JSON (with `__metadata__ {"format": "pt"}`), padded with spaces to 8 bytes as
/// the reference writer does.
public func safetensorsHeader(_ tensors: [(name: String, dtype: DType, shape: [Int], byteCount: Int)]) -> [UInt8] {
    var header: [(String, JSONValue)] = [("__metadata__", .object([("format", .string("pt"))]))]
    var offset = 0
    for t in tensors {
        header.append(
            (
                t.name,
                .object([
                    ("dtype", .string(t.dtype.rawValue)), ("shape", .array(t.shape.map { .int(Int64($0)) })),
                    ("data_offsets", .array([.int(Int64(offset)), .int(Int64(offset + t.byteCount))])),
                ])
            ))
        offset += t.byteCount
    }
    var text = Array(JSONValue.object(header).serialized.utf8)
    text += [UInt8](repeating: 0x20, count: (8 - text.count % 8) % 8)
    var w = ByteWriter()
    w.u64(UInt64(text.count))
    return w.data + text
}

/// Writes small float32 tensors to a safetensors file (logits dumps), atomically; an existing file
/// is replaced only with `replace`.
public enum SafetensorsOutput {
    public static func write(path: String, tensors: [(name: String, shape: [Int], values: [Float])], replace: Bool = false) throws {
        let f = try OutputFile(path: path, replace: replace)
        do {
            try f.write(safetensorsHeader(tensors.map { ($0.name, DType.f32, $0.shape, $0.values.count * 4) }))
            for t in tensors { try t.values.withUnsafeBytes { try f.write($0) } }
            try f.commit()
        } catch {
            f.abandon()
            throw error
        }
    }
}
