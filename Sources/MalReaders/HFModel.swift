import MalCore

/// An HF model as the reader stage sees it: a typed spec plus a stream of named tensors.
///
/// `path` may be a model folder, a `.safetensors` file or an index `.json`; `config.json` is
/// looked for beside the weights.
public final class HFModel: @unchecked Sendable {
    public let path: String
    public let configPath: String
    public let spec: ModelSpec
    public let checkpoint: SafetensorsCheckpoint

    public init(path: String) throws {
        guard fileExists(path) || isDirectory(path) else {
            throw MalError(.fileNotFound, "no such file or folder", file: path)
        }
        self.path = path
        checkpoint = try SafetensorsCheckpoint(path: path)
        let folder = isDirectory(path) ? path : checkpoint.folder
        configPath = joinPath(folder, "config.json")
        guard fileExists(configPath) else {
            throw MalError(.fileNotFound, "no config.json beside the weights; the architecture cannot be known", file: configPath)
        }
        spec = try HFConfigReader.read(path: configPath)
    }

    public var folder: String { isDirectory(path) ? path : checkpoint.folder }
    public var tensors: [TensorInfo] { checkpoint.tensors }
    public func inventory() -> TensorInventory { TensorInventory.check(spec: spec, tensors: tensors) }
}
