import CMalKernels
import Foundation
import MalCore

/// The decoder-only transformer of GPT-2, Llama 3 and DeepSeek V2/V3, assembled from the
/// components its architecture names (`LayerComponents`): norm (LayerNorm | RMSNorm, with or
/// without bias), positions (learned | RoPE), attention (multi-head | grouped-query | multi-head
/// latent), feed-forward (MLP | gated | mixture of experts), biases per projection. Float32
/// activations, a KV cache, batched prompt processing.
public final class Transformer: @unchecked Sendable {
    public let spec: ModelSpec
    public var threads: Int
    public let contextLength: Int
    /// How prompt processing rounds activations (`Precision`); `.exact` unless set. It may change
    /// between calls to `forward`.
    public var precision: Precision {
        get { precisionSetting.value }
        set { precisionSetting.value = newValue }
    }
    let precisionSetting: PrecisionSetting

    struct Layer {
        let attnNorm: Norm
        let attention: Attention
        let ffnNorm: Norm
        let ffn: FeedForward
    }

    let arena: WeightArena
    /// The token embedding of an untied model; nil when the head is tied (rows are read from
    /// `output`, so the matrix is in memory once).
    let embedding: Tensor?
    /// Scale grid of an FP8 embedding.
    let embeddingScale: Tensor?
    let embeddingBlock: BlockShape
    let positionEmbedding: [Float]?
    let layers: [Layer]
    let outputNorm: Norm
    let output: LinearWeight
    let rotary: Rotary?
    /// Query/key and value widths per token and their per-head sizes.
    let qDim: Int, kDim: Int, vDim: Int, headK: Int, headV: Int, cacheHeads: Int
    /// Per layer: what attention scores are multiplied by before the softmax.
    let softmaxScales: [Float]
    /// Absorbed MLA: values are read from the key cache (`c_kv` is both), no value cache.
    let latentCache: Bool
    // KV cache: per layer and cache head, its positions contiguous ([head][contextLength][headK],
    // values likewise): the attention kernel then streams each head's keys and values, which
    // position-major rows do not let it (Docs/PERFORMANCE.md, the KV cache). In huge pages.
    var keys: [UnsafeMutablePointer<Float>]
    var values: [UnsafeMutablePointer<Float>]
    public private(set) var position = 0
    /// The multi-token-prediction layer, when loaded (`MultiTokenPrediction.swift`), its KV cache
    /// (the last of `keys`/`values`) and how many of its rows that cache holds.
    let mtpHead: MTPHead?
    public internal(set) var mtpPosition = 0
    /// The final normed hidden states of the last `forward(keepHidden: true)`.
    public private(set) var finalHidden: [Float] = []
    /// Called with (layer, token index in the batch, expert ids, weights) for every MoE routing.
    public var onRoute: ((Int, Int, [Int32], [Float]) -> Void)?

    /// The checksums of mapped raw weights, checked while the model runs (`mapped` loads do not
    /// read every byte first); `requireIntactWeights` waits for it.
    public let weightCheck: BackgroundCheck?

    /// Waits for the deferred weight check and throws what it found: a command calls it before it
    /// reports success or writes its output.
    public func requireIntactWeights() throws { try weightCheck?.wait() }

    /// Weight bytes read per generated token (for bandwidth ceilings; MoE: shared + top-k experts).
    public var weightBytesPerToken: Int {
        layers.reduce(output.byteCount) { $0 + $1.attention.byteCount + $1.ffn.bytesPerToken }
    }

    /// - Parameters:
    ///   - mtp: also load the multi-token-prediction layer (DeepSeek-V3's
    ///     `num_nextn_predict_layers`), for `mtpForward` and speculative decoding.
    ///   - mapped: read the weights where the model holds them instead of copying them into the
    ///     huge-page arena: a container's raw tensors are then the file's mapping, paged in by the
    ///     kernel and shared by every process that maps it, so a model larger than memory runs
    ///     (slowly; the memory plan only warns). Compressed tensors are decoded either way.
    ///   - progress: called with (MiB loaded, MiB of weights) as the weights load.
    public init(
        model: CanonicalModel, contextLength requested: Int? = nil, threads: Int = availableCores, mtp: Bool = false,
        mapped: Bool = false, progress: ((Int, Int) -> Void)? = nil
    ) throws {
        let s = model.spec
        spec = s
        self.threads = threads
        let ctx = min(requested ?? 4096, s.maxPositions)
        contextLength = ctx
        try Transformer.checkMemory(model, mtp: mtp, context: ctx, mapped: mapped)
        weightCheck = mapped ? model.deferredCheck().map { BackgroundCheck($0) } : nil
        arena = WeightArena()
        let w = WeightLoader(model: model, arena: mapped ? nil : arena, progress: progress)
        precisionSetting = w.precision
        let assembly = try LayerAssembly(w, spec: s)
        let H = s.hiddenSize, V = s.vocabSize
        let tied = !w.has("output.weight")
        (embedding, embeddingScale) = tied ? (nil, nil) : try Transformer.loadEmbedding(w, model: model, vocab: V, hidden: H)
        embeddingBlock = w.block(of: "token_embd.weight")
        positionEmbedding =
            assembly.parts.positions == .learned
            ? try w.vector("position_embd.weight", count: s.maxPositions * H, shape: [s.maxPositions, H]) : nil
        layers = try (0..<s.layers).map(assembly.layer)
        mtpHead = mtp ? try assembly.mtpHead() : nil
        outputNorm = try assembly.norm("output_norm")
        output = try w.linear(tied ? "token_embd" : "output", rows: V, cols: H)
        rotary = assembly.parts.positions == .rope ? s.rope.map(Rotary.init) : nil
        if let mla = s.mla {
            let absorbed = mla.absorbed != nil
            headK = absorbed ? mla.kvLoraRank + mla.qkRopeHeadDim : mla.qkHeadDim
            headV = absorbed ? mla.kvLoraRank : mla.vHeadDim
            cacheHeads = absorbed ? 1 : s.heads
            latentCache = absorbed
            var scale = 1 / Float(mla.qkHeadDim).squareRoot()
            if case let .yarn(factor, _, _, _, mAll, _)? = s.rope?.scaling, mAll != 0 {
                let m = Float(Rotary.mscale(factor, mAll))
                scale *= m * m
            }
            softmaxScales = Array(repeating: scale, count: s.layers)
        } else {
            headK = s.headDim
            headV = s.headDim
            cacheHeads = s.kvHeads
            latentCache = false
            let a = s.attentionScaling ?? AttentionScaling(byHeadDim: true, byInverseLayer: false)
            let base: Float = a.byHeadDim ? 1 / Float(s.headDim).squareRoot() : 1
            softmaxScales = (0..<s.layers).map { a.byInverseLayer ? base / Float($0 + 1) : base }
        }
        qDim = s.heads * headK
        kDim = cacheHeads * headK
        vDim = latentCache ? 0 : cacheHeads * headV
        let kd = kDim, vd = vDim
        func floats(_ n: Int) throws -> UnsafeMutablePointer<Float> { try allocateLarge(n * 4).bindMemory(to: Float.self, capacity: n) }
        let caches = s.layers + (mtpHead == nil ? 0 : 1)
        keys = try (0..<caches).map { _ in try floats(ctx * kd) }
        values = try (0..<caches).map { _ in try floats(max(ctx * vd, 1)) }
    }

    /// The weights are refused up front when they and the KV cache do not fit; mapped weights are
    /// paged from the file instead, so then it only warns.
    static func checkMemory(_ model: CanonicalModel, mtp: Bool, context ctx: Int, mapped: Bool) throws {
        let plan = MemoryPlan(model: model, mtp: mtp)
        guard mapped else { return try plan.requireFit(context: ctx) }
        if !plan.fits(context: ctx) {
            printError(
                "warning: the model needs \(gibibytes(plan.weightBytes + plan.kvBytes(context: ctx))) and this process may use "
                    + "\(gibibytes(plan.memoryBytes)); its mapped weights will be paged from the file, slowly")
        }
    }

    deinit {
        for p in keys + values { p.deallocate() }
    }

    /// The token embedding of an untied model, and the scale grid of an FP8 one.
    static func loadEmbedding(_ w: WeightLoader, model: CanonicalModel, vocab V: Int, hidden H: Int) throws -> (Tensor, Tensor?) {
        let e = try w.tensor("token_embd.weight", shape: [V, H])
        var scale: Tensor?
        if e.dtype == .f8e4m3, let sc = model.tensors.first(where: { $0.name == "token_embd.weight" })?.scale {
            let grid = try w.tensor(sc, shape: w.block(of: "token_embd.weight").scaleShape([V, H]))
            guard grid.dtype == .f32 else {
                throw MalError(.unsupported, "an FP8 embedding's scale grid must be F32, not \(grid.dtype.rawValue)", tensor: sc)
            }
            scale = grid
        }
        guard [.f32, .f16, .bf16].contains(e.dtype) || scale != nil else {
            throw MalError(.unsupported, "token embedding of dtype \(e.dtype.rawValue) is not supported", tensor: "token_embd.weight")
        }
        return (e, scale)
    }

    public func reset() {
        position = 0
        mtpPosition = 0
    }

    /// Forgets the cached positions from `p` on (speculative decoding's rollback: the next
    /// forward overwrites them).
    public func truncate(to p: Int) {
        precondition(p >= 0 && p <= position, "truncate(to: \(p)) beyond the \(position) cached positions")
        position = p
    }

    /// KV-cache bytes per token (all layers).
    public var kvCacheBytesPerToken: Int { MemoryPlan.kvBytesPerToken(spec, layers: layers.count) }

    /// Embedding of token `id` (+ learned position) into `x`.
    func embed(_ id: Int32, position pos: Int, into x: UnsafeMutablePointer<Float>) throws {
        let h = spec.hiddenSize, vocab = embedding?.shape[0] ?? output.rows
        guard id >= 0, Int(id) < vocab else {
            throw MalError(.invalidArgument, "token id \(id) is outside the vocabulary (0..<\(vocab))")
        }
        if let embedding {
            try embedding.withBytes { b in
                try widenToFloat32(b.baseAddress! + Int(id) * h * (embedding.dtype.byteSize ?? 4), dtype: embedding.dtype, count: h, into: x)
            }
            if let sc = embeddingScale {
                // float32(q) × scale_inv of the row's blocks (`widenToFloat32` gave float32(q)).
                let bc = embeddingBlock.width(h), nb = (h + bc - 1) / bc
                sc.withBytes { s in
                    let sp = s.bindMemory(to: Float.self)
                    let row = Int(id) / embeddingBlock.rows
                    for c in 0..<h { x[c] *= sp[row * nb + c / bc] }
                }
            }
        } else {
            output.row(Int(id), into: x)  // tied head: the same matrix
        }
        if let pe = positionEmbedding { for i in 0..<h { x[i] += pe[pos * h + i] } }
    }

    /// Runs `tokens` through the model after the cached positions and returns logits
    /// (`[T, vocab]` when `allLogits`, else those of the last token). `capture(k, states)` gets the
    /// input of every layer k (`[T, H]`) and, for k = layers, the final normed hidden state.
    /// With `keepHidden`, `finalHidden` holds every token's final normed hidden state (`[T, H]`, what
    /// the head reads: the input of the MTP layer).
    public func forward(
        _ tokens: [Int32], allLogits: Bool = false, keepHidden: Bool = false,
        capture: ((Int, [Float]) -> Void)? = nil
    ) throws -> [Float] {
        let T = tokens.count, H = spec.hiddenSize
        guard T > 0 else { return [] }
        guard position + T <= contextLength else {
            throw MalError(.invalidArgument, "\(position + T) tokens exceed the context length of \(contextLength)")
        }
        let x = UnsafeMutablePointer<Float>.allocate(capacity: T * H)
        defer { x.deallocate() }
        let scratch = BlockScratch(count: T, hidden: H, qDim: qDim, kDim: kDim, vDim: vDim, attDim: spec.heads * headV)
        let xn = scratch.xn
        for (t, id) in tokens.enumerated() { try embed(id, position: position + t, into: x + t * H) }
        for (l, layer) in layers.enumerated() {
            capture?(l, Array(UnsafeBufferPointer(start: x, count: T * H)))
            run(layer, cache: l, x, scratch, count: T, start: position)
        }
        position += T
        let first = allLogits || capture != nil || keepHidden ? 0 : T - 1
        let rowsOut = T - first
        for t in first..<T { outputNorm.apply(x + t * H, xn + (t - first) * H, H) }
        capture?(layers.count, Array(UnsafeBufferPointer(start: xn, count: rowsOut * H)))
        if keepHidden { finalHidden = Array(UnsafeBufferPointer(start: xn, count: T * H)) }
        if !allLogits && rowsOut > 1 { xn.update(from: xn + (rowsOut - 1) * H, count: H) }
        let n = allLogits ? rowsOut : 1
        var logits = [Float](repeating: 0, count: n * output.rows)
        logits.withUnsafeMutableBufferPointer { output.apply(batch: xn, $0.baseAddress!, count: n, threads: threads) }
        return logits
    }

    /// Causal attention of the T new queries over all cached positions. A job is a range of heads:
    /// one whole KV group when there are at least as many groups as threads, else ⌈heads/threads⌉
    /// heads, which may span two groups (`mal_attention` takes any range; with one KV head, as in
    /// MQA and absorbed MLA, every slice is in the one group). A job runs every query row
    /// (`mal_attention_rows`: up to 4 query vectors share each key and value load), so its keys and
    /// values stay in cache from one row to the next instead of being fetched again.
    func attend(cache l: Int, scale: Float, q: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, count T: Int, start: Int) {
        let heads = spec.heads, kvh = cacheHeads, dk = headK, dv = headV
        let K = SharedPointer(keys[l]), V = SharedPointer(latentCache ? keys[l] : values[l])
        let qs = SharedPointer(q), os = SharedPointer(out)
        let qd = qDim, od = heads * headV, ctx = contextLength
        // Absorbed MLA reads its values from the key rows (the first kv_lora_rank floats of each).
        let vRow = latentCache ? dk : dv
        let group = heads / kvh
        let perJob = kvh >= threads ? group : (heads + threads - 1) / threads
        let jobs = (heads + perJob - 1) / perJob
        let pool = BufferPool(size: max(perJob, 4) * (start + T) * 4)
        WorkerPool.run(jobs, threads: threads) { job in
            let h0 = job * perJob, h1 = min(heads, h0 + perJob)
            let raw = pool.get()
            defer { pool.put(raw) }
            mal_attention_rows(
                os.pointer, od, qs.pointer, qd, T, start, K.pointer, V.pointer, dk, dv, heads, kvh, dk, vRow, ctx * dk, ctx * vRow, scale,
                raw.assumingMemoryBound(to: Float.self), h0, h1)
        }
    }
}
