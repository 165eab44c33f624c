import MalCore
import MalReaders
import MalTransforms

/// Writes any `CanonicalModel` as a `.mal` container: model tensors (streamed), aliases, the
/// auxiliary files as `aux/` U8 tensors, and the metadata with provenance.
public enum ContainerExport {
    public struct Summary: Sendable {
        public var records: [MalWriter.Record]
        public var fileBytes: Int
        public var sourceBytes: Int
        public var seconds: Double
    }

    public static func write(_ model: CanonicalModel, to path: String, options: MalWriter.Options, command: String,
                             optionValues: [String: String], sources: [MalMetadata.SourceFile], dropped: [String],
                             quantization: MalMetadata.Quantization? = nil,
                             progress: ((Int, Int, String) -> Void)? = nil) throws -> Summary {
        let start = monotonicSeconds()
        let writer = try MalWriter(path: path, options: options)
        do {
            let all = model.tensors
            let data = all.filter { $0.aliasOf == nil }
            for (i, t) in data.enumerated() {
                progress?(i, all.count, t.name)
                let flags: UInt8 = t.scale != nil ? MalFormat.flagQuantized : 0
                if let s = try model.stream(t.name) {
                    try writer.add(name: t.name, dtype: s.dtype, shape: t.shape,
                                   source: ByteSource(byteCount: s.byteCount, release: s.release, fill: s.fill), flags: flags, link: t.scale)
                } else {
                    let tensor = try model.load(t.name)
                    try writer.add(name: t.name, dtype: tensor.dtype, shape: tensor.shape, source: .tensor(tensor), flags: flags, link: t.scale)
                }
            }
            for t in all where t.aliasOf != nil { try writer.addAlias(name: t.name, target: t.aliasOf!) }
            for name in model.auxNames where name != tokenizerBlobName {
                guard let bytes = try model.aux(name) else { continue }
                try writer.add(name: MalFile.auxPrefix + name, dtype: .u8, shape: [bytes.count], source: .bytes(bytes),
                               codec: bytes.isEmpty ? nil : .zstd)
            }
            if let blob = try tokenizerBlob(model) {
                try writer.add(name: MalFile.auxPrefix + tokenizerBlobName, dtype: .u8, shape: [blob.count], source: .bytes(blob), codec: .zstd)
            }
            progress?(all.count, all.count, "")
            let meta = MalMetadata(spec: model.spec, hfNamePrefix: model.hfNamePrefix, quantization: quantization,
                                   provenance: .init(converter: "malconv", converterVersion: malconvVersion, command: command,
                                                     options: optionValues, sources: sources, droppedTensors: dropped))
            try writer.finish(metadata: meta)
        } catch {
            writer.abandon()
            throw error
        }
        return Summary(records: writer.records, fileBytes: writer.bytesWritten, sourceBytes: sources.reduce(0) { $0 + $1.bytes },
                       seconds: monotonicSeconds() - start)
    }

    /// Name of the binary tokenizer (`TokenizerBinary`) among the auxiliary files.
    public static let tokenizerBlobName = "tokenizer.bin"

    /// The tokenizer in its fast-loading binary form, from `tokenizer.json` (+ config); nil when
    /// the model has none. A tokenizer the runtime cannot run is reported and left out (its JSON
    /// is still stored).
    static func tokenizerBlob(_ model: CanonicalModel) throws -> [UInt8]? {
        if let existing = try model.aux(tokenizerBlobName) { return existing }
        guard let json = try model.aux("tokenizer.json") else { return nil }
        do {
            let tj = try json.withUnsafeBytes { try JSONValue.parse($0, file: "tokenizer.json") }
            let cfg = try model.aux("tokenizer_config.json").map { b in try b.withUnsafeBytes { try JSONValue.parse($0, file: "tokenizer_config.json") } }
            return try TokenizerBinary.encode(try TokenizerJSONReader.parse(tj, config: cfg, file: "tokenizer.json"))
        } catch let e as MalError {
            printError("warning: tokenizer not stored in binary form: \(e)")
            return nil
        }
    }

    /// XXH64 of each source file (what `xxhsum -H1` prints), read through the mapping in 64 MiB
    /// steps whose pages are dropped as they go.
    public static func hashSources(_ paths: [String]) throws -> [MalMetadata.SourceFile] {
        try paths.map { p in
            let m = try MappedFile(path: p)
            var s = XXH64Stream()
            let step = 1 << 26
            var off = 0
            while off < m.size {
                let n = min(step, m.size - off)
                s.update(UnsafeRawBufferPointer(rebasing: m.bytes[off..<(off + n)]))
                m.release(off..<(off + n))
                off += n
            }
            return MalMetadata.SourceFile(name: baseName(p), bytes: m.size, xxh64: hex16(s.digest))
        }
    }
}

public func hex16(_ v: UInt64) -> String {
    let h = String(v, radix: 16)
    return String(repeating: "0", count: 16 - h.count) + h
}
