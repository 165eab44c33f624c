import MalCore

/// GPT-2 (`model_type: gpt2`): LayerNorm with bias, learned positions, multi-head attention with
/// a fused Conv1D `c_attn`, a GELU MLP, biases on every projection, the head tied to the embedding.
public struct GPT2Architecture: ModelArchitecture {
    public let modelTypes = ["gpt2"]
    public init() {}

    public func spec(_ c: ConfigFields, modelType: String) throws -> ModelSpec {
        let hidden = try c.size("n_embd")
        let heads = try c.size("n_head")
        try c.require(hidden % heads == 0, "n_embd \(hidden) is not a multiple of n_head \(heads)", key: "n_head")
        let positions = try c.optSize("n_positions") ?? c.size("n_ctx")
        // `reorder_and_upcast_attn` only changes torch's float precision, which is float32 here anyway.
        let scaling = AttentionScaling(
            byHeadDim: try c.optBool("scale_attn_weights") ?? true,
            byInverseLayer: try c.optBool("scale_attn_by_inverse_layer_idx") ?? false)
        return ModelSpec(
            modelType: modelType, vocabSize: try c.size("vocab_size"), hiddenSize: hidden,
            layers: try c.size("n_layer"), heads: heads, kvHeads: heads, headDim: hidden / heads,
            intermediateSize: try c.optSize("n_inner") ?? 4 * hidden, maxPositions: positions,
            norm: .layerNorm, normEps: try c.epsilon("layer_norm_epsilon") ?? 1e-5,
            activation: try c.activation("activation_function", default: "gelu_new"), positions: .learned, rope: nil,
            tiedEmbeddings: try c.optBool("tie_word_embeddings") ?? true, attentionBias: true, mlpBias: true,
            bosTokenId: try c.optInt("bos_token_id"), eosTokenIds: try c.tokenIds("eos_token_id"),
            declaredDType: try c.dtype(), mla: nil, moe: nil, mtpLayers: 0, quantization: try c.quantization(),
            attentionScaling: scaling == AttentionScaling(byHeadDim: true, byInverseLayer: false) ? nil : scaling)
    }

    public func hfNamePrefix(tensorNames: [String]) -> String? {
        tensorNames.contains { $0.hasPrefix("transformer.") } ? "transformer." : ""
    }

    public func expectedTensors(_ s: ModelSpec, hfNamePrefix: String?) -> [ExpectedTensor] {
        let p = hfNamePrefix ?? "transformer."
        let h = s.hiddenSize, i = s.intermediateSize
        var out = [
            ExpectedTensor(name: p + "wte.weight", shape: [s.vocabSize, h]),
            ExpectedTensor(name: p + "wpe.weight", shape: [s.maxPositions, h]),
        ]
        for l in 0..<s.layers {
            let b = "\(p)h.\(l)."
            out += [
                .init(name: b + "ln_1.weight", shape: [h]), .init(name: b + "ln_1.bias", shape: [h]),
                .init(name: b + "attn.c_attn.weight", shape: [h, 3 * h]), .init(name: b + "attn.c_attn.bias", shape: [3 * h]),
                .init(name: b + "attn.c_proj.weight", shape: [h, h]), .init(name: b + "attn.c_proj.bias", shape: [h]),
                .init(name: b + "ln_2.weight", shape: [h]), .init(name: b + "ln_2.bias", shape: [h]),
                .init(name: b + "mlp.c_fc.weight", shape: [h, i]), .init(name: b + "mlp.c_fc.bias", shape: [i]),
                .init(name: b + "mlp.c_proj.weight", shape: [i, h]), .init(name: b + "mlp.c_proj.bias", shape: [h]),
            ]
        }
        out += [.init(name: p + "ln_f.weight", shape: [h]), .init(name: p + "ln_f.bias", shape: [h])]
        out.append(.init(name: "lm_head.weight", shape: [s.vocabSize, h], optional: s.tiedEmbeddings))
        return out
    }

    public let nameRules: [NameRule] = {
        var r: [NameRule] = [
            .init(hf: "{P}wte.weight", canonical: "token_embd.weight"),
            .init(hf: "{P}wpe.weight", canonical: "position_embd.weight"),
            .init(hf: "{P}ln_f.weight", canonical: "output_norm.weight"),
            .init(hf: "{P}ln_f.bias", canonical: "output_norm.bias"),
            .init(hf: "lm_head.weight", canonical: "output.weight"),
        ]
        let b = "{P}h.{N}."
        r += [
            .init(hf: b + "ln_1.weight", canonical: "blk.{N}.attn_norm.weight"),
            .init(hf: b + "ln_1.bias", canonical: "blk.{N}.attn_norm.bias"),
            .init(hf: b + "ln_2.weight", canonical: "blk.{N}.ffn_norm.weight"),
            .init(hf: b + "ln_2.bias", canonical: "blk.{N}.ffn_norm.bias"),
            .init(hf: b + "attn.c_proj.weight", canonical: "blk.{N}.attn_output.weight", layout: .transposed),
            .init(hf: b + "attn.c_proj.bias", canonical: "blk.{N}.attn_output.bias"),
            .init(hf: b + "mlp.c_fc.weight", canonical: "blk.{N}.ffn_up.weight", layout: .transposed),
            .init(hf: b + "mlp.c_fc.bias", canonical: "blk.{N}.ffn_up.bias"),
            .init(hf: b + "mlp.c_proj.weight", canonical: "blk.{N}.ffn_down.weight", layout: .transposed),
            .init(hf: b + "mlp.c_proj.bias", canonical: "blk.{N}.ffn_down.bias"),
        ]
        for (k, n) in ["q", "k", "v"].enumerated() {
            r.append(.init(hf: b + "attn.c_attn.weight", canonical: "blk.{N}.attn_\(n).weight", layout: .splitQKV(part: k, weight: true)))
            r.append(.init(hf: b + "attn.c_attn.bias", canonical: "blk.{N}.attn_\(n).bias", layout: .splitQKV(part: k, weight: false)))
        }
        return r
    }()

    public func components(_ s: ModelSpec) throws -> LayerComponents {
        LayerComponents(
            norm: s.norm, normBias: true, positions: s.positions, activation: try s.requireActivation(),
            attention: .multiHead, feedForward: .mlp, biases: [.attention, .feedForward])
    }

    public let hubConfig = HubConfigStyle(ropeScalingTypeKey: "rope_type")
}
