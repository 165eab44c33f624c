import MalArchitectures
import MalCore

/// An HF checkpoint mapped to canonical names (`Formats/NAMES.md`), with an optional dtype cast.
///
/// Built from the checkpoint's headers only; bytes are produced tensor by tensor on demand, as
/// views of the mapping (identity layout, no cast) or computed (GPT-2 transposes and splits,
/// casts). Refuses checkpoints with missing, unexpected or mis-shaped tensors.
public final class HFCanonicalModel: CanonicalModel, @unchecked Sendable {
    public let model: HFModel
    public let target: TargetDType
    public let spec: ModelSpec
    public let hfNamePrefix: String?
    public private(set) var tensors: [CanonicalTensor] = []
    /// Parameter-free buffers of the source that are not carried over.
    public private(set) var dropped: [String] = []
    /// Stop at the first NaN or infinity in a produced tensor: the source's, or one that a cast
    /// created (F32 → F16 beyond ±65504). `--allow-nonfinite` turns it off.
    public var checkFinite = true
    struct Origin { var hf: TensorInfo; var layout: NameLayout }
    private var origins: [String: Origin] = [:]

    /// Files beside the weights that travel with the model.
    public static let auxFileNames = HFFileNames.auxiliary

    public init(model: HFModel, target: TargetDType = .keep) throws {
        self.model = model
        self.target = target
        let arch = try ArchitectureRegistry.architecture(of: model.spec)
        let prefix = arch.hfNamePrefix(tensorNames: model.tensors.map(\.name))
        hfNamePrefix = prefix
        let inv = model.inventory()
        if !inv.isClean {
            var parts: [String] = []
            if !inv.missing.isEmpty { parts.append("missing: " + inv.missing.prefix(5).joined(separator: ", ")) }
            if !inv.unexpected.isEmpty { parts.append("unexpected: " + inv.unexpected.prefix(5).joined(separator: ", ")) }
            if !inv.misshaped.isEmpty {
                parts.append("mis-shaped: " + inv.misshaped.prefix(5).map { "\($0.name) \($0.found) (expected \($0.expected))" }.joined(separator: ", "))
            }
            throw MalError(
                .unmappedTensor, "the checkpoint does not match its config (\(parts.joined(separator: "; "))); see `malconv inspect`",
                file: model.path, tensor: inv.unexpected.first ?? inv.missing.first ?? inv.misshaped.first?.name)
        }
        var s = model.spec
        if let d = target.dtype { s.declaredDType = d == .bf16 ? "bfloat16" : d == .f16 ? "float16" : "float32" }
        spec = s
        for t in model.tensors {
            if HFTensorLayout.isIgnorable(t.name) { dropped.append(t.name); continue }
            guard let maps = arch.toCanonical(t.name, hfNamePrefix: prefix) else {
                throw MalError(.unmappedTensor, "no canonical name for this tensor", file: t.file, tensor: t.name, offset: t.fileOffset)
            }
            for m in maps {
                let shape: [Int]
                switch m.layout {
                case .identity: shape = t.shape
                case .transposed: shape = [t.shape[1], t.shape[0]]
                case let .splitQKV(_, weight):
                    shape = weight ? [t.shape[1] / 3, t.shape[0]] : [t.shape[0] / 3]
                }
                origins[m.canonical] = Origin(hf: t, layout: m.layout)
                tensors.append(CanonicalTensor(name: m.canonical, dtype: outputDType(m.canonical, t.dtype), shape: shape))
            }
        }
        // FP8 weights point at their scales; a checkpoint has one block shape (`weight_block_size`).
        let names = Set(tensors.map(\.name))
        for i in tensors.indices where tensors[i].dtype.isFP8 && tensors[i].name.hasSuffix(".weight") {
            let scale = String(tensors[i].name.dropLast(".weight".count)) + ".scale_inv"
            if names.contains(scale) {
                tensors[i].scale = scale
                tensors[i].block = .modelDefault(s)
            }
        }
        try findAliases()
    }

    /// Floats are cast when asked, except FP8 weights, their scales and DeepSeek's routing bias
    /// (`exp_probs_b`: rounding it would change which experts are chosen).
    func outputDType(_ canonical: String, _ d: DType) -> DType {
        guard let to = target.dtype, FloatCast.supported.contains(d) else { return d }
        if canonical.hasSuffix(".scale_inv") || canonical.contains("exp_probs_b") { return d }
        return to
    }

    /// Tied heads and the DeepSeek MTP copies of the embedding and head are recorded once when
    /// their bytes are identical to the main tensor.
    func findAliases() throws {
        var pairs: [(String, String)] = [("output.weight", "token_embd.weight")]
        for m in 0..<spec.mtpLayers {
            let l = spec.layers + m
            pairs.append(("blk.\(l).nextn.embed_tokens.weight", "token_embd.weight"))
            pairs.append(("blk.\(l).nextn.shared_head_head.weight", "output.weight"))
            pairs.append(("blk.\(l).nextn.shared_head_head.weight", "token_embd.weight"))
        }
        for (copy, main) in pairs {
            guard let ci = tensors.firstIndex(where: { $0.name == copy }), tensors[ci].aliasOf == nil,
                let mi = tensors.firstIndex(where: { $0.name == main }),
                let a = origins[copy], let b = origins[main], a.layout == .identity, b.layout == .identity,
                a.hf.dtype == b.hf.dtype, a.hf.shape == b.hf.shape, tensors[ci].dtype == tensors[mi].dtype
            else { continue }
            if try sameBytes(a.hf, b.hf) { tensors[ci].aliasOf = tensors[mi].aliasOf ?? main }
        }
    }

    func sameBytes(_ a: TensorInfo, _ b: TensorInfo) throws -> Bool {
        let ta = try model.checkpoint.tensor(named: a.name), tb = try model.checkpoint.tensor(named: b.name)
        let n = ta.bytes.count
        let step = 1 << 24
        var off = 0
        while off < n {
            let len = min(step, n - off)
            let same = withExtendedLifetime((ta, tb)) { memcmpBytes(ta.bytes.baseAddress! + off, tb.bytes.baseAddress! + off, len) == 0 }
            if !same { return false }
            releasePages(a, off..<(off + len))
            releasePages(b, off..<(off + len))
            off += len
        }
        return true
    }

    func releasePages(_ t: TensorInfo, _ r: Range<Int>) {
        guard let f = model.checkpoint.files.first(where: { $0.path == t.file || $0.mapping.path == t.file }) else { return }
        f.mapping.release((t.fileOffset + r.lowerBound)..<(t.fileOffset + r.upperBound))
    }

    /// The files beside the weights, and the binary tokenizer built from `tokenizer.json`.
    public var auxNames: [String] {
        let files = HFCanonicalModel.auxFileNames.filter { fileExists(joinPath(model.folder, $0)) }
        return files + (files.contains("tokenizer.json") ? [MalFormat.tokenizerBinaryName] : [])
    }

    public func aux(_ name: String) throws -> [UInt8]? {
        if name == MalFormat.tokenizerBinaryName { return try tokenizerBinary() }
        let p = joinPath(model.folder, name)
        guard fileExists(p) else { return nil }
        let m = try MappedFile(path: p)
        return withExtendedLifetime(m) { Array(m.bytes) }
    }

    /// The tokenizer in its fast-loading binary form, from `tokenizer.json` (+ config); nil when
    /// the model has none. A tokenizer the runtime cannot run is reported and left out (its JSON
    /// still travels).
    func tokenizerBinary() throws -> [UInt8]? {
        guard let json = try aux("tokenizer.json") else { return nil }
        do {
            let tj = try json.withUnsafeBytes { try JSONValue.parse($0, file: "tokenizer.json") }
            let cfg = try aux("tokenizer_config.json").map { b in try b.withUnsafeBytes { try JSONValue.parse($0, file: "tokenizer_config.json") } }
            return try TokenizerBinary.encode(try TokenizerJSONReader.parse(tj, config: cfg, file: "tokenizer.json"))
        } catch let e as MalError {
            printError("warning: tokenizer not stored in binary form: \(e)")
            return nil
        }
    }

    public var provenance: ModelProvenance {
        ModelProvenance(unhashedFiles: model.checkpoint.files.map(\.path), droppedTensors: dropped)
    }

    /// The HF tensor a canonical tensor comes from.
    public func origin(_ name: String) -> (hf: TensorInfo, layout: NameLayout)? { origins[name].map { ($0.hf, $0.layout) } }

    /// Streaming source of the canonical tensor's bytes (cast chunk by chunk; pages dropped as
    /// they are consumed). Transposed and split tensors are materialised first.
    public func stream(_ name: String) throws -> TensorStream? { try source(name) }

    func source(_ name: String) throws -> TensorStream {
        guard let o = origins[name], let ct = tensors.first(where: { $0.name == name }) else {
            throw MalError(.notFound, "no such tensor", file: model.path, tensor: name)
        }
        let es = o.hf.dtype.byteSize ?? 1
        let (srcStorage, sourceFile) = try canonicalBytes(o)
        let from = o.hf.dtype, to = ct.dtype
        let src = SharedPointer(srcStorage.bytes)
        let keep = srcStorage
        let outES = to.byteSize ?? 1
        let count = (elementCount(ct.shape) ?? 0)
        let byteCount = to.byteCount(elements: count) ?? 0
        let base = o.hf.fileOffset
        let mapping = sourceFile  // MappedFile is Sendable: no wrapper
        let check = checkFinite && NonFiniteScan.covered.contains(to)
        let origin = o, canonical = ct
        let fill: @Sendable (Int, Int, UnsafeMutableRawPointer) throws -> Void = { off, n, dst in
            _ = keep
            let e0 = off / outES, ne = n / outES
            if from == to {
                dst.copyMemory(from: src.pointer.baseAddress! + off, byteCount: n)
            } else {
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(ne, 1))
                defer { scratch.deallocate() }
                FloatCast.cast(src.pointer.baseAddress! + e0 * es, from: from, dst, to: to, count: ne, scratch: scratch)
            }
            if check, let bad = NonFiniteScan.firstIndex(UnsafeRawPointer(dst), dtype: to, count: ne) {
                throw HFCanonicalModel.nonFinite(
                    element: e0 + bad, canonical: canonical, origin: origin,
                    source: UnsafeRawPointer(src.pointer.baseAddress!))
            }
        }
        let release: @Sendable (Range<Int>) -> Void = { r in
            guard let m = mapping else { return }
            // Output range → source range (same element count).
            let lo = r.lowerBound / outES * es, hi = r.upperBound / outES * es
            m.release((base + lo)..<(base + hi))
        }
        return TensorStream(dtype: to, byteCount: byteCount, fill: fill, release: release)
    }

    /// The HF tensor's bytes in the canonical layout (a view of the mapping for the identity, a
    /// copy for GPT-2's transposes and q/k/v parts), and the mapped file when they are a view.
    func canonicalBytes(_ o: Origin) throws -> (TensorStorage, MappedFile?) {
        let hf = try model.checkpoint.tensor(named: o.hf.name)
        let es = o.hf.dtype.byteSize ?? 1, rows = o.hf.shape.first ?? 0, cols = o.hf.shape.count > 1 ? o.hf.shape[1] : 0
        return withExtendedLifetime(hf) {
            switch o.layout {
            case .identity:
                let file = model.checkpoint.files.first { $0.path == o.hf.file || $0.mapping.path == o.hf.file }?.mapping
                return (hf.storage, hf.storage.isZeroCopy ? file : nil)
            case .transposed:
                return (Relayout.transposedColumns(hf.bytes, rows: rows, cols: cols, colStart: 0, colCount: cols, elementSize: es), nil)
            case let .splitQKV(part, weight):
                if weight {
                    let w = cols / 3
                    return (Relayout.transposedColumns(hf.bytes, rows: rows, cols: cols, colStart: part * w, colCount: w, elementSize: es), nil)
                }
                let n = rows / 3 * es
                return (TensorStorage(copying: UnsafeRawBufferPointer(rebasing: hf.bytes[(part * n)..<((part + 1) * n)])), nil)
            }
        }
    }

    /// The error for a NaN or infinity at canonical element `e`: the HF tensor, its file and the
    /// element's byte offset there, and whether the source held it or the cast made it.
    static func nonFinite(element e: Int, canonical ct: CanonicalTensor, origin o: Origin, source: UnsafeRawPointer) -> MalError {
        let hf = o.hf, es = hf.dtype.byteSize ?? 1
        let cols = ct.shape.count == 2 ? ct.shape[1] : max(ct.shape.last ?? 1, 1)
        let (r, c) = (e / cols, e % cols)
        let srcIndex: Int  // element index in the HF tensor
        switch o.layout {
        case .identity: srcIndex = e
        case .transposed: srcIndex = c * hf.shape[1] + r
        case let .splitQKV(part, weight): srcIndex = weight ? c * hf.shape[1] + part * ct.shape[0] + r : part * ct.shape[0] + e
        }
        var value = Float.nan  // `source` is in the canonical layout, HF dtype
        try? widenToFloat32(source + e * es, dtype: hf.dtype, count: 1, into: &value)
        let position = ct.shape.count == 2 ? "row \(r), column \(c)" : "element \(e)"
        let what =
            value.isFinite
            ? "\(value) overflows \(ct.dtype.rawValue) in the cast"
            : "\(value.isNaN ? "NaN" : "infinity") in the checkpoint"
        return MalError(
            .nonFiniteValue, "\(what) at \(position) of \(ct.name) (HF \(hf.name), element \(srcIndex))",
            file: hf.file, tensor: hf.name, offset: hf.fileOffset + srcIndex * es)
    }

    public func load(_ name: String) throws -> Tensor {
        let s = try source(name)
        let storage = try TensorStorage.allocate(count: s.byteCount)
        try s.fill(0, s.byteCount, UnsafeMutableRawPointer(mutating: storage.bytes.baseAddress!))
        // The copy is made: drop the source's mapped pages, or a transform that loads tensor
        // after tensor (quantize, absorb) keeps the whole input resident.
        s.release(0..<s.byteCount)
        let ct = tensors.first { $0.name == name }!
        return Tensor(name: name, dtype: s.dtype, shape: ct.shape, storage: storage)
    }
}

#if canImport(Glibc)
import Glibc
func memcmpBytes(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ n: Int) -> Int32 { memcmp(a, b, n) }
#endif
