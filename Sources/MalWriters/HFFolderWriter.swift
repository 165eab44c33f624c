import CMalKernels
import MalArchitectures
import MalCore
#if canImport(Glibc)
import Glibc
#endif

/// Writes a `CanonicalModel` as a Hugging Face model folder: `config.json` (Hub key style),
/// `model.safetensors` or shards of at most `maxShardBytes` with `model.safetensors.index.json`,
/// and the auxiliary files. Names and layouts are mapped back through the architecture's name rules, so a
/// lossless conversion exports byte-identical tensors. The folder is assembled under a temporary
/// name and renamed into place at the end.
public enum HFFolderWriter {
    /// One HF tensor to write and the canonical tensors it is made from.
    struct Planned {
        var name: String
        var dtype: DType
        var shape: [Int]
        var parts: [(canonical: String, layout: NameLayout)]
        var byteCount: Int
    }

    public struct Summary: Sendable {
        public var files: [String]
        public var tensors: Int
        public var bytes: Int
    }

    public static func write(
        _ model: CanonicalModel, to dir: String, maxShardBytes: Int? = nil, force: Bool = false,
        progress: ((Int, Int, String) -> Void)? = nil
    ) throws -> Summary {
        let plan = try planTensors(model)
        try checkDestination(dir, force: force)
        let folder = try TemporaryFolder(beside: dir)
        do {
            let shards = shardPlan(plan, maxShardBytes: maxShardBytes)
            var done = 0
            for (name, shard) in shards {
                try writeSafetensors(shard, model: model, path: folder.add(name)) { t in
                    progress?(done, plan.count, t)
                    done += 1
                }
            }
            if shards.count > 1 { try writeText(shardIndex(shards).prettySerialized, to: folder.add(HFFileNames.shardIndex)) }
            for aux in model.auxNames where HFFileNames.auxiliary.contains(aux) {
                guard let bytes = try auxiliaryFile(aux, of: model, plan: plan) else { continue }
                let f = try OutputFile(path: folder.add(aux))
                try f.write(bytes)
                try f.commit()
            }
            try folder.moveIntoPlace(dir)
        } catch {
            folder.remove()
            throw error
        }
        progress?(plan.count, plan.count, "")
        return Summary(files: folder.files, tensors: plan.count, bytes: plan.reduce(0) { $0 + $1.byteCount })
    }

    /// An existing destination must be an empty folder, or a model folder (no subfolders) that
    /// `--force` replaces.
    static func checkDestination(_ dir: String, force: Bool) throws {
        if isDirectory(dir) {
            let existing = try listDirectory(dir)
            if !existing.isEmpty && !force {
                throw MalError(.invalidArgument, "output folder exists and is not empty (use --force to replace it)", file: dir)
            }
            // --force replaces a model folder, never a tree: a folder with subfolders is not one.
            if let sub = existing.first(where: { isDirectory(joinPath(dir, $0)) }) {
                throw MalError(.invalidArgument, "output folder holds the folder '\(sub)': not a model folder to replace", file: dir)
            }
        } else if fileExists(dir) {
            throw MalError(.invalidArgument, "output exists and is a file, not a folder", file: dir)
        }
    }

    /// Shards: consecutive groups of the sorted plan of at most `maxShardBytes` (one file without
    /// a limit), named as transformers names them.
    static func shardPlan(_ plan: [Planned], maxShardBytes: Int?) -> [(name: String, tensors: [Planned])] {
        var shards: [[Planned]] = [[]]
        var size = 0
        for p in plan {
            if let m = maxShardBytes, size > 0, size + p.byteCount > m { shards.append([]); size = 0 }
            shards[shards.count - 1].append(p)
            size += p.byteCount
        }
        let n = shards.count
        let names = n == 1 ? ["model.safetensors"] : (1...n).map { "model-\(pad5($0))-of-\(pad5(n)).safetensors" }
        return Array(zip(names, shards))
    }

    /// `model.safetensors.index.json`: the total size and each tensor's shard.
    static func shardIndex(_ shards: [(name: String, tensors: [Planned])]) -> JSONValue {
        var map: [(String, JSONValue)] = []
        for (name, shard) in shards { for p in shard { map.append((p.name, .string(name))) } }
        map.sort { $0.0 < $1.0 }
        let total = shards.reduce(0) { $0 + $1.tensors.reduce(0) { $0 + $1.byteCount } }
        return .object([("metadata", .object([("total_size", .int(Int64(total)))])), ("weight_map", .object(map))])
    }

    /// An auxiliary file as it is written: `config.json` in the Hub key style, with the dtype the
    /// tensors now have and the model's quantisation; the others verbatim.
    static func auxiliaryFile(_ name: String, of model: CanonicalModel, plan: [Planned]) throws -> [UInt8]? {
        guard let bytes = try model.aux(name) else { return nil }
        guard name == "config.json" else { return bytes }
        let cfg = try bytes.withUnsafeBytes { try JSONValue.parse($0, file: "config.json") }
        let dtypes = Set(plan.map(\.dtype).filter { FloatCast.supported.contains($0) })
        let main = dtypes.count == 1 ? HubConfig.torchName(dtypes.first!) : nil
        return Array(
            HubConfig.rewrite(cfg, dtype: main ?? model.spec.declaredDType, quantization: model.spec.quantization)
                .prettySerialized.utf8)
    }

    static func pad5(_ i: Int) -> String { let s = String(i); return String(repeating: "0", count: max(0, 5 - s.count)) + s }

    static func writeText(_ s: String, to path: String) throws {
        let f = try OutputFile(path: path)
        try f.write(Array(s.utf8))
        try f.commit()
    }

    /// HF tensors, with GPT-2's q/k/v parts fused back; sorted like the safetensors writer
    /// (descending dtype alignment, then name).
    static func planTensors(_ model: CanonicalModel) throws -> [Planned] {
        if let a = model.spec.mla?.absorbed {
            throw MalError(
                .unsupported, "this model's MLA weights are absorbed (\(a)); that layout has no HF tensor names. Export the model before `absorb-mla`")
        }
        let arch = try ArchitectureRegistry.architecture(of: model.spec)
        let prefix = model.hfNamePrefix
        var byHF: [String: Planned] = [:]
        var order: [String] = []
        for t in model.tensors {
            guard let (hf, layout) = arch.toHF(t.name, hfNamePrefix: prefix) else {
                throw MalError(.unmappedTensor, "no HF name for this canonical tensor", tensor: t.name)
            }
            if t.scale != nil, let b = t.block, b != .modelDefault(model.spec) {
                throw MalError(
                    .unsupported,
                    "has \(b) blocks, not the model's \(BlockShape.modelDefault(model.spec)): an HF config has one "
                        + "weight_block_size for every FP8 weight; write a .mal file (-o OUT.mal)", tensor: t.name)
            }
            if t.scale != nil && layout != .identity {
                throw MalError(
                    .unsupported,
                    "this quantised weight is stored fused or transposed in HF checkpoints (\(hf), GPT-2's Conv1D), "
                        + "which has no FP8 safetensors layout; write a .mal file (-o OUT.mal)", tensor: t.name)
            }
            let bytes = t.byteCount ?? 0
            if var p = byHF[hf] {
                guard case .splitQKV = layout, p.dtype == t.dtype else {
                    throw MalError(.invalidArgument, "two tensors map to the same HF name '\(hf)'", tensor: t.name)
                }
                p.parts.append((t.name, layout))
                p.byteCount += bytes
                byHF[hf] = p
                continue
            }
            let shape: [Int]
            switch layout {
            case .identity: shape = t.shape
            case .transposed:
                guard t.shape.count == 2 else {
                    throw MalError(.invalidShape, "a Linear weight must have rank 2, found shape \(t.shape)", tensor: t.name)
                }
                shape = [t.shape[1], t.shape[0]]
            case let .splitQKV(_, weight):
                guard t.shape.count == (weight ? 2 : 1) else {
                    throw MalError(
                        .invalidShape, "a q/k/v \(weight ? "weight" : "bias") must have rank \(weight ? 2 : 1), found shape \(t.shape)",
                        tensor: t.name)
                }
                shape = t.shape
            }
            byHF[hf] = Planned(name: hf, dtype: t.dtype, shape: shape, parts: [(t.name, layout)], byteCount: bytes)
            order.append(hf)
        }
        var out = try order.map { try fused(byHF[$0]!, model: model) }
        out.sort { ($0.dtype.bitSize, $1.name) > ($1.dtype.bitSize, $0.name) }
        return out
    }

    /// A planned tensor with GPT-2's q, k and v parts put back in order (all three, one shape) and
    /// the fused shape; other tensors as they are.
    static func fused(_ planned: Planned, model: CanonicalModel) throws -> Planned {
        var p = planned
        let name = p.name
        guard case .splitQKV = p.parts[0].layout else { return p }
        guard p.parts.count == 3 else {
            throw MalError(.invalidArgument, "fused tensor needs its q, k and v parts, found \(p.parts.count)", tensor: name)
        }
        p.parts.sort { partIndex($0.layout) < partIndex($1.layout) }
        let shapes = p.parts.map { part in model.tensors.first { $0.name == part.canonical }?.shape ?? [] }
        guard Set(p.parts.map { partIndex($0.layout) }).count == 3, shapes.allSatisfy({ $0 == shapes[0] }) else {
            throw MalError(.invalidShape, "the q, k and v parts of a fused tensor must have one shape, found \(shapes)", tensor: name)
        }
        if case let .splitQKV(_, weight) = p.parts[0].layout {
            let first = shapes[0]
            p.shape = weight ? [first[1], first[0] * 3] : [first[0] * 3]
        }
        return p
    }

    static func partIndex(_ l: NameLayout) -> Int { if case let .splitQKV(k, _) = l { return k }; return 0 }

    /// Writes one safetensors file: header (padded with spaces to 8 bytes), then each tensor's bytes.
    static func writeSafetensors(_ tensors: [Planned], model: CanonicalModel, path: String, each: (String) -> Void) throws {
        let f = try OutputFile(path: path)
        do {
            try f.write(safetensorsHeader(tensors.map { ($0.name, $0.dtype, $0.shape, $0.byteCount) }))
            for t in tensors {
                each(t.name)
                if t.parts[0].layout == .identity, let s = try model.stream(t.parts[0].canonical) {
                    try write(s, to: f)  // passed through a range at a time
                    continue
                }
                let bytes = try produce(t, model: model)
                try bytes.withBytes { try f.write($0) }
            }
            try f.commit()
        } catch {
            f.abandon()
            throw error
        }
    }

    /// A streamed tensor in 16 MiB pieces (its source releases what each piece read).
    static func write(_ s: TensorStream, to f: OutputFile) throws {
        let step = 16 << 20
        let buf = UnsafeMutableRawPointer.allocate(byteCount: min(step, max(s.byteCount, 1)), alignment: 64)
        defer { buf.deallocate() }
        var off = 0
        while off < s.byteCount {
            let n = min(step, s.byteCount - off)
            try s.fill(off, n, buf)
            try f.write(UnsafeRawBufferPointer(start: buf, count: n))
            s.release(off..<(off + n))
            off += n
        }
    }

    /// The HF bytes of a planned tensor.
    static func produce(_ t: Planned, model: CanonicalModel) throws -> Tensor {
        let es = t.dtype.byteSize ?? 1
        switch t.parts[0].layout {
        case .identity:
            return try model.load(t.parts[0].canonical)
        case .transposed:
            let c = try model.load(t.parts[0].canonical)
            let s = c.withBytes { Relayout.transposedColumns($0, rows: c.shape[0], cols: c.shape[1], colStart: 0, colCount: c.shape[1], elementSize: es) }
            return Tensor(name: t.name, dtype: t.dtype, shape: t.shape, storage: s)
        case let .splitQKV(_, weight):
            let parts = try t.parts.map { try model.load($0.canonical) }
            if weight {
                let s = withExtendedLifetime(parts) {
                    Relayout.concatTransposed(parts.map { ($0.bytes, $0.shape[0]) }, rows: parts[0].shape[1], elementSize: es)
                }
                return Tensor(name: t.name, dtype: t.dtype, shape: t.shape, storage: s)
            }
            var all: [UInt8] = []
            for p in parts { all += p.byteArray }
            return all.withUnsafeBytes { Tensor(name: t.name, dtype: t.dtype, shape: t.shape, storage: TensorStorage(copying: $0)) }
        }
    }
}
