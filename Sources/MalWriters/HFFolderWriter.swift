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

    /// Puts the finished folder `tmp` at `dir`, where a folder exists, and removes the old one.
    static func replaceFolder(_ dir: String, with tmp: String) throws {
        if mal_rename_exchange(tmp, dir) == 0 {
            // `tmp` now names the old folder (still registered for removal on an interrupt); it
            // holds files only (checked before writing).
            for f in (try? listDirectory(tmp)) ?? [] { unlink(joinPath(tmp, f)) }
            rmdir(tmp)
            mal_unregister_temp(tmp)
            return
        }
        let aside = joinPath(parentDirectory(dir), ".\(baseName(dir)).old-\(getpid())")
        guard rename(dir, aside) == 0 else {
            throw MalError(.ioError, "cannot move the existing folder aside: \(String(cString: strerror(errno)))", file: dir)
        }
        guard rename(tmp, dir) == 0 else {
            let e = errno
            rename(aside, dir)
            throw MalError(.ioError, "cannot rename into place: \(String(cString: strerror(e)))", file: dir)
        }
        mal_unregister_temp(tmp)
        for f in (try? listDirectory(aside)) ?? [] { unlink(joinPath(aside, f)) }
        rmdir(aside)
    }

    public static func write(_ model: CanonicalModel, to dir: String, maxShardBytes: Int? = nil, force: Bool = false,
                             progress: ((Int, Int, String) -> Void)? = nil) throws -> Summary {
        let plan = try planTensors(model)
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
        let tmp = joinPath(parentDirectory(dir), ".\(baseName(dir)).tmp-\(getpid())")
        mal_install_cleanup_handlers()
        mal_register_temp(tmp)
        guard mkdir(tmp, 0o755) == 0 else {
            mal_unregister_temp(tmp)
            throw MalError(.ioError, "cannot create folder: \(String(cString: strerror(errno)))", file: tmp)
        }
        // Every file of the folder is registered too (after the folder, so a signal removes the
        // files first and then the folder) and unregistered once the folder is in place.
        var written: [String] = []
        func add(_ name: String) {
            written.append(name)
            mal_register_temp(joinPath(tmp, name))
        }
        func unregisterFiles() { for f in written { mal_unregister_temp(joinPath(tmp, f)) } }
        func cleanup() {
            for f in written { unlink(joinPath(tmp, f)) }
            unregisterFiles()
            rmdir(tmp)
            mal_unregister_temp(tmp)
        }
        do {
            // Shards: consecutive groups of the sorted plan.
            var shards: [[Planned]] = [[]]
            var size = 0
            for p in plan {
                if let m = maxShardBytes, size > 0, size + p.byteCount > m { shards.append([]); size = 0 }
                shards[shards.count - 1].append(p)
                size += p.byteCount
            }
            let n = shards.count
            let names = n == 1 ? ["model.safetensors"] : (1...n).map { "model-\(pad5($0))-of-\(pad5(n)).safetensors" }
            var done = 0
            for (shard, name) in zip(shards, names) {
                add(name)
                try writeSafetensors(shard, model: model, path: joinPath(tmp, name)) { t in
                    progress?(done, plan.count, t)
                    done += 1
                }
            }
            if n > 1 {
                var map: [(String, JSONValue)] = []
                for (shard, name) in zip(shards, names) { for p in shard { map.append((p.name, .string(name))) } }
                map.sort { $0.0 < $1.0 }
                let total = plan.reduce(0) { $0 + $1.byteCount }
                let index = JSONValue.object([("metadata", .object([("total_size", .int(Int64(total)))])), ("weight_map", .object(map))])
                add(HFFileNames.shardIndex)
                try writeText(index.prettySerialized, to: joinPath(tmp, HFFileNames.shardIndex))
            }
            for aux in model.auxNames where HFFileNames.auxiliary.contains(aux) {
                guard var bytes = try model.aux(aux) else { continue }
                if aux == "config.json" {
                    let cfg = try bytes.withUnsafeBytes { try JSONValue.parse($0, file: "config.json") }
                    let dtypes = Set(plan.map(\.dtype).filter { FloatCast.supported.contains($0) })
                    let main = dtypes.count == 1 ? HubConfig.torchName(dtypes.first!) : nil
                    bytes = Array(HubConfig.rewrite(cfg, dtype: main ?? model.spec.declaredDType,
                                                    quantization: model.spec.quantization).prettySerialized.utf8)
                }
                add(aux)
                let f = try OutputFile(path: joinPath(tmp, aux))
                try f.write(bytes)
                try f.commit()
            }
            // Into place. An existing folder is swapped with the new one in one atomic step
            // (RENAME_EXCHANGE) and only then removed, so every moment shows the old or the new
            // folder whole; where the filesystem cannot swap, it is moved aside first.
            if isDirectory(dir) {
                try replaceFolder(dir, with: tmp)
            } else {
                guard mal_rename_noreplace(tmp, dir) == 0 else {
                    let e = errno
                    throw MalError(e == EEXIST ? .invalidArgument : .ioError,
                                   e == EEXIST ? "output appeared while writing (use --force to replace it)"
                                               : "cannot rename into place: \(String(cString: strerror(e)))", file: dir)
                }
                mal_unregister_temp(tmp)
            }
            unregisterFiles()
            fsyncDirectory(parentDirectory(dir))
        } catch {
            cleanup()
            throw error
        }
        progress?(plan.count, plan.count, "")
        return Summary(files: written, tensors: plan.count, bytes: plan.reduce(0) { $0 + $1.byteCount })
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
            throw MalError(.unsupported, "this model's MLA weights are absorbed (\(a)); that layout has no HF tensor names. Export the model before `absorb-mla`")
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
                throw MalError(.unsupported, "has \(b) blocks, not the model's \(BlockShape.modelDefault(model.spec)): an HF config has one "
                               + "weight_block_size for every FP8 weight; write a .mal file (-o OUT.mal)", tensor: t.name)
            }
            if t.scale != nil && layout != .identity {
                throw MalError(.unsupported, "this quantised weight is stored fused or transposed in HF checkpoints (\(hf), GPT-2's Conv1D), "
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
                    throw MalError(.invalidShape, "a q/k/v \(weight ? "weight" : "bias") must have rank \(weight ? 2 : 1), found shape \(t.shape)",
                                   tensor: t.name)
                }
                shape = t.shape
            }
            byHF[hf] = Planned(name: hf, dtype: t.dtype, shape: shape, parts: [(t.name, layout)], byteCount: bytes)
            order.append(hf)
        }
        var out: [Planned] = []
        for name in order {
            var p = byHF[name]!
            if case .splitQKV = p.parts[0].layout {
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
            }
            out.append(p)
        }
        out.sort { ($0.dtype.bitSize, $1.name) > ($1.dtype.bitSize, $0.name) }
        return out
    }

    static func partIndex(_ l: NameLayout) -> Int { if case let .splitQKV(k, _) = l { return k }; return 0 }

    /// Writes one safetensors file: header (padded with spaces to 8 bytes), then each tensor's bytes.
    static func writeSafetensors(_ tensors: [Planned], model: CanonicalModel, path: String, each: (String) -> Void) throws {
        let f = try OutputFile(path: path)
        do {
            try f.write(safetensorsHeader(tensors.map { ($0.name, $0.dtype, $0.shape, $0.byteCount) }))
            for t in tensors {
                each(t.name)
                let bytes = try produce(t, model: model)
                try bytes.withBytes { try f.write($0) }
            }
            try f.commit()
        } catch {
            f.abandon()
            throw error
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
                let s = withExtendedLifetime(parts) { Relayout.concatTransposed(parts.map { ($0.bytes, $0.shape[0]) }, rows: parts[0].shape[1], elementSize: es) }
                return Tensor(name: t.name, dtype: t.dtype, shape: t.shape, storage: s)
            }
            var all: [UInt8] = []
            for p in parts { all += p.byteArray }
            return all.withUnsafeBytes { Tensor(name: t.name, dtype: t.dtype, shape: t.shape, storage: TensorStorage(copying: $0)) }
        }
    }
}
