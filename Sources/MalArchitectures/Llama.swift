import MalCore

/// Llama 3 (`model_type: llama`): GPT-2 with RMSNorm, rotary positions (rotate-half, Llama 3
/// frequency scaling), grouped-query attention and a SwiGLU feed-forward; biases only where
/// `attention_bias` / `mlp_bias` say.
public struct LlamaArchitecture: ModelArchitecture {
    public let modelTypes = ["llama"]
    public init() {}

    public func spec(_ c: ConfigFields, modelType: String) throws -> ModelSpec {
        let hidden = try c.size("hidden_size")
        let heads = try c.size("num_attention_heads")
        let kvHeads = try c.optSize("num_key_value_heads") ?? heads
        try c.require(
            kvHeads > 0 && heads % kvHeads == 0,
            "num_attention_heads \(heads) is not a multiple of num_key_value_heads \(kvHeads)",
            key: "num_key_value_heads")
        let headDim = try c.optSize("head_dim") ?? hidden / heads
        return ModelSpec(
            modelType: modelType, vocabSize: try c.size("vocab_size"), hiddenSize: hidden,
            layers: try c.size("num_hidden_layers"), heads: heads, kvHeads: kvHeads, headDim: headDim,
            intermediateSize: try c.size("intermediate_size"),
            maxPositions: try c.optSize("max_position_embeddings") ?? 2048,
            norm: .rmsNorm, normEps: try c.epsilon("rms_norm_eps") ?? 1e-6,
            activation: try c.activation("hidden_act", default: "silu"), positions: .rope,
            rope: try c.rope(dimensions: headDim, key: "head_dim", interleaved: false),
            tiedEmbeddings: try c.optBool("tie_word_embeddings") ?? false,
            attentionBias: try c.optBool("attention_bias") ?? false, mlpBias: try c.optBool("mlp_bias") ?? false,
            bosTokenId: try c.optInt("bos_token_id"), eosTokenIds: try c.tokenIds("eos_token_id"),
            declaredDType: try c.dtype(), mla: nil, moe: nil, mtpLayers: 0, quantization: try c.quantization())
    }

    public func expectedTensors(_ s: ModelSpec, hfNamePrefix: String?) -> [ExpectedTensor] {
        let h = s.hiddenSize, q = s.heads * s.headDim, kv = s.kvHeads * s.headDim, i = s.intermediateSize
        var out = [ExpectedTensor(name: "model.embed_tokens.weight", shape: [s.vocabSize, h])]
        for l in 0..<s.layers {
            let b = "model.layers.\(l)."
            out += [
                .init(name: b + "input_layernorm.weight", shape: [h]),
                .init(name: b + "self_attn.q_proj.weight", shape: [q, h]),
                .init(name: b + "self_attn.k_proj.weight", shape: [kv, h]),
                .init(name: b + "self_attn.v_proj.weight", shape: [kv, h]),
                .init(name: b + "self_attn.o_proj.weight", shape: [h, q]),
                .init(name: b + "post_attention_layernorm.weight", shape: [h]),
            ]
            out += Self.gatedFeedForward(b + "mlp.", width: i, hidden: h)
            if s.attentionBias {
                out += [
                    .init(name: b + "self_attn.q_proj.bias", shape: [q]), .init(name: b + "self_attn.k_proj.bias", shape: [kv]),
                    .init(name: b + "self_attn.v_proj.bias", shape: [kv]), .init(name: b + "self_attn.o_proj.bias", shape: [h]),
                ]
            }
            if s.mlpBias {
                out += [
                    .init(name: b + "mlp.gate_proj.bias", shape: [i]), .init(name: b + "mlp.up_proj.bias", shape: [i]),
                    .init(name: b + "mlp.down_proj.bias", shape: [h]),
                ]
            }
        }
        out.append(.init(name: "model.norm.weight", shape: [h]))
        out.append(.init(name: "lm_head.weight", shape: [s.vocabSize, h], optional: s.tiedEmbeddings))
        return out
    }

    /// `gate_proj`, `up_proj` `[width, hidden]` and `down_proj` `[hidden, width]` under `prefix`
    /// (Llama's MLP, and DeepSeek's dense layers and experts).
    static func gatedFeedForward(_ prefix: String, width i: Int, hidden h: Int) -> [ExpectedTensor] {
        [
            .init(name: prefix + "gate_proj.weight", shape: [i, h]), .init(name: prefix + "up_proj.weight", shape: [i, h]),
            .init(name: prefix + "down_proj.weight", shape: [h, i]),
        ]
    }

    /// The names Llama shares with the families built on it (DeepSeek).
    static let sharedRules: [NameRule] = [
        .init(hf: "model.embed_tokens.weight", canonical: "token_embd.weight"),
        .init(hf: "model.norm.weight", canonical: "output_norm.weight"),
        .init(hf: "lm_head.weight", canonical: "output.weight"),
        .init(hf: "model.layers.{N}.input_layernorm.weight", canonical: "blk.{N}.attn_norm.weight"),
        .init(hf: "model.layers.{N}.post_attention_layernorm.weight", canonical: "blk.{N}.ffn_norm.weight"),
        .init(hf: "model.layers.{N}.self_attn.o_proj.weight", canonical: "blk.{N}.attn_output.weight"),
        .init(hf: "model.layers.{N}.mlp.gate_proj.weight", canonical: "blk.{N}.ffn_gate.weight"),
        .init(hf: "model.layers.{N}.mlp.up_proj.weight", canonical: "blk.{N}.ffn_up.weight"),
        .init(hf: "model.layers.{N}.mlp.down_proj.weight", canonical: "blk.{N}.ffn_down.weight"),
    ]

    public let nameRules: [NameRule] =
        LlamaArchitecture.sharedRules + [
            .init(hf: "model.layers.{N}.self_attn.q_proj.weight", canonical: "blk.{N}.attn_q.weight"),
            .init(hf: "model.layers.{N}.self_attn.k_proj.weight", canonical: "blk.{N}.attn_k.weight"),
            .init(hf: "model.layers.{N}.self_attn.v_proj.weight", canonical: "blk.{N}.attn_v.weight"),
            .init(hf: "model.layers.{N}.self_attn.q_proj.bias", canonical: "blk.{N}.attn_q.bias"),
            .init(hf: "model.layers.{N}.self_attn.k_proj.bias", canonical: "blk.{N}.attn_k.bias"),
            .init(hf: "model.layers.{N}.self_attn.v_proj.bias", canonical: "blk.{N}.attn_v.bias"),
            .init(hf: "model.layers.{N}.self_attn.o_proj.bias", canonical: "blk.{N}.attn_output.bias"),
            .init(hf: "model.layers.{N}.mlp.gate_proj.bias", canonical: "blk.{N}.ffn_gate.bias"),
            .init(hf: "model.layers.{N}.mlp.up_proj.bias", canonical: "blk.{N}.ffn_up.bias"),
            .init(hf: "model.layers.{N}.mlp.down_proj.bias", canonical: "blk.{N}.ffn_down.bias"),
        ]

    public func components(_ s: ModelSpec) throws -> LayerComponents {
        var biases: LayerComponents.Biases = []
        if s.attentionBias { biases.formUnion(.attention) }
        if s.mlpBias { biases.formUnion(.feedForward) }
        return LayerComponents(
            norm: s.norm, normBias: false, positions: s.positions, activation: try s.requireActivation(),
            attention: .multiHead, feedForward: .gated, biases: biases)
    }

    public let hubConfig = HubConfigStyle(ropeScalingTypeKey: "rope_type")
}
