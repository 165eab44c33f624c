import MalArchitectures
import MalCore

/// Builds the runtime's layers from a model's weights, by canonical name (`Formats/NAMES.md`),
/// out of the components its architecture names (`LayerComponents`): which norm and whether it
/// has a bias, which attention, which feed-forward, which projections carry a bias. Nothing here
/// asks which architecture the model is.
struct LayerAssembly {
    let weights: WeightLoader
    let spec: ModelSpec
    let parts: LayerComponents
    /// The feed-forward activation's kernel code.
    let act: Int32

    init(_ weights: WeightLoader, spec: ModelSpec) throws {
        self.weights = weights
        self.spec = spec
        parts = try ArchitectureRegistry.architecture(of: spec).components(spec)
        act = kernelCode(parts.activation)
    }

    var hidden: Int { spec.hiddenSize }

    func norm(_ base: String) throws -> Norm {
        Norm(
            weight: try weights.vector(base + ".weight", count: hidden),
            bias: parts.normBias ? try weights.vector(base + ".bias", count: hidden) : nil,
            eps: Float(spec.normEps), rms: parts.norm == .rmsNorm)
    }

    func gated(_ b: String, _ suffix: String = "", width F: Int, biases: LayerComponents.Biases = []) throws -> GatedFeedForward {
        let w = weights, H = hidden
        return GatedFeedForward(
            gate: try w.linear(b + "ffn_gate" + suffix, rows: F, cols: H, bias: biases.contains(.gate)),
            up: try w.linear(b + "ffn_up" + suffix, rows: F, cols: H, bias: biases.contains(.up)),
            down: try w.linear(b + "ffn_down" + suffix, rows: H, cols: F, bias: biases.contains(.down)), act: act)
    }

    func attention(_ b: String) throws -> Attention {
        let w = weights, s = spec, H = hidden, bias = parts.biases
        switch parts.attention {
        case .latent:
            guard let mla = s.mla else { throw MalError(.invalidField, "latent attention without MLA settings (spec.mla)") }
            return .latent(try LatentAttention(w, prefix: b, mla: mla, heads: s.heads, hidden: H, eps: Float(s.normEps)))
        case .multiHead:
            let qd = s.heads * s.headDim, kvd = s.kvHeads * s.headDim
            return .multiHead(
                MultiHeadAttention(
                    q: try w.linear(b + "attn_q", rows: qd, cols: H, bias: bias.contains(.query)),
                    k: try w.linear(b + "attn_k", rows: kvd, cols: H, bias: bias.contains(.key)),
                    v: try w.linear(b + "attn_v", rows: kvd, cols: H, bias: bias.contains(.value)),
                    output: try w.linear(b + "attn_output", rows: H, cols: qd, bias: bias.contains(.attentionOutput))))
        }
    }

    /// Layer `l`'s feed-forward: routed experts on MoE layers, else the dense kind.
    func feedForward(_ b: String, layer l: Int) throws -> FeedForward {
        let w = weights, s = spec, H = hidden
        if let moe = s.moe, s.isMoELayer(l) {
            return .experts(
                MixtureOfExperts(
                    spec: moe, router: try w.linear(b + "ffn_gate_inp", rows: moe.routedExperts, cols: H),
                    bias: moe.correctionBias ? try w.vector(b + "exp_probs_b.bias", count: moe.routedExperts) : nil,
                    experts: try (0..<moe.routedExperts).map { e in try gated(b, "_exps.\(e)", width: moe.expertIntermediateSize) },
                    shared: moe.sharedExperts > 0 ? try gated(b, "_shexp", width: moe.expertIntermediateSize * moe.sharedExperts) : nil))
        }
        switch parts.feedForward {
        case .mlp:
            return .plain(
                PlainFeedForward(
                    up: try w.linear(b + "ffn_up", rows: s.intermediateSize, cols: H, bias: parts.biases.contains(.up)),
                    down: try w.linear(
                        b + "ffn_down", rows: H, cols: s.intermediateSize,
                        bias: parts.biases.contains(.down)), act: act))
        case .gated:
            return .gated(try gated(b, width: s.intermediateSize, biases: parts.biases))
        }
    }

    /// Decoder layer `l` (`blk.{l}.*`; the MTP module's block is layer `spec.layers`).
    func layer(_ l: Int) throws -> Transformer.Layer {
        let b = "blk.\(l)."
        let attention = try attention(b)
        let ffn = try feedForward(b, layer: l)
        return Transformer.Layer(attnNorm: try norm(b + "attn_norm"), attention: attention, ffnNorm: try norm(b + "ffn_norm"), ffn: ffn)
    }

    /// The multi-token-prediction module after the main layers (`blk.{layers}.nextn.*`).
    func mtpHead() throws -> MTPHead {
        guard spec.mtpLayers >= 1 else {
            throw MalError(.unsupported, "the model has no multi-token-prediction layer (num_nextn_predict_layers is 0)")
        }
        let n = "blk.\(spec.layers).nextn.", H = hidden
        return MTPHead(
            embeddingNorm: try norm(n + "enorm"), hiddenNorm: try norm(n + "hnorm"),
            projection: try weights.linear(n + "eh_proj", rows: H, cols: 2 * H), block: try layer(spec.layers),
            headNorm: try norm(n + "shared_head_norm"))
    }
}
