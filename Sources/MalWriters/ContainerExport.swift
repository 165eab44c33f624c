import MalCore

/// Writes any `CanonicalModel` as a `.mal` container: model tensors (streamed), aliases, the
/// auxiliary files as `aux/` U8 tensors, and the metadata with the model's provenance (source
/// files it has not hashed yet are hashed here).
public enum ContainerExport {
    public struct Summary: Sendable {
        public var records: [MalWriter.Record]
        public var fileBytes: Int
        public var sourceBytes: Int
        public var seconds: Double
    }

    public static func write(
        _ model: CanonicalModel, to path: String, options: MalWriter.Options, command: String,
        optionValues: [String: String], quantization: MalMetadata.Quantization? = nil,
        progress: ((Int, Int, String) -> Void)? = nil
    ) throws -> Summary {
        let start = monotonicSeconds()
        let origin = model.provenance
        let sources = try origin.recorded + hashSources(origin.unhashedFiles)
        let writer = try MalWriter(path: path, options: options)
        do {
            let all = model.tensors
            let data = all.filter { $0.aliasOf == nil }
            for (i, t) in data.enumerated() {
                progress?(i, all.count, t.name)
                let flags: UInt8 = t.scale != nil ? MalFormat.flagQuantized : 0
                if let s = try model.stream(t.name) {
                    try writer.add(
                        name: t.name, dtype: s.dtype, shape: t.shape,
                        source: ByteSource(byteCount: s.byteCount, release: s.release, fill: s.fill), flags: flags, link: t.scale)
                } else {
                    let tensor = try model.load(t.name)
                    try writer.add(name: t.name, dtype: tensor.dtype, shape: tensor.shape, source: .tensor(tensor), flags: flags, link: t.scale)
                }
            }
            for t in all where t.aliasOf != nil { try writer.addAlias(name: t.name, target: t.aliasOf!) }
            // The binary tokenizer goes last, after the files it is built from.
            let aux = model.auxNames
            for name in aux.filter({ $0 != MalFormat.tokenizerBinaryName }) + aux.filter({ $0 == MalFormat.tokenizerBinaryName }) {
                guard let bytes = try model.aux(name) else { continue }
                try writer.add(
                    name: MalFormat.auxPrefix + name, dtype: .u8, shape: [bytes.count], source: .bytes(bytes),
                    codec: bytes.isEmpty ? nil : .zstd)
            }
            progress?(all.count, all.count, "")
            var meta = MalMetadata(
                spec: model.spec, hfNamePrefix: model.hfNamePrefix, quantization: quantization,
                provenance: .init(
                    converter: "malconv", converterVersion: malconvVersion, command: command,
                    options: optionValues, sources: sources, droppedTensors: origin.droppedTensors))
            meta.blockShapes = blockExceptions(model)
            try writer.finish(metadata: meta)
        } catch {
            writer.abandon()
            throw error
        }
        return Summary(
            records: writer.records, fileBytes: writer.bytesWritten, sourceBytes: sources.reduce(0) { $0 + $1.bytes },
            seconds: monotonicSeconds() - start)
    }

    /// The quantised weights whose block is not the model's, by name (nil when there are none, so
    /// a uniformly quantised file records only the model-wide block).
    static func blockExceptions(_ model: CanonicalModel) -> [String: [Int]]? {
        let model0 = BlockShape.modelDefault(model.spec)
        var out: [String: [Int]] = [:]
        for t in model.tensors where t.scale != nil {
            if let b = t.block, b != model0 { out[t.name] = b.array }
        }
        return out.isEmpty ? nil : out
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
