import MalCore

/// What the runtime builds a decoder layer from, as data: an architecture's `components(_:)`
/// fills it in from the spec, and the runtime reads only this (never which architecture it runs).
/// A LayerNorm + RoPE model, or biases on q/k/v only (Qwen2), is a different value here, not a
/// new code path.
public struct LayerComponents: Equatable, Sendable {
    /// Multi-head attention with `kvHeads` key/value heads (grouped-query when fewer than
    /// `heads`), or DeepSeek's multi-head latent attention (`spec.mla`).
    public enum Attention: Equatable, Sendable { case multiHead, latent }

    /// The dense feed-forward: `down(act(up(x)))` (GPT-2) or the gated `down(act(gate(x)) · up(x))`
    /// (SwiGLU, GeGLU). MoE layers (`spec.isMoELayer`) use gated experts whichever this is.
    public enum FeedForward: Equatable, Sendable { case mlp, gated }

    /// The projections that carry a bias (`<name>.bias` beside the weight).
    public struct Biases: OptionSet, Equatable, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        public static let query = Biases(rawValue: 1 << 0)
        public static let key = Biases(rawValue: 1 << 1)
        public static let value = Biases(rawValue: 1 << 2)
        public static let attentionOutput = Biases(rawValue: 1 << 3)
        public static let gate = Biases(rawValue: 1 << 4)
        public static let up = Biases(rawValue: 1 << 5)
        public static let down = Biases(rawValue: 1 << 6)
        public static let attention: Biases = [.query, .key, .value, .attentionOutput]
        public static let feedForward: Biases = [.gate, .up, .down]
    }

    public var norm: NormKind
    /// LayerNorm's additive bias (`<norm>.bias`).
    public var normBias: Bool
    public var positions: PositionKind
    public var activation: Activation
    public var attention: Attention
    public var feedForward: FeedForward
    public var biases: Biases

    public init(
        norm: NormKind, normBias: Bool, positions: PositionKind, activation: Activation, attention: Attention,
        feedForward: FeedForward, biases: Biases
    ) {
        self.norm = norm
        self.normBias = normBias
        self.positions = positions
        self.activation = activation
        self.attention = attention
        self.feedForward = feedForward
        self.biases = biases
    }
}
