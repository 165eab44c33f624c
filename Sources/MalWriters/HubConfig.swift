import MalArchitectures
import MalCore

/// Rewrites an HF `config.json` in the key style of real Hub repos: `rope_theta` + `rope_scaling`
/// instead of transformers 5's `rope_parameters`, `torch_dtype` instead of `dtype`, and without
/// the keys the family's Hub repos leave out (`HubConfigStyle`: DeepSeek's derived `head_dim` /
/// `qk_head_dim`). Values are kept; `dtype` overrides the dtype.
public enum HubConfig {
    /// `quantization` replaces `quantization_config` (nil removes it: a dequantised model has none).
    public static func rewrite(_ config: JSONValue, dtype: String? = nil, quantization: QuantizationSpec?) -> JSONValue {
        guard var pairs = config.objectPairs else { return config }
        let style =
            ArchitectureRegistry.architecture(modelType: config["model_type"]?.stringValue ?? "")?.hubConfig
            ?? HubConfigStyle(ropeScalingTypeKey: "rope_type")
        if let i = pairs.firstIndex(where: { $0.0 == "rope_parameters" }) {
            let params = pairs[i].1
            pairs.remove(at: i)
            var scaling: [(String, JSONValue)] = []
            var theta: JSONValue?
            var type = "default"
            for (k, v) in params.objectPairs ?? [] {
                if k == "rope_theta" { theta = v } else if k == "rope_type" || k == "type" { type = v.stringValue ?? type } else { scaling.append((k, v)) }
            }
            if let theta, !pairs.contains(where: { $0.0 == "rope_theta" }) { pairs.append(("rope_theta", theta)) }
            if type != "default" {
                scaling.insert((style.ropeScalingTypeKey, .string(type)), at: 0)
                pairs.removeAll { $0.0 == "rope_scaling" }
                pairs.append(("rope_scaling", .object(scaling)))
            }
        }
        if let i = pairs.firstIndex(where: { $0.0 == "dtype" }) {
            let v = pairs[i].1
            pairs.remove(at: i)
            if !pairs.contains(where: { $0.0 == "torch_dtype" }) { pairs.append(("torch_dtype", v)) }
        }
        if let dtype {
            pairs.removeAll { $0.0 == "torch_dtype" }
            pairs.append(("torch_dtype", .string(dtype)))
        }
        pairs.removeAll { style.derivedKeys.contains($0.0) }
        pairs.removeAll { $0.0 == "quantization_config" }
        if let q = quantization {
            var qc: [(String, JSONValue)] = [
                ("activation_scheme", .string(q.activationScheme)), ("fmt", .string(q.format)),
                ("quant_method", .string(q.method)),
            ]
            if let s = q.scaleFormat { qc.append(("scale_fmt", .string(s))) }
            if let b = q.weightBlockSize { qc.append(("weight_block_size", .array(b.map { .int(Int64($0)) }))) }
            pairs.append(("quantization_config", .object(qc)))
        }
        pairs.sort { $0.0 < $1.0 }
        return .object(pairs)
    }

    /// torch's name for a dtype.
    public static func torchName(_ d: DType) -> String {
        switch d {
        case .bf16: return "bfloat16"
        case .f16: return "float16"
        case .f64: return "float64"
        default: return "float32"
        }
    }
}
