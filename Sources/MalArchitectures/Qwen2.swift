import MalCore

/// Qwen2 (`model_type: qwen2`): Llama 3's layers with a bias on the query, key and value
/// projections (not on the output projection, not in the MLP). Sliding-window attention
/// (`use_sliding_window: true`) is refused; every released Qwen2 config leaves it off.
public struct Qwen2Architecture: ModelArchitecture {
    public let modelTypes = ["qwen2"]
    public init() {}

    public func spec(_ c: ConfigFields, modelType: String) throws -> ModelSpec {
        if try c.optBool("use_sliding_window") == true {
            throw MalError(.unsupported, "field 'use_sliding_window': sliding-window attention is not supported", file: c.file)
        }
        var s = try LlamaArchitecture().spec(c, modelType: modelType)
        s.attentionBias = true  // q, k and v (`components` says which)
        s.mlpBias = false
        return s
    }

    public func expectedTensors(_ s: ModelSpec, hfNamePrefix: String?) -> [ExpectedTensor] {
        var plain = s
        plain.attentionBias = false
        var out = LlamaArchitecture().expectedTensors(plain, hfNamePrefix: hfNamePrefix)
        let q = s.heads * s.headDim, kv = s.kvHeads * s.headDim
        for l in 0..<s.layers {
            let b = "model.layers.\(l).self_attn."
            out += [.init(name: b + "q_proj.bias", shape: [q]), .init(name: b + "k_proj.bias", shape: [kv]), .init(name: b + "v_proj.bias", shape: [kv])]
        }
        return out
    }

    /// Llama's names (the bias rules included).
    public var nameRules: [NameRule] { LlamaArchitecture().nameRules }

    public func components(_ s: ModelSpec) throws -> LayerComponents {
        var c = try LlamaArchitecture().components(s)
        c.biases = [.query, .key, .value]
        return c
    }

    public let hubConfig = HubConfigStyle(ropeScalingTypeKey: "rope_type")
}
