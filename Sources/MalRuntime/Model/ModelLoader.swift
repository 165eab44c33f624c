import MalCore
import MalReaders

/// Opens a model for the runtime through the reader stage: a `.mal` file or an HF folder (or
/// `.safetensors` file / shard index), seen through canonical names either way.
public enum ModelLoader {
    public static func open(_ path: String) throws -> CanonicalModel {
        if MalFile.isContainer(path) { return try MalFile(path: path) }
        return try HFCanonicalModel(model: try HFModel(path: path))
    }
}
