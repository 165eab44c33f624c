import MalCore

/// Reads an HF `config.json` into a `ModelSpec`.
///
/// Two key styles parse to the same spec: the transformers-5 style (`rope_parameters` holding
/// `rope_theta`, `dtype`, a derived `head_dim`/`qk_head_dim`) and the style real Hub repos use
/// (`rope_theta` + `rope_scaling` with `type` or `rope_type`, `torch_dtype`).
public enum HFConfigReader {
    public static let supported = Architecture.allCases.map(\.rawValue)

    public static func read(path: String) throws -> ModelSpec {
        let file = try MappedFile(path: path)
        return try withExtendedLifetime(file) { try parse(try JSONValue.parse(file.bytes, file: path), file: path) }
    }

    public static func parse(_ json: JSONValue, file: String) throws -> ModelSpec {
        guard json.objectPairs != nil else {
            throw MalError(.invalidField, "config is not a JSON object", file: file)
        }
        let c = ConfigFields(json: json, file: file)
        guard let typeValue = json["model_type"] else {
            throw MalError(.missingField, "missing required field 'model_type' (supported: \(supported.joined(separator: ", ")))", file: file)
        }
        guard let type = typeValue.stringValue, let arch = Architecture(rawValue: type) else {
            throw MalError(.unknownArchitecture,
                           "unknown model_type \(typeValue.serialized) (supported: \(supported.joined(separator: ", ")))",
                           file: file)
        }
        let spec: ModelSpec
        switch arch {
        case .gpt2: spec = try gpt2(c)
        case .llama: spec = try llama(c)
        case .deepseekV2, .deepseekV3: spec = try deepseek(c, arch)
        }
        if let problem = spec.firstProblem { throw MalError(.invalidField, problem, file: file) }
        return spec
    }

    static func gpt2(_ c: ConfigFields) throws -> ModelSpec {
        let hidden = try c.size("n_embd")
        let heads = try c.size("n_head")
        try c.require(hidden % heads == 0, "n_embd \(hidden) is not a multiple of n_head \(heads)", key: "n_head")
        let positions = try c.optSize("n_positions") ?? c.size("n_ctx")
        // `reorder_and_upcast_attn` only changes torch's float precision, which is float32 here anyway.
        let scaling = AttentionScaling(byHeadDim: try c.optBool("scale_attn_weights") ?? true,
                                       byInverseLayer: try c.optBool("scale_attn_by_inverse_layer_idx") ?? false)
        return ModelSpec(
            architecture: .gpt2, vocabSize: try c.size("vocab_size"), hiddenSize: hidden,
            layers: try c.size("n_layer"), heads: heads, kvHeads: heads, headDim: hidden / heads,
            intermediateSize: try c.optSize("n_inner") ?? 4 * hidden, maxPositions: positions,
            norm: .layerNorm, normEps: try c.epsilon("layer_norm_epsilon") ?? 1e-5,
            activation: try c.activation("activation_function", default: "gelu_new"), positions: .learned, rope: nil,
            tiedEmbeddings: try c.optBool("tie_word_embeddings") ?? true, attentionBias: true, mlpBias: true,
            bosTokenId: try c.optInt("bos_token_id"), eosTokenIds: try c.tokenIds("eos_token_id"),
            declaredDType: try c.dtype(), mla: nil, moe: nil, mtpLayers: 0, quantization: try c.quantization(),
            attentionScaling: scaling == AttentionScaling(byHeadDim: true, byInverseLayer: false) ? nil : scaling)
    }

    static func llama(_ c: ConfigFields) throws -> ModelSpec {
        let hidden = try c.size("hidden_size")
        let heads = try c.size("num_attention_heads")
        let kvHeads = try c.optSize("num_key_value_heads") ?? heads
        try c.require(kvHeads > 0 && heads % kvHeads == 0,
                      "num_attention_heads \(heads) is not a multiple of num_key_value_heads \(kvHeads)",
                      key: "num_key_value_heads")
        let headDim = try c.optSize("head_dim") ?? hidden / heads
        return ModelSpec(
            architecture: .llama, vocabSize: try c.size("vocab_size"), hiddenSize: hidden,
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

    static func deepseek(_ c: ConfigFields, _ arch: Architecture) throws -> ModelSpec {
        let v3 = arch == .deepseekV3
        let heads = try c.size("num_attention_heads")
        let mla = MLASpec(qLoraRank: try c.optInt("q_lora_rank"), kvLoraRank: try c.size("kv_lora_rank"),
                          qkNopeHeadDim: try c.size("qk_nope_head_dim"), qkRopeHeadDim: try c.size("qk_rope_head_dim"),
                          vHeadDim: try c.size("v_head_dim"))
        if let qk = try c.optSize("qk_head_dim") {
            try c.require(qk == mla.qkHeadDim, "qk_head_dim \(qk) != qk_nope_head_dim + qk_rope_head_dim (\(mla.qkHeadDim))",
                          key: "qk_head_dim")
        }
        var moe: MoESpec?
        if let experts = try c.optInt("n_routed_experts"), experts > 0 {
            let method = try c.optString("topk_method") ?? (v3 ? "noaux_tc" : "greedy")
            let known = ["greedy", "group_limited_greedy", "noaux_tc"]
            try c.require(known.contains(method), "unknown topk_method '\(method)' (supported: \(known.joined(separator: ", ")))",
                          key: "topk_method")
            let scoringName = try c.optString("scoring_func") ?? (v3 ? "sigmoid" : "softmax")
            guard let scoring = ScoringFunction(rawValue: scoringName) else {
                throw MalError(.invalidField, "field 'scoring_func': unknown value '\(scoringName)' (supported: softmax, sigmoid)",
                               file: c.file)
            }
            let groups = try c.optInt("n_group") ?? 1
            let topkGroups = try c.optInt("topk_group") ?? 1
            let perToken = try c.size("num_experts_per_tok")
            try c.require(groups > 0 && experts % groups == 0, "n_routed_experts \(experts) is not a multiple of n_group \(groups)",
                          key: "n_group")
            try c.require(topkGroups >= 1 && topkGroups <= groups, "topk_group \(topkGroups) not in 1...n_group (\(groups))",
                          key: "topk_group")
            try c.require(perToken >= 1 && perToken <= experts, "num_experts_per_tok \(perToken) not in 1...\(experts)",
                          key: "num_experts_per_tok")
            moe = MoESpec(routedExperts: experts, sharedExperts: try c.optInt("n_shared_experts") ?? 0,
                          expertsPerToken: perToken, expertIntermediateSize: try c.size("moe_intermediate_size"),
                          groups: groups, topkGroups: topkGroups, scoring: scoring, topkMethod: method,
                          routedScalingFactor: try c.optDouble("routed_scaling_factor") ?? 1.0,
                          normTopkProb: try c.optBool("norm_topk_prob") ?? v3,
                          firstDenseLayers: try c.optInt("first_k_dense_replace") ?? 0,
                          layerFrequency: try c.optSize("moe_layer_freq") ?? 1,
                          correctionBias: method == "noaux_tc")
        }
        return ModelSpec(
            architecture: arch, vocabSize: try c.size("vocab_size"), hiddenSize: try c.size("hidden_size"),
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
            declaredDType: try c.dtype(), mla: mla, moe: moe,
            mtpLayers: v3 ? (try c.optInt("num_nextn_predict_layers") ?? 0) : 0,
            quantization: try c.quantization())
    }
}

/// Typed access to config keys; every failure names the key and the file.
struct ConfigFields {
    let json: JSONValue
    let file: String

    func value(_ key: String) -> JSONValue? {
        guard let v = json[key], !v.isNull else { return nil }
        return v
    }

    func int(_ key: String) throws -> Int {
        guard let v = try optInt(key) else {
            throw MalError(.missingField, "missing required field '\(key)'", file: file)
        }
        return v
    }

    /// A dimension or count: an integer of at least 1 (a 0 would divide by zero or build empty tensors).
    func size(_ key: String) throws -> Int {
        guard let v = try optSize(key) else { throw MalError(.missingField, "missing required field '\(key)'", file: file) }
        return v
    }

    /// A size ≥ 1, at most `ModelSpec.maxSize` (positions: `maxPositionsLimit`).
    func optSize(_ key: String) throws -> Int? {
        guard let v = try optInt(key) else { return nil }
        try require(v >= 1, "must be at least 1, found \(v)", key: key)
        let limit = ["n_positions", "n_ctx", "max_position_embeddings"].contains(key) ? ModelSpec.maxPositionsLimit : ModelSpec.maxSize
        try require(v <= limit, "must be at most \(limit), found \(v)", key: key)
        return v
    }

    /// A norm epsilon: finite and not negative (a negative one makes 1/sqrt(mean + eps) NaN).
    func epsilon(_ key: String) throws -> Double? {
        guard let d = try optDouble(key) else { return nil }
        try require(d.isFinite && d >= 0, "must be a finite number >= 0, found \(d)", key: key)
        return d
    }

    func optInt(_ key: String) throws -> Int? {
        guard let v = value(key) else { return nil }
        guard let i = v.intValue, i >= 0, i < 1 << 40 else {
            throw MalError(.invalidField, "field '\(key)': expected a non-negative integer, found \(v.serialized)", file: file)
        }
        return i
    }

    func optDouble(_ key: String, in obj: JSONValue? = nil) throws -> Double? {
        guard let v = (obj ?? json)[key], !v.isNull else { return nil }
        guard let d = v.doubleValue, d.isFinite else {
            throw MalError(.invalidField, "field '\(key)': expected a number, found \(v.serialized)", file: file)
        }
        return d
    }

    func optBool(_ key: String) throws -> Bool? {
        guard let v = value(key) else { return nil }
        guard let b = v.boolValue else {
            throw MalError(.invalidField, "field '\(key)': expected true or false, found \(v.serialized)", file: file)
        }
        return b
    }

    func optString(_ key: String) throws -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v.stringValue else {
            throw MalError(.invalidField, "field '\(key)': expected a string, found \(v.serialized)", file: file)
        }
        return s
    }

    /// The feed-forward activation's HF name, checked against the ones the runtime implements.
    func activation(_ key: String, default name: String) throws -> String {
        let a = try optString(key) ?? name
        try require(Activation(hfName: a) != nil, Activation.unsupported(a), key: key)
        return a
    }

    func require(_ ok: Bool, _ message: String, key: String) throws {
        if !ok { throw MalError(.invalidField, "field '\(key)': \(message)", file: file) }
    }

    /// `eos_token_id` may be an integer, a list of integers or null.
    func tokenIds(_ key: String) throws -> [Int] {
        guard let v = value(key) else { return [] }
        if let i = v.intValue { return [i] }
        if let a = v.arrayValue {
            return try a.map {
                guard let i = $0.intValue else {
                    throw MalError(.invalidField, "field '\(key)': expected integers, found \($0.serialized)", file: file)
                }
                return i
            }
        }
        throw MalError(.invalidField, "field '\(key)': expected an integer or a list, found \(v.serialized)", file: file)
    }

    func dtype() throws -> String? { try optString("dtype") ?? optString("torch_dtype") }

    /// RoPE settings from `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling`.
    /// `key`: the config key the rotated width comes from (for the error).
    func rope(dimensions: Int, key dimensionsKey: String, interleaved: Bool) throws -> RopeSpec {
        let params = value("rope_parameters")
        let scaling = value("rope_scaling")
        if let p = params, p.objectPairs == nil {
            throw MalError(.invalidField, "field 'rope_parameters': expected an object", file: file)
        }
        if let s = scaling, s.objectPairs == nil {
            throw MalError(.invalidField, "field 'rope_scaling': expected an object or null", file: file)
        }
        let theta = try optDouble("rope_theta", in: params) ?? optDouble("rope_theta") ?? 10000
        try require(theta.isFinite && theta > 0, "must be a positive number, found \(theta)", key: "rope_theta")
        try require(dimensions >= 2 && dimensions % 2 == 0, "rotary dimensions must be even and at least 2, found \(dimensions)",
                    key: dimensionsKey)
        // The scaling parameters live in rope_parameters (t5 style) or rope_scaling (Hub style).
        let src = params ?? scaling
        let typeName = (src?["rope_type"] ?? src?["type"])?.stringValue ?? "default"
        func num(_ key: String, _ def: Double? = nil) throws -> Double {
            if let d = try optDouble(key, in: src) {
                try require(d.isFinite && (d > 0 || key.hasPrefix("mscale")), "must be a positive number, found \(d)", key: key)
                return d
            }
            if let def { return def }
            throw MalError(.missingField, "missing required field '\(key)' of rope type '\(typeName)'", file: file)
        }
        func orig(_ def: Int?) throws -> Int {
            if let v = src?["original_max_position_embeddings"], !v.isNull {
                guard let i = v.intValue, i > 0 else {
                    throw MalError(.invalidField, "field 'original_max_position_embeddings': expected a positive integer", file: file)
                }
                return i
            }
            if let def { return def }
            throw MalError(.missingField, "missing required field 'original_max_position_embeddings' of rope type '\(typeName)'",
                           file: file)
        }
        let kind: RopeScaling
        switch typeName {
        case "default": kind = .none
        case "linear": kind = .linear(factor: try num("factor"))
        case "llama3":
            kind = .llama3(factor: try num("factor"), lowFreqFactor: try num("low_freq_factor"),
                           highFreqFactor: try num("high_freq_factor"), originalMaxPositions: try orig(nil))
        case "yarn":
            kind = .yarn(factor: try num("factor"), betaFast: try num("beta_fast", 32), betaSlow: try num("beta_slow", 1),
                         mscale: try num("mscale", 1), mscaleAllDim: try num("mscale_all_dim", 0),
                         originalMaxPositions: try orig(4096))
        default:
            throw MalError(.unsupported, "rope type '\(typeName)' is not supported (supported: default, linear, llama3, yarn)",
                           file: file)
        }
        return RopeSpec(theta: theta, scaling: kind, dimensions: dimensions, interleaved: interleaved)
    }

    func quantization() throws -> QuantizationSpec? {
        guard let q = value("quantization_config") else { return nil }
        guard q.objectPairs != nil else {
            throw MalError(.invalidField, "field 'quantization_config': expected an object", file: file)
        }
        var block: [Int]?
        if let b = q["weight_block_size"], !b.isNull {
            // [rows, cols]; malconv writes [1, 0] for per-channel scales.
            guard let a = b.arrayValue, a.count == 2, let r = a[0].intValue, let cl = a[1].intValue, r > 0, cl >= 0, cl > 0 || r == 1 else {
                throw MalError(.invalidField, "field 'quantization_config.weight_block_size': expected [rows, cols], found \(b.serialized)",
                               file: file)
            }
            block = [r, cl]
        }
        return QuantizationSpec(method: q["quant_method"]?.stringValue ?? "unknown", format: q["fmt"]?.stringValue ?? "",
                                activationScheme: q["activation_scheme"]?.stringValue ?? "", weightBlockSize: block,
                                scaleFormat: q["scale_fmt"]?.stringValue)
    }
}
