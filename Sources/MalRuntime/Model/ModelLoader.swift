import MalCore
import MalReaders

/// Opens a model for the runtime through the reader stage: a `.mal` file or an HF folder (or
/// `.safetensors` file / shard index), seen through canonical names either way.
public enum ModelLoader {
    public static func open(_ path: String) throws -> CanonicalModel {
        if fileExists(path) && !path.hasSuffix(".safetensors") && !path.hasSuffix(".json") { return try MalFile(path: path) }
        return try HFCanonicalModel(model: try HFModel(path: path))
    }
}
