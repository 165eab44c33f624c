import MalCore

/// How a canonical tensor's bytes relate to the HF tensor it comes from.
public enum NameLayout: Equatable, Sendable {
    /// Same bytes, same shape.
    case identity
    /// GPT-2 Conv1D: HF stores `[in, out]`, canonical is `[out, in]` (every Linear's layout).
    case transposed
    /// GPT-2 fused `c_attn`: part `k` (0 q, 1 k, 2 v) of the output dimension; weights are also
    /// transposed to `[out, in]`, biases are slices.
    case splitQKV(part: Int, weight: Bool)
}

/// One rule of the name map: an HF name pattern and its canonical counterpart.
/// `{N}` matches a layer number, `{E}` an expert number; `{P}` is GPT-2's optional `transformer.` prefix.
public struct NameRule: Sendable {
    public let hf: String
    public let canonical: String
    public let layout: NameLayout
}

/// The canonical tensor names (GGUF style, `Formats/NAMES.md`) for all architectures, and the
/// mapping from HF names and back. These tables are the only place names are defined: both
/// directions are driven by them.
public enum CanonicalNames {
    static let gpt2: [NameRule] = {
        var r: [NameRule] = [
            .init(hf: "{P}wte.weight", canonical: "token_embd.weight", layout: .identity),
            .init(hf: "{P}wpe.weight", canonical: "position_embd.weight", layout: .identity),
            .init(hf: "{P}ln_f.weight", canonical: "output_norm.weight", layout: .identity),
            .init(hf: "{P}ln_f.bias", canonical: "output_norm.bias", layout: .identity),
            .init(hf: "lm_head.weight", canonical: "output.weight", layout: .identity),
        ]
        let b = "{P}h.{N}."
        r += [
            .init(hf: b + "ln_1.weight", canonical: "blk.{N}.attn_norm.weight", layout: .identity),
            .init(hf: b + "ln_1.bias", canonical: "blk.{N}.attn_norm.bias", layout: .identity),
            .init(hf: b + "ln_2.weight", canonical: "blk.{N}.ffn_norm.weight", layout: .identity),
            .init(hf: b + "ln_2.bias", canonical: "blk.{N}.ffn_norm.bias", layout: .identity),
            .init(hf: b + "attn.c_proj.weight", canonical: "blk.{N}.attn_output.weight", layout: .transposed),
            .init(hf: b + "attn.c_proj.bias", canonical: "blk.{N}.attn_output.bias", layout: .identity),
            .init(hf: b + "mlp.c_fc.weight", canonical: "blk.{N}.ffn_up.weight", layout: .transposed),
            .init(hf: b + "mlp.c_fc.bias", canonical: "blk.{N}.ffn_up.bias", layout: .identity),
            .init(hf: b + "mlp.c_proj.weight", canonical: "blk.{N}.ffn_down.weight", layout: .transposed),
            .init(hf: b + "mlp.c_proj.bias", canonical: "blk.{N}.ffn_down.bias", layout: .identity),
        ]
        for (k, n) in ["q", "k", "v"].enumerated() {
            r.append(.init(hf: b + "attn.c_attn.weight", canonical: "blk.{N}.attn_\(n).weight", layout: .splitQKV(part: k, weight: true)))
            r.append(.init(hf: b + "attn.c_attn.bias", canonical: "blk.{N}.attn_\(n).bias", layout: .splitQKV(part: k, weight: false)))
        }
        return r
    }()

    static let common: [NameRule] = [
        .init(hf: "model.embed_tokens.weight", canonical: "token_embd.weight", layout: .identity),
        .init(hf: "model.norm.weight", canonical: "output_norm.weight", layout: .identity),
        .init(hf: "lm_head.weight", canonical: "output.weight", layout: .identity),
        .init(hf: "model.layers.{N}.input_layernorm.weight", canonical: "blk.{N}.attn_norm.weight", layout: .identity),
        .init(hf: "model.layers.{N}.post_attention_layernorm.weight", canonical: "blk.{N}.ffn_norm.weight", layout: .identity),
        .init(hf: "model.layers.{N}.self_attn.o_proj.weight", canonical: "blk.{N}.attn_output.weight", layout: .identity),
        .init(hf: "model.layers.{N}.mlp.gate_proj.weight", canonical: "blk.{N}.ffn_gate.weight", layout: .identity),
        .init(hf: "model.layers.{N}.mlp.up_proj.weight", canonical: "blk.{N}.ffn_up.weight", layout: .identity),
        .init(hf: "model.layers.{N}.mlp.down_proj.weight", canonical: "blk.{N}.ffn_down.weight", layout: .identity),
    ]

    static let llama: [NameRule] = common + [
        .init(hf: "model.layers.{N}.self_attn.q_proj.weight", canonical: "blk.{N}.attn_q.weight", layout: .identity),
        .init(hf: "model.layers.{N}.self_attn.k_proj.weight", canonical: "blk.{N}.attn_k.weight", layout: .identity),
        .init(hf: "model.layers.{N}.self_attn.v_proj.weight", canonical: "blk.{N}.attn_v.weight", layout: .identity),
        .init(hf: "model.layers.{N}.self_attn.q_proj.bias", canonical: "blk.{N}.attn_q.bias", layout: .identity),
        .init(hf: "model.layers.{N}.self_attn.k_proj.bias", canonical: "blk.{N}.attn_k.bias", layout: .identity),
        .init(hf: "model.layers.{N}.self_attn.v_proj.bias", canonical: "blk.{N}.attn_v.bias", layout: .identity),
        .init(hf: "model.layers.{N}.self_attn.o_proj.bias", canonical: "blk.{N}.attn_output.bias", layout: .identity),
        .init(hf: "model.layers.{N}.mlp.gate_proj.bias", canonical: "blk.{N}.ffn_gate.bias", layout: .identity),
        .init(hf: "model.layers.{N}.mlp.up_proj.bias", canonical: "blk.{N}.ffn_up.bias", layout: .identity),
        .init(hf: "model.layers.{N}.mlp.down_proj.bias", canonical: "blk.{N}.ffn_down.bias", layout: .identity),
    ]

    static let deepseek: [NameRule] = {
        let a = "model.layers.{N}.self_attn.", m = "model.layers.{N}.mlp.", l = "model.layers.{N}."
        return common + [
            .init(hf: a + "q_proj.weight", canonical: "blk.{N}.attn_q.weight", layout: .identity),
            .init(hf: a + "q_a_proj.weight", canonical: "blk.{N}.attn_q_a.weight", layout: .identity),
            .init(hf: a + "q_a_layernorm.weight", canonical: "blk.{N}.attn_q_a_norm.weight", layout: .identity),
            .init(hf: a + "q_b_proj.weight", canonical: "blk.{N}.attn_q_b.weight", layout: .identity),
            .init(hf: a + "kv_a_proj_with_mqa.weight", canonical: "blk.{N}.attn_kv_a_mqa.weight", layout: .identity),
            .init(hf: a + "kv_a_layernorm.weight", canonical: "blk.{N}.attn_kv_a_norm.weight", layout: .identity),
            .init(hf: a + "kv_b_proj.weight", canonical: "blk.{N}.attn_kv_b.weight", layout: .identity),
            .init(hf: m + "gate.weight", canonical: "blk.{N}.ffn_gate_inp.weight", layout: .identity),
            .init(hf: m + "gate.e_score_correction_bias", canonical: "blk.{N}.exp_probs_b.bias", layout: .identity),
            .init(hf: m + "experts.{E}.gate_proj.weight", canonical: "blk.{N}.ffn_gate_exps.{E}.weight", layout: .identity),
            .init(hf: m + "experts.{E}.up_proj.weight", canonical: "blk.{N}.ffn_up_exps.{E}.weight", layout: .identity),
            .init(hf: m + "experts.{E}.down_proj.weight", canonical: "blk.{N}.ffn_down_exps.{E}.weight", layout: .identity),
            .init(hf: m + "shared_experts.gate_proj.weight", canonical: "blk.{N}.ffn_gate_shexp.weight", layout: .identity),
            .init(hf: m + "shared_experts.up_proj.weight", canonical: "blk.{N}.ffn_up_shexp.weight", layout: .identity),
            .init(hf: m + "shared_experts.down_proj.weight", canonical: "blk.{N}.ffn_down_shexp.weight", layout: .identity),
            // Multi-token prediction module (DeepSeek-V3 release names at model.layers.{L}).
            .init(hf: l + "embed_tokens.weight", canonical: "blk.{N}.nextn.embed_tokens.weight", layout: .identity),
            .init(hf: l + "enorm.weight", canonical: "blk.{N}.nextn.enorm.weight", layout: .identity),
            .init(hf: l + "hnorm.weight", canonical: "blk.{N}.nextn.hnorm.weight", layout: .identity),
            .init(hf: l + "eh_proj.weight", canonical: "blk.{N}.nextn.eh_proj.weight", layout: .identity),
            .init(hf: l + "shared_head.norm.weight", canonical: "blk.{N}.nextn.shared_head_norm.weight", layout: .identity),
            .init(hf: l + "shared_head.head.weight", canonical: "blk.{N}.nextn.shared_head_head.weight", layout: .identity),
        ]
    }()

    public static func rules(for arch: Architecture) -> [NameRule] {
        switch arch {
        case .gpt2: return gpt2
        case .llama: return llama
        case .deepseekV2, .deepseekV3: return deepseek
        }
    }

    /// HF's FP8 block scale of `X.weight` is `X.weight_scale_inv`; canonically `X.scale_inv`.
    static let hfScaleSuffix = "_scale_inv"
    static let scaleSuffix = ".scale_inv"

    public struct Mapping: Equatable, Sendable {
        public var canonical: String
        public var layout: NameLayout
    }

    /// Canonical names for an HF tensor (several for a fused tensor); nil if no rule matches.
    /// `prefix` is GPT-2's `transformer.` or "".
    public static func toCanonical(_ hfName: String, arch: Architecture, gpt2Prefix prefix: String = "transformer.") -> [Mapping]? {
        if hfName.hasSuffix(hfScaleSuffix) {
            let base = String(hfName.dropLast(hfScaleSuffix.count))
            guard let m = toCanonical(base, arch: arch, gpt2Prefix: prefix), m.count == 1, m[0].layout == .identity,
                  m[0].canonical.hasSuffix(".weight") else { return nil }
            return [Mapping(canonical: String(m[0].canonical.dropLast(".weight".count)) + scaleSuffix, layout: .identity)]
        }
        var out: [Mapping] = []
        for r in rules(for: arch) {
            if let vars = match(r.hf.replacing("{P}", with: prefix), hfName) {
                out.append(Mapping(canonical: fill(r.canonical, vars), layout: r.layout))
            }
        }
        return out.isEmpty ? nil : out
    }

    /// The HF name a canonical tensor comes from, and its layout there.
    public static func toHF(_ canonical: String, arch: Architecture, gpt2Prefix prefix: String = "transformer.") -> (hf: String, layout: NameLayout)? {
        if canonical.hasSuffix(scaleSuffix) {
            let base = String(canonical.dropLast(scaleSuffix.count)) + ".weight"
            guard let m = toHF(base, arch: arch, gpt2Prefix: prefix), m.layout == .identity else { return nil }
            return (m.hf + hfScaleSuffix, .identity)
        }
        for r in rules(for: arch) {
            if let vars = match(r.canonical, canonical) {
                return (fill(r.hf.replacing("{P}", with: prefix), vars), r.layout)
            }
        }
        return nil
    }

    /// Matches `name` against `pattern` with `{N}`/`{E}` standing for decimal numbers.
    static func match(_ pattern: String, _ name: String) -> [String: String]? {
        var vars: [String: String] = [:]
        var p = pattern.utf8[...]
        var n = name.utf8[...]
        while let c = p.first {
            if c == UInt8(ascii: "{"), p.count >= 3 {
                let key = String(decoding: p.prefix(3), as: UTF8.self)
                p = p.dropFirst(3)
                let digits = n.prefix { $0 >= 0x30 && $0 <= 0x39 }
                if digits.isEmpty || (digits.count > 1 && digits.first == 0x30) || digits.count > 9 { return nil }
                vars[key] = String(decoding: digits, as: UTF8.self)
                n = n.dropFirst(digits.count)
            } else {
                guard n.first == c else { return nil }
                p = p.dropFirst()
                n = n.dropFirst()
            }
        }
        return n.isEmpty ? vars : nil
    }

    static func fill(_ pattern: String, _ vars: [String: String]) -> String {
        var s = pattern
        for (k, v) in vars { s = s.replacing(k, with: v) }
        return s
    }
}
