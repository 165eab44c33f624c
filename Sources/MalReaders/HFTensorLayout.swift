import MalArchitectures
import MalCore

/// The tensors an HF checkpoint of a spec holds, as its architecture describes them
/// (`ModelArchitecture.expectedTensors`), and the buffers some writers add beside them.
public enum HFTensorLayout {
    /// Expected tensors for `spec`; `tensorNames` (the checkpoint's) decide an optional prefix.
    /// Empty for a `model_type` no architecture reads (`HFConfigReader` refuses those first).
    public static func expected(_ spec: ModelSpec, tensorNames: [String]) -> [ExpectedTensor] {
        guard let a = ArchitectureRegistry.architecture(modelType: spec.modelType) else { return [] }
        return a.expectedTensors(spec, hfNamePrefix: a.hfNamePrefix(tensorNames: tensorNames))
    }

    /// Buffers some writers save that carry no parameters (causal masks, rotary caches).
    public static func isIgnorable(_ name: String) -> Bool {
        name.hasSuffix(".attn.bias") || name.hasSuffix(".attn.masked_bias") || name.hasSuffix("rotary_emb.inv_freq")
    }

    /// Parameter count implied by the spec (`ModelArchitecture.parameterCount`); 0 for an unknown `model_type`.
    public static func parameterCount(_ spec: ModelSpec) -> Int {
        ArchitectureRegistry.architecture(modelType: spec.modelType)?.parameterCount(spec) ?? 0
    }
}
