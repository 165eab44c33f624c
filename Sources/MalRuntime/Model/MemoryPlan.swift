import MalCore

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
        kvBytesPerToken = MemoryPlan.kvBytesPerToken(s, layers: layers)
        kvBytesPerTokenNaive = s.mla.map { _ in MemoryPlan.kvBytesPerToken(s, layers: layers, absorbed: false) }
        kvBytesPerTokenLatent = s.mla.map { _ in MemoryPlan.kvBytesPerToken(s, layers: layers, absorbed: true) }
        self.memoryBytes = memoryBytes
        maxPositions = s.maxPositions
    }

    /// KV-cache bytes per position of `layers` layers (float32 keys and values): the latent vector
    /// and the rope key for absorbed MLA (`absorbed`, default: as the spec says), per-head keys
    /// (nope + rope) and values for naive MLA, `kvHeads` keys and values otherwise. Saturates
    /// instead of overflowing (a hostile spec).
    public static func kvBytesPerToken(_ s: ModelSpec, layers: Int, absorbed: Bool? = nil) -> Int {
        let perLayer: Int
        if let mla = s.mla {
            perLayer =
                (absorbed ?? (mla.absorbed != nil))
                ? (mla.kvLoraRank + mla.qkRopeHeadDim) * 4
                : s.heads * (mla.qkHeadDim + mla.vHeadDim) * 4
        } else {
            perLayer = s.kvHeads * s.headDim * 2 * 4
        }
        return saturatingProduct(layers, perLayer)
    }

    /// Loading holds the weights plus one decoded tensor on its way into place.
    public var loadPeakBytes: Int { min(weightBytes + largestTensorBytes, Int.max / 2) }

    public func kvBytes(context: Int) -> Int { MemoryPlan.saturatingProduct(context, kvBytesPerToken) }

    /// a × b, or Int.max / 4 when that is smaller or the product overflows.
    static func saturatingProduct(_ a: Int, _ b: Int) -> Int {
        let (p, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? Int.max / 4 : min(p, Int.max / 4)
    }

    /// The weights are decoded into memory: a model larger than the machine is refused up front
    /// with the sizes and the `--context` that fits, not left to fail an allocation (or the OOM
    /// killer) halfway through.
    public func requireFit(context ctx: Int) throws {
        guard !fits(context: ctx) else { return }
        let fitting = maxContext.map { " (a context of \($0) positions fits: --context \($0))" } ?? ""
        throw MalError(
            .outOfMemory,
            "running the model needs \(gibibytes(loadPeakBytes)) to load (\(gibibytes(weightBytes)) of tensors "
                + "plus the largest one while it is placed) and \(gibibytes(kvBytes(context: ctx))) of KV cache for \(ctx) positions; "
                + "this process may use \(gibibytes(memoryBytes)) (physical memory or its cgroup limit)\(fitting); "
                + "a container written with --codec raw runs with --mmap, paged from the file")
    }

    /// Whether the load and a KV cache of `context` positions fit.
    public func fits(context: Int) -> Bool { loadPeakBytes <= memoryBytes && weightBytes + kvBytes(context: context) <= memoryBytes }

    /// The longest context (up to the model's maximum) whose KV cache fits beside the weights;
    /// nil when the weights alone do not.
    public var maxContext: Int? {
        guard loadPeakBytes <= memoryBytes else { return nil }
        return min(maxPositions, (memoryBytes - weightBytes) / max(kvBytesPerToken, 1))
    }
}
