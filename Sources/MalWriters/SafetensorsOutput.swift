import MalCore

/// Writes small float32 tensors to a safetensors file (logits dumps), atomically.
public enum SafetensorsOutput {
    public static func write(path: String, tensors: [(name: String, shape: [Int], values: [Float])]) throws {
        var header: [(String, JSONValue)] = []
        var offset = 0
        for t in tensors {
            let n = t.values.count * 4
            header.append((t.name, .object([("dtype", .string("F32")), ("shape", .array(t.shape.map { .int(Int64($0)) })),
                                            ("data_offsets", .array([.int(Int64(offset)), .int(Int64(offset + n))]))])))
            offset += n
        }
        var text = Array(JSONValue.object(header).serialized.utf8)
        text += [UInt8](repeating: 0x20, count: (8 - text.count % 8) % 8)
        let f = try OutputFile(path: path)
        do {
            var w = ByteWriter()
            w.u64(UInt64(text.count))
            try f.write(w.data)
            try f.write(text)
            for t in tensors { try t.values.withUnsafeBytes { try f.write($0) } }
            try f.commit()
        } catch {
            f.abandon()
            throw error
        }
    }
}
