import MalCore

/// What `malconv inspect` shows for a `.mal` file: the model spec it records, how its tensors are
/// stored (per dtype and per codec: raw and stored bytes) and where it came from.
public struct MalSummary: Codable, Sendable {
    public struct Group: Codable, Sendable, Equatable {
        public var name: String
        public var tensors: Int
        public var elements: Int
        public var rawBytes: Int
        public var storedBytes: Int
    }

    public struct TensorRow: Codable, Sendable, Equatable {
        public var name: String
        public var dtype: String
        public var shape: [Int]
        public var codec: String
        public var rawBytes: Int
        public var storedBytes: Int
        /// For an alias (tied or shared copy): the tensor whose data it is.
        public var aliasOf: String?
    }

    public var path: String
    public var formatVersion: String
    public var architecture: String
    public var spec: ModelSpec
    public var fileBytes: Int
    /// Elements of the model's tensors (as the source checkpoint counts them: aliases included, FP8
    /// scale grids not), and of the distinct ones (aliases, which are stored once, not counted).
    public var parameters: Int
    public var uniqueParameters: Int
    public var scaleElements: Int
    public var tensorCount: Int
    public var aliases: Int
    /// Tensor bytes as stored in memory after decoding, and as compressed in the file (aliases: 0).
    public var rawBytes: Int
    public var storedBytes: Int
    public var byDType: [Group]
    public var byCodec: [Group]
    public var auxFiles: [String]
    public var quantization: MalMetadata.Quantization?
    public var provenance: MalMetadata.Provenance
    public var tensors: [TensorRow]

    public init(file m: MalFile) {
        path = m.path
        formatVersion = m.metadata.formatVersion
        architecture = m.metadata.architecture
        spec = m.spec
        fileBytes = m.mapping.size
        let model = m.modelEntries
        var rows: [TensorRow] = []
        for e in model {
            let stored = e.codec == .alias ? 0 : e.chunks.reduce(0) { $0 + Int($1.storedLength) }
            rows.append(
                TensorRow(
                    name: e.name, dtype: e.dtype.rawValue, shape: e.shape, codec: e.codec.description,
                    rawBytes: e.codec == .alias ? 0 : Int(e.rawLength), storedBytes: stored,
                    aliasOf: e.codec == .alias ? m.entries[Int(e.link)].name : nil))
        }
        tensors = rows
        tensorCount = rows.count
        aliases = rows.filter { $0.aliasOf != nil }.count
        let isScale: (String) -> Bool = { $0.hasSuffix(".scale_inv") }
        let real = rows.filter { $0.aliasOf == nil }
        parameters = rows.filter { !isScale($0.name) }.reduce(0) { $0 + $1.shape.reduce(1, *) }
        uniqueParameters = real.filter { !isScale($0.name) }.reduce(0) { $0 + $1.shape.reduce(1, *) }
        scaleElements = real.filter { isScale($0.name) }.reduce(0) { $0 + $1.shape.reduce(1, *) }
        rawBytes = rows.reduce(0) { $0 + $1.rawBytes }
        storedBytes = rows.reduce(0) { $0 + $1.storedBytes }
        func group(_ key: (TensorRow) -> String) -> [Group] {
            var by: [String: Group] = [:]
            for r in rows {
                by[key(r), default: Group(name: key(r), tensors: 0, elements: 0, rawBytes: 0, storedBytes: 0)].tensors += 1
                by[key(r)]!.elements += r.aliasOf == nil ? r.shape.reduce(1, *) : 0
                by[key(r)]!.rawBytes += r.rawBytes
                by[key(r)]!.storedBytes += r.storedBytes
            }
            return by.values.sorted { $0.name < $1.name }
        }
        byDType = group(\.dtype)
        byCodec = group(\.codec)
        auxFiles = m.auxNames
        quantization = m.metadata.quantization
        provenance = m.metadata.provenance
    }
}

extension SummaryText {
    /// Text form of a `.mal` summary; `tensors` adds one line per tensor with its codec and sizes.
    public static func render(_ s: MalSummary, tensors: Bool = false) -> String {
        func ratio(_ raw: Int, _ stored: Int) -> String { stored > 0 ? "x" + String(format2(Double(raw) / Double(stored))) : "-" }
        var o = "\(s.path)\n"
        o +=
            "  container      MAL \(s.formatVersion), \(s.fileBytes) bytes: \(s.rawBytes) bytes of tensors stored in \(s.storedBytes) "
            + "(\(ratio(s.rawBytes, s.storedBytes)))\n"
        o += "  architecture   \(s.architecture)\n"
        o += specLines(s.spec)
        if let q = s.quantization {
            o += "  quantization   \(q.format), blocks \(q.blockSize.map(String.init).joined(separator: "x")), scale \(q.scale)\n"
        } else {
            o += "  quantization   none\n"
        }
        if let a = s.spec.mla?.absorbed { o += "  mla absorbed   \(a)\n" }
        o += "  parameters     \(s.parameters) (\(human(Double(s.parameters))))"
        o += s.scaleElements > 0 ? "; \(s.scaleElements) scale values" : ""
        o += "; \(s.tensorCount) tensors" + (s.aliases > 0 ? ", \(s.aliases) of them aliases (\(s.uniqueParameters) distinct parameters)" : "") + "\n"
        func line(_ g: MalSummary.Group) -> String {
            "    \(g.name.padding(12))\(String(g.tensors).leftPad(6)) tensors \(String(g.rawBytes).leftPad(14)) -> "
                + "\(String(g.storedBytes).leftPad(14))  \(ratio(g.rawBytes, g.storedBytes))\n"
        }
        o += "  by dtype       raw bytes -> stored bytes\n" + s.byDType.map(line).joined()
        o += "  by codec\n" + s.byCodec.map(line).joined()
        if !s.auxFiles.isEmpty { o += "  aux files      \(s.auxFiles.joined(separator: ", "))\n" }
        let p = s.provenance
        o += "  made by        \(p.converter) \(p.converterVersion): \(p.command)\n"
        for src in p.sources { o += "    from \(src.name) (\(src.bytes) bytes, xxh64 \(src.xxh64))\n" }
        if tensors {
            for t in s.tensors {
                o += "    \(t.name)  \(t.dtype) \(t.shape)  \(t.codec)"
                o += t.aliasOf.map { " of \($0)" } ?? "  \(t.rawBytes) -> \(t.storedBytes)"
                o += "\n"
            }
        }
        return o
    }

    static func format2(_ x: Double) -> Double { (x * 1000).rounded() / 1000 }
}
