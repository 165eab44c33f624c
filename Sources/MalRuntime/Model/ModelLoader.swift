import MalCore
import MalReaders

/// Opens a model for the runtime through the reader stage: a `.mal` file or an HF folder (or
/// `.safetensors` file / shard index), seen through canonical names either way.
public enum ModelLoader {
    /// `mapped`: the runtime will use raw tensors in place (`Transformer(mapped:)`), so their
    /// checksums are checked while it runs instead of before (`Transformer.weightCheck`).
    public static func open(_ path: String, mapped: Bool = false) throws -> CanonicalModel {
        if MalFile.isContainer(path) { return try MalFile(path: path, defersRawChecks: mapped) }
        return try HFCanonicalModel(model: try HFModel(path: path))
    }
}
