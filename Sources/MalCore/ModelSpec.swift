/// Normalisation layer: GPT-2 uses LayerNorm (with bias), Llama and DeepSeek RMSNorm.
public enum NormKind: String, Sendable, Codable { case layerNorm, rmsNorm }

/// How positions enter the model.
public enum PositionKind: String, Sendable, Codable { case learned, rope }

/// The feed-forward nonlinearity (GPT-2's MLP, or the gate of SwiGLU/GeGLU), parsed from the
/// transformers name in `activation_function` / `hidden_act` (its `ACT2FN` table).
public enum Activation: String, CaseIterable, Sendable {
    /// 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))): `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`, `gelu_accurate`.
    case geluTanh
    /// x Φ(x), with erf: `gelu`, `gelu_python`.
    case geluErf
    /// x σ(x): `silu`, `swish`.
    case silu
    case relu
    /// x σ(1.702 x): `quick_gelu`.
    case quickGelu

    public init?(hfName: String) {
        switch hfName {
        case "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_accurate": self = .geluTanh
        case "gelu", "gelu_python": self = .geluErf
        case "silu", "swish": self = .silu
        case "relu": self = .relu
        case "quick_gelu": self = .quickGelu
        default: return nil
        }
    }

    /// The names `init(hfName:)` accepts, for error messages.
    public static let hfNames = [
        "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_accurate", "gelu", "gelu_python",
        "silu", "swish", "relu", "quick_gelu",
    ]

    /// The error text for a name `init(hfName:)` refuses.
    public static func unsupported(_ name: String) -> String {
        "activation '\(name)' is not supported (supported: \(hfNames.joined(separator: ", ")))"
    }
}

/// GPT-2's attention-score options: scores are divided by √head_dim when `byHeadDim`
/// (`scale_attn_weights`, default true) and by the layer index + 1 when `byInverseLayer`
/// (`scale_attn_by_inverse_layer_idx`, default false; Stanford CRFM's GPT-2s set it).
public struct AttentionScaling: Equatable, Sendable, Codable {
    public var byHeadDim: Bool
    public var byInverseLayer: Bool

    public init(byHeadDim: Bool, byInverseLayer: Bool) {
        self.byHeadDim = byHeadDim
        self.byInverseLayer = byInverseLayer
    }
}

/// RoPE frequency scaling (`rope_scaling` / `rope_parameters`).
public enum RopeScaling: Equatable, Sendable, Codable {
    case none
    /// Llama 3.1 (`rope_type: llama3`): per-frequency interpolation between `lowFreqFactor` and
    /// `highFreqFactor` wavelengths of `originalMaxPositions`.
    case llama3(factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalMaxPositions: Int)
    /// YaRN as DeepSeek uses it: ramp between `betaFast`/`betaSlow` rotations, softmax scale from
    /// `mscale`/`mscaleAllDim` (`0.1 * m * ln(factor) + 1`).
    case yarn(
        factor: Double, betaFast: Double, betaSlow: Double, mscale: Double, mscaleAllDim: Double,
        originalMaxPositions: Int)
    /// Plain position interpolation (`rope_type: linear`).
    case linear(factor: Double)
}

public struct RopeSpec: Equatable, Sendable, Codable {
    public var theta: Double
    public var scaling: RopeScaling
    /// Number of rotated dimensions per head (head_dim for Llama, qk_rope_head_dim for DeepSeek).
    public var dimensions: Int
    /// DeepSeek rotates interleaved (even, odd) pairs; Llama rotates halves.
    public var interleaved: Bool

    public init(theta: Double, scaling: RopeScaling, dimensions: Int, interleaved: Bool) {
        self.theta = theta
        self.scaling = scaling
        self.dimensions = dimensions
        self.interleaved = interleaved
    }
}

/// Multi-head latent attention (DeepSeek V2/V3).
public struct MLASpec: Equatable, Sendable, Codable {
    /// nil: plain `q_proj` (V2-Lite); otherwise `q_a_proj` → norm → `q_b_proj`.
    public var qLoraRank: Int?
    public var kvLoraRank: Int
    public var qkNopeHeadDim: Int
    public var qkRopeHeadDim: Int
    public var vHeadDim: Int
    /// Set by `malconv absorb-mla`: "split" (per-head W_UK, W_UV) or "merged" (W_UK^T·W_UQ, W_O·W_UV).
    public var absorbed: String?
    public var qkHeadDim: Int { qkNopeHeadDim + qkRopeHeadDim }

    public init(qLoraRank: Int?, kvLoraRank: Int, qkNopeHeadDim: Int, qkRopeHeadDim: Int, vHeadDim: Int, absorbed: String? = nil) {
        self.absorbed = absorbed
        self.qLoraRank = qLoraRank
        self.kvLoraRank = kvLoraRank
        self.qkNopeHeadDim = qkNopeHeadDim
        self.qkRopeHeadDim = qkRopeHeadDim
        self.vHeadDim = vHeadDim
    }
}

/// Expert scoring function of the router.
public enum ScoringFunction: String, Sendable, Codable { case softmax, sigmoid }

/// Mixture of experts (DeepSeek V2/V3).
public struct MoESpec: Equatable, Sendable, Codable {
    public var routedExperts: Int
    public var sharedExperts: Int
    public var expertsPerToken: Int
    public var expertIntermediateSize: Int
    public var groups: Int
    public var topkGroups: Int
    public var scoring: ScoringFunction
    /// `greedy`, `group_limited_greedy` (V2) or `noaux_tc` (V3).
    public var topkMethod: String
    public var routedScalingFactor: Double
    public var normTopkProb: Bool
    /// Layers before this index are dense.
    public var firstDenseLayers: Int
    /// Every `layerFrequency`-th layer (from `firstDenseLayers`) is MoE.
    public var layerFrequency: Int
    /// V3's `e_score_correction_bias`, added to the scores for selection only.
    public var correctionBias: Bool

    public init(
        routedExperts: Int, sharedExperts: Int, expertsPerToken: Int, expertIntermediateSize: Int,
        groups: Int, topkGroups: Int, scoring: ScoringFunction, topkMethod: String,
        routedScalingFactor: Double, normTopkProb: Bool, firstDenseLayers: Int,
        layerFrequency: Int, correctionBias: Bool
    ) {
        self.routedExperts = routedExperts
        self.sharedExperts = sharedExperts
        self.expertsPerToken = expertsPerToken
        self.expertIntermediateSize = expertIntermediateSize
        self.groups = groups
        self.topkGroups = topkGroups
        self.scoring = scoring
        self.topkMethod = topkMethod
        self.routedScalingFactor = routedScalingFactor
        self.normTopkProb = normTopkProb
        self.firstDenseLayers = firstDenseLayers
        self.layerFrequency = layerFrequency
        self.correctionBias = correctionBias
    }
}

/// `quantization_config` of an HF checkpoint (DeepSeek-V3 FP8 release: fp8, e4m3, [128, 128]).
public struct QuantizationSpec: Equatable, Sendable, Codable {
    public var method: String
    public var format: String
    public var activationScheme: String
    /// [rows, cols] of one scale block; nil when the config does not say. `[1, 0]`: per channel.
    public var weightBlockSize: [Int]?
    /// `ue8m0` for power-of-two scales (DeepSeek V3.1's `scale_fmt`), nil for plain float32 scales.
    public var scaleFormat: String?

    public init(method: String, format: String, activationScheme: String, weightBlockSize: [Int]?, scaleFormat: String? = nil) {
        self.method = method
        self.format = format
        self.activationScheme = activationScheme
        self.weightBlockSize = weightBlockSize
        self.scaleFormat = scaleFormat
    }
}

/// One typed description of a model, whatever key style its `config.json` used.
///
/// GPT-2 → Llama 3 is four swaps (norm, positions, attention, feed-forward); DeepSeek adds
/// `mla`, `moe` and `mtpLayers`. Everything the runtime and the name maps need is here.
public struct ModelSpec: Equatable, Sendable, Codable {
    /// The HF `model_type` (`ArchitectureRegistry` maps it to its architecture); `architecture`
    /// in the serialised form.
    public var modelType: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    /// Per-head dimension of q/k/v for GPT-2 and Llama (DeepSeek: see `mla`).
    public var headDim: Int
    /// Dense feed-forward width.
    public var intermediateSize: Int
    public var maxPositions: Int
    public var norm: NormKind
    public var normEps: Double
    /// The HF name of the feed-forward activation (`activationKind` parses it).
    public var activation: String
    public var positions: PositionKind
    public var rope: RopeSpec?
    public var tiedEmbeddings: Bool
    public var attentionBias: Bool
    public var mlpBias: Bool
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]
    /// `torch_dtype` / `dtype` as declared (informative: files are the truth).
    public var declaredDType: String?
    public var mla: MLASpec?
    public var moe: MoESpec?
    /// GPT-2's non-default score scaling; nil is the usual 1/√head_dim (files written before this
    /// field existed decode as nil).
    public var attentionScaling: AttentionScaling?
    /// DeepSeek multi-token-prediction modules stored after the main layers.
    public var mtpLayers: Int
    public var quantization: QuantizationSpec?

    public init(
        modelType: String, vocabSize: Int, hiddenSize: Int, layers: Int, heads: Int,
        kvHeads: Int, headDim: Int, intermediateSize: Int, maxPositions: Int, norm: NormKind,
        normEps: Double, activation: String, positions: PositionKind, rope: RopeSpec?,
        tiedEmbeddings: Bool, attentionBias: Bool, mlpBias: Bool, bosTokenId: Int?,
        eosTokenIds: [Int], declaredDType: String?, mla: MLASpec?, moe: MoESpec?,
        mtpLayers: Int, quantization: QuantizationSpec?, attentionScaling: AttentionScaling? = nil
    ) {
        self.modelType = modelType
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.intermediateSize = intermediateSize
        self.maxPositions = maxPositions
        self.norm = norm
        self.normEps = normEps
        self.activation = activation
        self.positions = positions
        self.rope = rope
        self.tiedEmbeddings = tiedEmbeddings
        self.attentionBias = attentionBias
        self.mlpBias = mlpBias
        self.bosTokenId = bosTokenId
        self.eosTokenIds = eosTokenIds
        self.declaredDType = declaredDType
        self.mla = mla
        self.moe = moe
        self.mtpLayers = mtpLayers
        self.quantization = quantization
        self.attentionScaling = attentionScaling
    }

    enum CodingKeys: String, CodingKey {
        case modelType = "architecture"
        case vocabSize, hiddenSize, layers, heads, kvHeads, headDim, intermediateSize, maxPositions, norm, normEps, activation
        case positions, rope, tiedEmbeddings, attentionBias, mlpBias, bosTokenId, eosTokenIds, declaredDType, mla, moe
        case attentionScaling, mtpLayers, quantization
    }

    public var activationKind: Activation? { Activation(hfName: activation) }

    /// Bounds that no real model comes near (DeepSeek-V3: 61 + 1 layers, 256 experts, vocabulary
    /// 129,280, hidden 7168; the largest context windows are ~10M positions) and that keep every
    /// loop over layers or experts short and every product of two sizes (heads × a sum of head
    /// widths) far inside Int; products of three are only formed after the tensors' shapes have
    /// been checked against them. A hostile file that claims 2³² layers is refused, not iterated.
    public static let maxSize = 1 << 24
    public static let maxPositionsLimit = Int(Int32.max)
    public static let maxLayers = 1 << 16
    public static let maxExperts = 1 << 16
    /// Experts summed over the MoE layers (DeepSeek-V3: 58 × 257 = 14,906). Each is three expected
    /// tensors in `inspect` and three weights in the runtime, so this bounds those lists: 65,536
    /// layers of 65,536 experts each would be 1.3·10¹⁰ entries from a 1 KB config.
    public static let maxExpertInstances = 1 << 18

    /// The first constraint the spec breaks, or nil. `config.json` is checked key by key as it is
    /// read; this is the backstop for specs that arrive whole (a `.mal` file's metadata), so that a
    /// zero dimension or a negative epsilon is an error, not a division by zero in the runtime.
    public var firstProblem: String? {
        let sizes: [(String, Int)] = [
            ("vocabSize", vocabSize), ("hiddenSize", hiddenSize), ("layers", layers), ("heads", heads),
            ("kvHeads", kvHeads), ("headDim", headDim), ("intermediateSize", intermediateSize),
            ("maxPositions", maxPositions),
        ]
        if let (name, v) = sizes.first(where: { $0.1 < 1 }) { return "\(name) must be at least 1, found \(v)" }
        if let (name, v) = sizes.first(where: { $0.1 > ($0.0 == "maxPositions" ? ModelSpec.maxPositionsLimit : ModelSpec.maxSize) }) {
            return "\(name) must be at most \(name == "maxPositions" ? ModelSpec.maxPositionsLimit : ModelSpec.maxSize), found \(v)"
        }
        if layers + max(mtpLayers, 0) > ModelSpec.maxLayers {
            return "layers + mtpLayers must be at most \(ModelSpec.maxLayers), found \(layers) + \(mtpLayers)"
        }
        if heads % kvHeads != 0 { return "heads \(heads) is not a multiple of kvHeads \(kvHeads)" }
        if !(normEps.isFinite && normEps >= 0) { return "normEps must be a finite number >= 0, found \(normEps)" }
        if mtpLayers < 0 { return "mtpLayers must be >= 0, found \(mtpLayers)" }
        if activationKind == nil {
            return Activation.unsupported(activation)
        }
        if positions == .rope && rope == nil { return "rotary positions without rope settings" }
        if let r = rope {
            if !(r.theta.isFinite && r.theta > 0) { return "rope theta must be positive, found \(r.theta)" }
            if r.dimensions < 2 || r.dimensions % 2 != 0 { return "rope dimensions must be even and at least 2, found \(r.dimensions)" }
            let rotated = mla?.qkRopeHeadDim ?? headDim  // the per-head width the rotation runs over
            if r.dimensions > rotated { return "rope dimensions \(r.dimensions) exceed the rotated head width \(rotated)" }
            let factors: [Double]
            switch r.scaling {
            case .none: factors = []
            case let .linear(f): factors = [f]
            case let .llama3(f, lo, hi, orig): factors = [f, lo, hi, Double(orig)]
            case let .yarn(f, fast, slow, _, _, orig): factors = [f, fast, slow, Double(orig)]
            }
            if let f = factors.first(where: { !($0.isFinite && $0 > 0) }) { return "rope scaling parameters must be positive, found \(f)" }
        }
        if let m = mla {
            let dims = [m.kvLoraRank, m.qkNopeHeadDim, m.qkRopeHeadDim, m.vHeadDim, m.qLoraRank ?? 1]
            if dims.contains(where: { $0 < 1 || $0 > ModelSpec.maxSize }) {
                return "MLA ranks and head dimensions must be in 1...\(ModelSpec.maxSize), found \(dims)"
            }
        }
        if let e = moe {
            if e.routedExperts < 1 || e.expertIntermediateSize < 1 || e.sharedExperts < 0 || e.firstDenseLayers < 0 || e.layerFrequency < 1 {
                return "MoE expert counts, widths and layer frequency must be positive"
            }
            if e.routedExperts > ModelSpec.maxExperts || e.sharedExperts > ModelSpec.maxExperts
                || [e.expertIntermediateSize, e.firstDenseLayers, e.layerFrequency].contains(where: { $0 > ModelSpec.maxSize })
            {
                return "MoE expert counts must be at most \(ModelSpec.maxExperts) and widths at most \(ModelSpec.maxSize)"
            }
            let moeLayers = (0..<(layers + max(mtpLayers, 0))).lazy.filter { isMoELayer($0) }.count
            if moeLayers * (e.routedExperts + e.sharedExperts) > ModelSpec.maxExpertInstances {
                return "\(moeLayers) MoE layers of \(e.routedExperts + e.sharedExperts) experts exceed \(ModelSpec.maxExpertInstances) experts in all"
            }
            if !(1...e.routedExperts).contains(e.expertsPerToken) { return "expertsPerToken \(e.expertsPerToken) not in 1...\(e.routedExperts)" }
            if e.groups < 1 || e.routedExperts % e.groups != 0 { return "routedExperts \(e.routedExperts) is not a multiple of groups \(e.groups)" }
            if !(1...e.groups).contains(e.topkGroups) { return "topkGroups \(e.topkGroups) not in 1...\(e.groups)" }
            if !e.routedScalingFactor.isFinite { return "routedScalingFactor must be finite" }
        }
        return nil
    }

    /// True when decoder layer `i` (main or MTP) uses the MoE feed-forward.
    public func isMoELayer(_ i: Int) -> Bool {
        guard let moe, moe.routedExperts > 0 else { return false }
        // DeepSeek's rule (modeling_deepseek.py): `i >= first_k_dense_replace and i % moe_layer_freq == 0`.
        return i >= moe.firstDenseLayers && i % max(moe.layerFrequency, 1) == 0
    }
}
