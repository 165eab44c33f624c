import MalCore
#if canImport(Glibc)
import Glibc
#endif

/// A checkpoint made of one safetensors file or of shards listed by
/// `model.safetensors.index.json` (`{"metadata": {...}, "weight_map": {tensor: shard}}`).
///
/// The index is checked against the shards in both directions: every shard it names exists,
/// every tensor it maps is in that shard, and every tensor in a shard is mapped to that shard.
public final class SafetensorsCheckpoint: @unchecked Sendable {
    public let files: [SafetensorsFile]
    /// The index file, for sharded checkpoints.
    public let indexPath: String?
    /// All tensors, shard by shard in index order, each in data order.
    public let tensors: [TensorInfo]
    private let location: [String: (file: Int, index: Int)]

    public static let indexName = HFFileNames.shardIndex

    /// Opens a `.safetensors` file, an index `.json`, or a folder holding either.
    public convenience init(path: String) throws {
        if isDirectory(path) {
            let index = joinPath(path, SafetensorsCheckpoint.indexName)
            let single = joinPath(path, "model.safetensors")
            if fileExists(index) {
                try self.init(indexPath: index)
            } else if fileExists(single) {
                try self.init(files: [SafetensorsFile(path: single)], indexPath: nil)
            } else {
                let all = try listDirectory(path).filter { $0.hasSuffix(".safetensors") }.sorted()
                guard !all.isEmpty else {
                    throw MalError(
                        .fileNotFound, "no model.safetensors, \(SafetensorsCheckpoint.indexName) or *.safetensors in the folder",
                        file: path)
                }
                let files = try all.map { try SafetensorsFile(mapping: MappedFile(path: joinPath(path, $0)), displayName: joinPath(path, $0)) }
                try self.init(files: files, indexPath: nil)
            }
        } else if path.hasSuffix(".json") {
            try self.init(indexPath: path)
        } else {
            try self.init(files: [SafetensorsFile(path: path)], indexPath: nil)
        }
    }

    /// Opens a sharded checkpoint from its index.
    public convenience init(indexPath: String) throws {
        let mapping = try MappedFile(path: indexPath)
        let json = try JSONValue.parse(mapping.bytes, file: indexPath)
        guard let map = json["weight_map"]?.objectPairs else {
            throw MalError(.indexInvalid, "index has no 'weight_map' object", file: indexPath)
        }
        let folder = parentDirectory(indexPath)
        var shardOrder: [String] = []
        var wanted: [String: [String]] = [:]
        var seen = Set<String>()
        for (tensor, v) in map {
            guard let shard = v.stringValue else {
                throw MalError(.indexInvalid, "weight_map value is not a file name: \(v.serialized)", file: indexPath, tensor: tensor)
            }
            guard !shard.isEmpty, !shard.contains("/"), shard != ".", shard != "..", !shard.contains("\0") else {
                throw MalError(
                    .indexInvalid, "shard name '\(shard)' is not a plain file name in the index's folder",
                    file: indexPath, tensor: tensor)
            }
            if !seen.insert(tensor).inserted {
                throw MalError(.duplicateTensor, "tensor listed twice in weight_map", file: indexPath, tensor: tensor)
            }
            if wanted[shard] == nil { shardOrder.append(shard); wanted[shard] = [] }
            wanted[shard]!.append(tensor)
        }
        for shard in shardOrder where !fileExists(joinPath(folder, shard)) {
            throw MalError(
                .indexMissingShard, "the index names shard '\(shard)', which does not exist",
                file: indexPath, tensor: wanted[shard]!.first)
        }
        let files = try shardOrder.map { try SafetensorsFile(mapping: MappedFile(path: joinPath(folder, $0)), displayName: joinPath(folder, $0)) }
        // Index → shards first, then shards → index, so the error does not depend on shard order.
        for (shard, f) in zip(shardOrder, files) {
            for t in wanted[shard]! where f.info(t) == nil {
                throw MalError(
                    .indexMissingTensor, "the index maps this tensor to '\(shard)', which does not contain it",
                    file: indexPath, tensor: t)
            }
        }
        for (shard, f) in zip(shardOrder, files) {
            let listed = Set(wanted[shard]!)
            for t in f.tensors where !listed.contains(t.name) {
                let elsewhere = map.first(where: { $0.0 == t.name })?.1.stringValue
                let why = elsewhere.map { "the index maps it to '\($0)'" } ?? "the index does not list it"
                throw MalError(
                    .indexUnlistedTensor, "tensor found in this shard but \(why)", file: f.path, tensor: t.name,
                    offset: t.fileOffset)
            }
        }
        try self.init(files: files, indexPath: indexPath)
    }

    init(files: [SafetensorsFile], indexPath: String?) throws {
        self.files = files
        self.indexPath = indexPath
        var all: [TensorInfo] = []
        var loc: [String: (Int, Int)] = [:]
        for (fi, f) in files.enumerated() {
            for (ti, t) in f.tensors.enumerated() {
                if loc[t.name] != nil {
                    throw MalError(
                        .duplicateTensor, "tensor appears in two files (also in \(files[loc[t.name]!.0].path))",
                        file: f.path, tensor: t.name, offset: t.fileOffset)
                }
                loc[t.name] = (fi, ti)
                all.append(t)
            }
        }
        tensors = all
        location = loc
    }

    /// The folder the checkpoint lives in (where config.json and tokenizer files are looked for).
    public var folder: String { parentDirectory(indexPath ?? files.first?.path ?? ".") }

    public func info(_ name: String) -> TensorInfo? {
        location[name].map { files[$0.file].tensors[$0.index] }
    }

    public func tensor(named name: String) throws -> Tensor {
        guard let l = location[name] else { throw MalError(.notFound, "no such tensor in the checkpoint", file: folder, tensor: name) }
        return files[l.file].tensor(files[l.file].tensors[l.index])
    }

    public func tensor(_ info: TensorInfo) throws -> Tensor { try tensor(named: info.name) }

    /// Total bytes of tensor data.
    public var dataBytes: Int { tensors.reduce(0) { $0 + $1.byteCount } }
}
