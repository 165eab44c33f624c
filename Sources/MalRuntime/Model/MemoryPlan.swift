import MalCore
import MalTransforms

/// What running a model takes in memory, before anything is loaded: its decoded weights, the
/// largest tensor (held twice while it is placed), and the KV cache per position — per head for
/// naive multi-head latent attention, the latent vector for absorbed MLA, grouped KV heads
/// otherwise. `malrun info` prints it; `Transformer` refuses a model that does not fit with it.
public struct MemoryPlan: Sendable {
    /// Decoded tensor bytes (aliases counted once).
    public let weightBytes: Int
    public let largestTensorBytes: Int
    /// KV-cache bytes per position as this model runs (float32, every layer, and the MTP layer when loaded with it).
    public let kvBytesPerToken: Int
    /// For MLA models: per head (naive) and latent (absorbed) caches per position.
    public let kvBytesPerTokenNaive: Int?
    public let kvBytesPerTokenLatent: Int?
    /// What this process may use (physical memory or its cgroup limit).
    public let memoryBytes: Int
    public let maxPositions: Int

    public init(model: CanonicalModel, mtp: Bool = false, memoryBytes: Int = physicalMemoryBytes) {
        let s = model.spec
        let cap = Int.max / 4
        let sizes = model.tensors.map { t in t.aliasOf == nil ? min(t.byteCount ?? cap, cap) : 0 }
        weightBytes = sizes.reduce(0) { min($0 + $1, cap) }
        largestTensorBytes = sizes.max() ?? 0
        let layers = s.layers + (mtp ? min(s.mtpLayers, 1) : 0)
        func bytes(_ perLayer: Int) -> Int { min(layers.multipliedReportingOverflow(by: perLayer).partialValue, cap) }
        if let mla = s.mla {
            kvBytesPerTokenNaive = bytes(s.heads * (mla.qkHeadDim + mla.vHeadDim) * 4)
            kvBytesPerTokenLatent = bytes((mla.kvLoraRank + mla.qkRopeHeadDim) * 4)
            kvBytesPerToken = mla.absorbed != nil ? kvBytesPerTokenLatent! : kvBytesPerTokenNaive!
        } else {
            kvBytesPerTokenNaive = nil
            kvBytesPerTokenLatent = nil
            kvBytesPerToken = bytes(s.kvHeads * s.headDim * 2 * 4)
        }
        self.memoryBytes = memoryBytes
        maxPositions = s.maxPositions
    }

    /// Loading holds the weights plus one decoded tensor on its way into place.
    public var loadPeakBytes: Int { min(weightBytes + largestTensorBytes, Int.max / 2) }

    public func kvBytes(context: Int) -> Int { min(context.multipliedReportingOverflow(by: kvBytesPerToken).partialValue, Int.max / 4) }

    /// Whether the load and a KV cache of `context` positions fit.
    public func fits(context: Int) -> Bool { loadPeakBytes <= memoryBytes && weightBytes + kvBytes(context: context) <= memoryBytes }

    /// The longest context (up to the model's maximum) whose KV cache fits beside the weights;
    /// nil when the weights alone do not.
    public var maxContext: Int? {
        guard loadPeakBytes <= memoryBytes else { return nil }
        return min(maxPositions, (memoryBytes - weightBytes) / max(kvBytesPerToken, 1))
    }
}
