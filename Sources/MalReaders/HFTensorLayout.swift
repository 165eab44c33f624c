import MalCore

/// A tensor an architecture expects in an HF checkpoint, with the shape the spec implies.
public struct ExpectedTensor: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    /// A tied output head may or may not be stored; such tensors are allowed, not required.
    public var optional: Bool
    public init(name: String, shape: [Int], optional: Bool = false) {
        self.name = name
        self.shape = shape
        self.optional = optional
    }
}

/// Which tensors each architecture stores in its HF checkpoint, derived from the spec.
///
/// Shapes are as stored: `[out, in]` for Linear layers, `[in, out]` for GPT-2's Conv1D.
/// This is what the inventory report and the spec-derived parameter count are built from.
public enum HFTensorLayout {
    /// Expected tensors for `spec`. `gpt2Prefix` is `"transformer."` (transformers' saves) or
    /// `""` (the original OpenAI-community files).
    public static func expected(_ spec: ModelSpec, gpt2Prefix: String = "transformer.") -> [ExpectedTensor] {
        switch spec.architecture {
        case .gpt2: return gpt2(spec, prefix: gpt2Prefix)
        case .llama: return llama(spec)
        case .deepseekV2, .deepseekV3: return deepseek(spec)
        }
    }

    /// Buffers some writers save that carry no parameters (causal masks, rotary caches).
    public static func isIgnorable(_ name: String) -> Bool {
        name.hasSuffix(".attn.bias") || name.hasSuffix(".attn.masked_bias") || name.hasSuffix("rotary_emb.inv_freq")
    }

    static func gpt2(_ s: ModelSpec, prefix p: String) -> [ExpectedTensor] {
        let h = s.hiddenSize, i = s.intermediateSize
        var out = [ExpectedTensor(name: p + "wte.weight", shape: [s.vocabSize, h]),
                   ExpectedTensor(name: p + "wpe.weight", shape: [s.maxPositions, h])]
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

    static func llama(_ s: ModelSpec) -> [ExpectedTensor] {
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
                .init(name: b + "mlp.gate_proj.weight", shape: [i, h]),
                .init(name: b + "mlp.up_proj.weight", shape: [i, h]),
                .init(name: b + "mlp.down_proj.weight", shape: [h, i]),
            ]
            if s.attentionBias {
                out += [.init(name: b + "self_attn.q_proj.bias", shape: [q]), .init(name: b + "self_attn.k_proj.bias", shape: [kv]),
                        .init(name: b + "self_attn.v_proj.bias", shape: [kv]), .init(name: b + "self_attn.o_proj.bias", shape: [h])]
            }
            if s.mlpBias {
                out += [.init(name: b + "mlp.gate_proj.bias", shape: [i]), .init(name: b + "mlp.up_proj.bias", shape: [i]),
                        .init(name: b + "mlp.down_proj.bias", shape: [h])]
            }
        }
        out.append(.init(name: "model.norm.weight", shape: [h]))
        out.append(.init(name: "lm_head.weight", shape: [s.vocabSize, h], optional: s.tiedEmbeddings))
        return out
    }

    static func deepseek(_ s: ModelSpec) -> [ExpectedTensor] {
        let h = s.hiddenSize
        var out = [ExpectedTensor(name: "model.embed_tokens.weight", shape: [s.vocabSize, h])]
        for l in 0..<s.layers { out += deepseekBlock(s, layer: l) }
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
            out += deepseekBlock(s, layer: l)
            out += [.init(name: b + "shared_head.norm.weight", shape: [h]),
                    .init(name: b + "shared_head.head.weight", shape: [s.vocabSize, h])]
        }
        return out
    }

    static func deepseekBlock(_ s: ModelSpec, layer l: Int) -> [ExpectedTensor] {
        guard let mla = s.mla else { return [] }
        let h = s.hiddenSize, n = s.heads
        let b = "model.layers.\(l)."
        var out: [ExpectedTensor] = [.init(name: b + "input_layernorm.weight", shape: [h])]
        if let r = mla.qLoraRank {
            out += [.init(name: b + "self_attn.q_a_proj.weight", shape: [r, h]),
                    .init(name: b + "self_attn.q_a_layernorm.weight", shape: [r]),
                    .init(name: b + "self_attn.q_b_proj.weight", shape: [n * mla.qkHeadDim, r])]
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
        if let moe = s.moe, s.isMoELayer(l) {
            let i = moe.expertIntermediateSize
            out.append(.init(name: b + "mlp.gate.weight", shape: [moe.routedExperts, h]))
            if moe.correctionBias {
                out.append(.init(name: b + "mlp.gate.e_score_correction_bias", shape: [moe.routedExperts]))
            }
            for e in 0..<moe.routedExperts {
                let x = b + "mlp.experts.\(e)."
                out += [.init(name: x + "gate_proj.weight", shape: [i, h]), .init(name: x + "up_proj.weight", shape: [i, h]),
                        .init(name: x + "down_proj.weight", shape: [h, i])]
            }
            if moe.sharedExperts > 0 {
                let si = i * moe.sharedExperts
                let x = b + "mlp.shared_experts."
                out += [.init(name: x + "gate_proj.weight", shape: [si, h]), .init(name: x + "up_proj.weight", shape: [si, h]),
                        .init(name: x + "down_proj.weight", shape: [h, si])]
            }
        } else {
            let i = s.intermediateSize
            out += [.init(name: b + "mlp.gate_proj.weight", shape: [i, h]), .init(name: b + "mlp.up_proj.weight", shape: [i, h]),
                    .init(name: b + "mlp.down_proj.weight", shape: [h, i])]
        }
        return out
    }

    /// Parameter count implied by the spec: every required tensor, the tied head once.
    /// (DeepSeek's MTP copies of the embedding and head count, as they are stored in the files.)
    public static func parameterCount(_ spec: ModelSpec) -> Int {
        expected(spec).filter { !$0.optional }.reduce(0) { $0 + (elementCount($1.shape) ?? 0) }
    }
}
