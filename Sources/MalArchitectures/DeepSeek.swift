import MalCore

/// DeepSeek V2 and V3 (`model_type: deepseek_v2 | deepseek_v3`): Llama's norms and names with
/// multi-head latent attention (q-LoRA or a plain `q_proj`, the joint `kv_a` projection with a
/// decoupled RoPE key, interleaved YaRN rotary), mixture-of-experts layers with shared experts
/// (V2: softmax, greedy or group-limited; V3: sigmoid with `e_score_correction_bias`,
/// `noaux_tc`) and V3's multi-token-prediction modules after the main layers.
public struct DeepSeekArchitecture: ModelArchitecture {
    public let modelTypes = ["deepseek_v2", "deepseek_v3"]
    public init() {}

    public func spec(_ c: ConfigFields, modelType: String) throws -> ModelSpec {
        let v3 = modelType == "deepseek_v3"
        let heads = try c.size("num_attention_heads")
        let mla = MLASpec(
            qLoraRank: try c.optInt("q_lora_rank"), kvLoraRank: try c.size("kv_lora_rank"),
            qkNopeHeadDim: try c.size("qk_nope_head_dim"), qkRopeHeadDim: try c.size("qk_rope_head_dim"),
            vHeadDim: try c.size("v_head_dim"))
        if let qk = try c.optSize("qk_head_dim") {
            try c.require(
                qk == mla.qkHeadDim, "qk_head_dim \(qk) != qk_nope_head_dim + qk_rope_head_dim (\(mla.qkHeadDim))",
                key: "qk_head_dim")
        }
        return ModelSpec(
            modelType: modelType, vocabSize: try c.size("vocab_size"), hiddenSize: try c.size("hidden_size"),
            layers: try c.size("num_hidden_layers"), heads: heads,
            kvHeads: try c.optSize("num_key_value_heads") ?? heads, headDim: mla.qkHeadDim,
            intermediateSize: try c.size("intermediate_size"),
            maxPositions: try c.optSize("max_position_embeddings") ?? 4096,
            norm: .rmsNorm, normEps: try c.epsilon("rms_norm_eps") ?? 1e-6,
            activation: try c.activation("hidden_act", default: "silu"), positions: .rope,
            rope: try c.rope(dimensions: mla.qkRopeHeadDim, key: "qk_rope_head_dim", interleaved: try c.optBool("rope_interleave") ?? true),
            tiedEmbeddings: try c.optBool("tie_word_embeddings") ?? false,
            attentionBias: try c.optBool("attention_bias") ?? false, mlpBias: false,
            bosTokenId: try c.optInt("bos_token_id"), eosTokenIds: try c.tokenIds("eos_token_id"),
            declaredDType: try c.dtype(), mla: mla, moe: try moe(c, v3: v3),
            mtpLayers: v3 ? (try c.optInt("num_nextn_predict_layers") ?? 0) : 0,
            quantization: try c.quantization())
    }

    /// The router and experts; V2 and V3 differ only in their defaults. `norm_topk_prob` defaults
    /// to true for V3 (its configs always set it) and false for V2.
    func moe(_ c: ConfigFields, v3: Bool) throws -> MoESpec? {
        guard let experts = try c.optInt("n_routed_experts"), experts > 0 else { return nil }
        let method = try c.optString("topk_method") ?? (v3 ? "noaux_tc" : "greedy")
        let known = ["greedy", "group_limited_greedy", "noaux_tc"]
        try c.require(
            known.contains(method), "unknown topk_method '\(method)' (supported: \(known.joined(separator: ", ")))",
            key: "topk_method")
        let scoringName = try c.optString("scoring_func") ?? (v3 ? "sigmoid" : "softmax")
        guard let scoring = ScoringFunction(rawValue: scoringName) else {
            throw MalError(
                .invalidField, "field 'scoring_func': unknown value '\(scoringName)' (supported: softmax, sigmoid)",
                file: c.file)
        }
        let groups = try c.optInt("n_group") ?? 1
        let topkGroups = try c.optInt("topk_group") ?? 1
        let perToken = try c.size("num_experts_per_tok")
        try c.require(
            groups > 0 && experts % groups == 0, "n_routed_experts \(experts) is not a multiple of n_group \(groups)",
            key: "n_group")
        try c.require(
            topkGroups >= 1 && topkGroups <= groups, "topk_group \(topkGroups) not in 1...n_group (\(groups))",
            key: "topk_group")
        try c.require(
            perToken >= 1 && perToken <= experts, "num_experts_per_tok \(perToken) not in 1...\(experts)",
            key: "num_experts_per_tok")
        return MoESpec(
            routedExperts: experts, sharedExperts: try c.optInt("n_shared_experts") ?? 0,
            expertsPerToken: perToken, expertIntermediateSize: try c.size("moe_intermediate_size"),
            groups: groups, topkGroups: topkGroups, scoring: scoring, topkMethod: method,
            routedScalingFactor: try c.optDouble("routed_scaling_factor") ?? 1.0,
            normTopkProb: try c.optBool("norm_topk_prob") ?? v3,
            firstDenseLayers: try c.optInt("first_k_dense_replace") ?? 0,
            layerFrequency: try c.optSize("moe_layer_freq") ?? 1,
            correctionBias: method == "noaux_tc")
    }

    public func expectedTensors(_ s: ModelSpec, hfNamePrefix: String?) -> [ExpectedTensor] {
        let h = s.hiddenSize
        var out = [ExpectedTensor(name: "model.embed_tokens.weight", shape: [s.vocabSize, h])]
        for l in 0..<s.layers { out += block(s, layer: l) }
        out.append(.init(name: "model.norm.weight", shape: [h]))
        out.append(.init(name: "lm_head.weight", shape: [s.vocabSize, h], optional: s.tiedEmbeddings))
        // MTP modules follow the main layers (DeepSeek-V3 release names, `model.layers.{L}.*`).
        for m in 0..<s.mtpLayers {
            let l = s.layers + m
            let b = "model.layers.\(l)."
            out += [
                .init(name: b + "embed_tokens.weight", shape: [s.vocabSize, h]),
                .init(name: b + "enorm.weight", shape: [h]),
                .init(name: b + "hnorm.weight", shape: [h]),
                .init(name: b + "eh_proj.weight", shape: [h, 2 * h]),
            ]
            out += block(s, layer: l)
            out += [
                .init(name: b + "shared_head.norm.weight", shape: [h]),
                .init(name: b + "shared_head.head.weight", shape: [s.vocabSize, h]),
            ]
        }
        return out
    }

    func block(_ s: ModelSpec, layer l: Int) -> [ExpectedTensor] {
        guard let mla = s.mla else { return [] }
        let h = s.hiddenSize, n = s.heads
        let b = "model.layers.\(l)."
        var out: [ExpectedTensor] = [.init(name: b + "input_layernorm.weight", shape: [h])]
        if let r = mla.qLoraRank {
            out += [
                .init(name: b + "self_attn.q_a_proj.weight", shape: [r, h]),
                .init(name: b + "self_attn.q_a_layernorm.weight", shape: [r]),
                .init(name: b + "self_attn.q_b_proj.weight", shape: [n * mla.qkHeadDim, r]),
            ]
        } else {
            out.append(.init(name: b + "self_attn.q_proj.weight", shape: [n * mla.qkHeadDim, h]))
        }
        out += [
            .init(name: b + "self_attn.kv_a_proj_with_mqa.weight", shape: [mla.kvLoraRank + mla.qkRopeHeadDim, h]),
            .init(name: b + "self_attn.kv_a_layernorm.weight", shape: [mla.kvLoraRank]),
            .init(name: b + "self_attn.kv_b_proj.weight", shape: [n * (mla.qkNopeHeadDim + mla.vHeadDim), mla.kvLoraRank]),
            .init(name: b + "self_attn.o_proj.weight", shape: [h, n * mla.vHeadDim]),
            .init(name: b + "post_attention_layernorm.weight", shape: [h]),
        ]
        guard let moe = s.moe, s.isMoELayer(l) else {
            return out + LlamaArchitecture.gatedFeedForward(b + "mlp.", width: s.intermediateSize, hidden: h)
        }
        out.append(.init(name: b + "mlp.gate.weight", shape: [moe.routedExperts, h]))
        if moe.correctionBias {
            out.append(.init(name: b + "mlp.gate.e_score_correction_bias", shape: [moe.routedExperts]))
        }
        for e in 0..<moe.routedExperts {
            out += LlamaArchitecture.gatedFeedForward(b + "mlp.experts.\(e).", width: moe.expertIntermediateSize, hidden: h)
        }
        if moe.sharedExperts > 0 {
            out += LlamaArchitecture.gatedFeedForward(
                b + "mlp.shared_experts.", width: moe.expertIntermediateSize * moe.sharedExperts,
                hidden: h)
        }
        return out
    }

    public let nameRules: [NameRule] = {
        let a = "model.layers.{N}.self_attn.", m = "model.layers.{N}.mlp.", l = "model.layers.{N}."
        return LlamaArchitecture.sharedRules + [
            .init(hf: a + "q_proj.weight", canonical: "blk.{N}.attn_q.weight"),
            .init(hf: a + "q_a_proj.weight", canonical: "blk.{N}.attn_q_a.weight"),
            .init(hf: a + "q_a_layernorm.weight", canonical: "blk.{N}.attn_q_a_norm.weight"),
            .init(hf: a + "q_b_proj.weight", canonical: "blk.{N}.attn_q_b.weight"),
            .init(hf: a + "kv_a_proj_with_mqa.weight", canonical: "blk.{N}.attn_kv_a_mqa.weight"),
            .init(hf: a + "kv_a_layernorm.weight", canonical: "blk.{N}.attn_kv_a_norm.weight"),
            .init(hf: a + "kv_b_proj.weight", canonical: "blk.{N}.attn_kv_b.weight"),
            .init(hf: m + "gate.weight", canonical: "blk.{N}.ffn_gate_inp.weight"),
            .init(hf: m + "gate.e_score_correction_bias", canonical: "blk.{N}.exp_probs_b.bias"),
            .init(hf: m + "experts.{E}.gate_proj.weight", canonical: "blk.{N}.ffn_gate_exps.{E}.weight"),
            .init(hf: m + "experts.{E}.up_proj.weight", canonical: "blk.{N}.ffn_up_exps.{E}.weight"),
            .init(hf: m + "experts.{E}.down_proj.weight", canonical: "blk.{N}.ffn_down_exps.{E}.weight"),
            .init(hf: m + "shared_experts.gate_proj.weight", canonical: "blk.{N}.ffn_gate_shexp.weight"),
            .init(hf: m + "shared_experts.up_proj.weight", canonical: "blk.{N}.ffn_up_shexp.weight"),
            .init(hf: m + "shared_experts.down_proj.weight", canonical: "blk.{N}.ffn_down_shexp.weight"),
            // Multi-token prediction module (DeepSeek-V3 release names at model.layers.{L}).
            .init(hf: l + "embed_tokens.weight", canonical: "blk.{N}.nextn.embed_tokens.weight"),
            .init(hf: l + "enorm.weight", canonical: "blk.{N}.nextn.enorm.weight"),
            .init(hf: l + "hnorm.weight", canonical: "blk.{N}.nextn.hnorm.weight"),
            .init(hf: l + "eh_proj.weight", canonical: "blk.{N}.nextn.eh_proj.weight"),
            .init(hf: l + "shared_head.norm.weight", canonical: "blk.{N}.nextn.shared_head_norm.weight"),
            .init(hf: l + "shared_head.head.weight", canonical: "blk.{N}.nextn.shared_head_head.weight"),
        ]
    }()

    /// Attention biases are not read: neither DeepSeek release sets `attention_bias`.
    public func components(_ s: ModelSpec) throws -> LayerComponents {
        LayerComponents(
            norm: s.norm, normBias: false, positions: s.positions, activation: try s.requireActivation(),
            attention: .latent, feedForward: .gated, biases: [])
    }

    public let hubConfig = HubConfigStyle(ropeScalingTypeKey: "type", derivedKeys: ["head_dim", "qk_head_dim"])
}
