import CMalKernels
import Foundation
import MalCore
import MalTransforms

/// Normalisation layer: LayerNorm (GPT-2: mean and variance, weight and bias) or RMSNorm
/// (Llama, DeepSeek: `x · rsqrt(mean(x²) + eps) · weight`), in float32.
struct Norm {
    let weight: [Float]
    let bias: [Float]?
    let eps: Float
    let rms: Bool

    func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        if rms {
            var ss: Float = 0
            for i in 0..<n { ss += x[i] * x[i] }
            let inv = 1 / (ss / Float(n) + eps).squareRoot()
            for i in 0..<n { y[i] = weight[i] * (x[i] * inv) }
        } else {
            var mean: Float = 0
            for i in 0..<n { mean += x[i] }
            mean /= Float(n)
            var v: Float = 0
            for i in 0..<n { let d = x[i] - mean; v += d * d }
            let inv = 1 / (v / Float(n) + eps).squareRoot()
            for i in 0..<n { y[i] = (x[i] - mean) * inv * weight[i] + (bias?[i] ?? 0) }
        }
    }
}

/// Rotary position embedding. Llama: HF's "rotate half" layout with Llama 3 frequency scaling
/// (wavelengths above `orig/low` divided by `factor`, below `orig/high` kept, interpolated in
/// between). DeepSeek: interleaved (even, odd) pairs rotated as complex numbers, with YaRN
/// frequencies as DeepSeek's `precompute_freqs_cis` computes them (correction range from
/// `beta_fast`/`beta_slow`, floor/ceil, linear ramp: `f/factor·(1−s) + f·s`) and cos/sin scaled by
/// `mscale(factor, mscale) / mscale(factor, mscale_all_dim)` as transformers does.
struct Rotary {
    let invFreq: [Float]
    let dims: Int
    let interleaved: Bool
    let attentionFactor: Float

    /// DeepSeek's `yarn_get_mscale`: 0.1·m·ln(factor) + 1 for factor > 1.
    static func mscale(_ factor: Double, _ m: Double) -> Double { factor <= 1 ? 1 : 0.1 * m * log(factor) + 1 }

    init(_ r: RopeSpec) {
        let d = r.dimensions
        dims = d
        interleaved = r.interleaved
        var f = (0..<(d / 2)).map { 1.0 / pow(r.theta, Double(2 * $0) / Double(d)) }
        var attn = 1.0
        switch r.scaling {
        case let .llama3(factor, low, high, orig):
            let lowWave = Double(orig) / low, highWave = Double(orig) / high
            f = f.map { inv in
                let wave = 2 * Double.pi / inv
                if wave < highWave { return inv }
                if wave > lowWave { return inv / factor }
                let smooth = (Double(orig) / wave - low) / (high - low)
                return (1 - smooth) * inv / factor + smooth * inv
            }
        case let .linear(factor): f = f.map { $0 / factor }
        case let .yarn(factor, betaFast, betaSlow, m, mAll, orig):
            func correctionDim(_ rotations: Double) -> Double {
                Double(d) * log(Double(orig) / (rotations * 2 * Double.pi)) / (2 * log(r.theta))
            }
            let low = max(floor(correctionDim(betaFast)), 0), high = min(ceil(correctionDim(betaSlow)), Double(d - 1))
            let span = high == low ? 0.001 : high - low
            f = f.enumerated().map { i, inv in
                let ramp = min(max((Double(i) - low) / span, 0), 1)
                let smooth = 1 - ramp
                return inv / factor * (1 - smooth) + inv * smooth
            }
            attn = mAll != 0 && m != 0 ? Rotary.mscale(factor, m) / Rotary.mscale(factor, mAll) : Rotary.mscale(factor, 1)
        case .none: break
        }
        invFreq = f.map { Float($0) }
        attentionFactor = Float(attn)
    }

    /// Rotates the `dims` values at `offset` of each of `heads` vectors (`stride` apart) in place.
    func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, stride: Int, offset: Int = 0, position: Int) {
        let half = dims / 2
        for i in 0..<half {
            let angle = Float(position) * invFreq[i]
            let c = cos(angle) * attentionFactor, s = sin(angle) * attentionFactor
            for h in 0..<heads {
                let p = x + h * stride + offset
                if interleaved {
                    let a = p[2 * i], b = p[2 * i + 1]
                    p[2 * i] = a * c - b * s
                    p[2 * i + 1] = a * s + b * c
                } else {
                    let a = p[i], b = p[i + half]
                    p[i] = a * c - b * s
                    p[i + half] = b * c + a * s
                }
            }
        }
    }
}

/// The decoder-only transformer of GPT-2, Llama 3 and DeepSeek V2/V3, assembled from the spec:
/// norm (LayerNorm | RMSNorm), positions (learned | RoPE), attention (multi-head | grouped-query |
/// multi-head latent), feed-forward (GELU MLP | SwiGLU | mixture of experts). Float32
/// activations, a KV cache, batched prompt processing.
public final class Transformer: @unchecked Sendable {
    public let spec: ModelSpec
    public var threads: Int
    public let contextLength: Int

    /// Gated feed-forward, down(act(gate(x)) · up(x)): SwiGLU with SiLU, GeGLU with a GELU.
    struct SwiGLU { let gate: LinearWeight, up: LinearWeight, down: LinearWeight; let act: Int32 }

    enum FeedForward {
        /// GPT-2's MLP, down(act(up(x))).
        case mlp(up: LinearWeight, down: LinearWeight, act: Int32)
        case swiglu(SwiGLU)
        case moe(MixtureOfExperts)
    }

    enum Attention {
        case standard(q: LinearWeight, k: LinearWeight, v: LinearWeight, o: LinearWeight)
        case latent(LatentAttention)
    }

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
    // values likewise): the attention kernel then streams each head's keys and values (4x faster
    // than position-major rows from 1024 positions on; Docs/PERFORMANCE.md). In huge pages.
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

    /// Weight bytes read per generated token (for bandwidth ceilings; MoE: shared + top-k experts).
    public var weightBytesPerToken: Int {
        var n = output.byteCount
        for l in layers {
            switch l.attention {
            case let .standard(q, k, v, o): n += q.byteCount + k.byteCount + v.byteCount + o.byteCount
            case let .latent(m): n += m.byteCount
            }
            switch l.ffn {
            case let .mlp(u, d, _): n += u.byteCount + d.byteCount
            case let .swiglu(f): n += f.gate.byteCount + f.up.byteCount + f.down.byteCount
            case let .moe(m): n += m.bytesPerToken
            }
        }
        return n
    }

    /// - Parameter mtp: also load the multi-token-prediction layer (DeepSeek-V3's
    ///   `num_nextn_predict_layers`), for `mtpForward` and speculative decoding.
    public init(model: CanonicalModel, contextLength requested: Int? = nil, threads: Int = availableCores, mtp: Bool = false) throws {
        let s = model.spec
        spec = s
        self.threads = threads
        let ctx = min(requested ?? 4096, s.maxPositions)
        contextLength = ctx
        // The weights are decoded into memory: a model larger than the machine is refused up front
        // with the sizes, not left to fail an allocation (or the OOM killer) halfway through.
        let plan = MemoryPlan(model: model, mtp: mtp)
        if !plan.fits(context: ctx) {
            let fits = plan.maxContext.map { " (a context of \($0) positions fits: --context \($0))" } ?? ""
            throw MalError(.outOfMemory, "running the model needs \(gibibytes(plan.loadPeakBytes)) to load (\(gibibytes(plan.weightBytes)) of tensors "
                           + "plus the largest one while it is placed) and \(gibibytes(plan.kvBytes(context: ctx))) of KV cache for \(ctx) positions; "
                           + "this process may use \(gibibytes(plan.memoryBytes)) (physical memory or its cgroup limit)\(fits)")
        }
        arena = WeightArena()
        let w = WeightLoader(model: model, arena: arena)
        let gpt2 = s.architecture == .gpt2
        let H = s.hiddenSize, V = s.vocabSize
        guard let activation = s.activationKind else {
            throw MalError(.unsupported, Activation.unsupported(s.activation))
        }
        let act = Transformer.kernelCode(activation)
        func norm(_ base: String) throws -> Norm {
            Norm(weight: try w.vector(base + ".weight", count: H), bias: gpt2 ? try w.vector(base + ".bias", count: H) : nil,
                 eps: Float(s.normEps), rms: !gpt2)
        }
        func swiglu(_ b: String, _ suffix: String = "", width F: Int, bias: Bool = false) throws -> SwiGLU {
            SwiGLU(gate: try w.linear(b + "ffn_gate" + suffix, rows: F, cols: H, bias: bias),
                   up: try w.linear(b + "ffn_up" + suffix, rows: F, cols: H, bias: bias),
                   down: try w.linear(b + "ffn_down" + suffix, rows: H, cols: F, bias: bias), act: act)
        }
        let tied = !w.has("output.weight")
        if tied {
            embedding = nil
            embeddingScale = nil
        } else {
            let e = try w.tensor("token_embd.weight", shape: [V, H])
            if e.dtype == .f8e4m3, let sc = model.tensors.first(where: { $0.name == "token_embd.weight" })?.scale {
                let grid = try w.tensor(sc, shape: w.block.scaleShape([V, H]))
                guard grid.dtype == .f32 else {
                    throw MalError(.unsupported, "an FP8 embedding's scale grid must be F32, not \(grid.dtype.rawValue)", tensor: sc)
                }
                embeddingScale = grid
            } else {
                embeddingScale = nil
            }
            guard [.f32, .f16, .bf16].contains(e.dtype) || embeddingScale != nil else {
                throw MalError(.unsupported, "token embedding of dtype \(e.dtype.rawValue) is not supported", tensor: "token_embd.weight")
            }
            embedding = e
        }
        embeddingBlock = w.block
        positionEmbedding = gpt2 ? try w.vector("position_embd.weight", count: s.maxPositions * H, shape: [s.maxPositions, H]) : nil
        let bias = gpt2 || s.attentionBias
        func decoderLayer(_ l: Int) throws -> Layer {
            let b = "blk.\(l)."
            let attention: Attention
            if let mla = s.mla {
                attention = .latent(try LatentAttention(w, prefix: b, mla: mla, heads: s.heads, hidden: H, eps: Float(s.normEps)))
            } else {
                let qd = s.heads * s.headDim, kvd = s.kvHeads * s.headDim
                attention = .standard(q: try w.linear(b + "attn_q", rows: qd, cols: H, bias: bias),
                                      k: try w.linear(b + "attn_k", rows: kvd, cols: H, bias: bias),
                                      v: try w.linear(b + "attn_v", rows: kvd, cols: H, bias: bias),
                                      o: try w.linear(b + "attn_output", rows: H, cols: qd, bias: bias))
            }
            let ffn: FeedForward
            if gpt2 {
                ffn = .mlp(up: try w.linear(b + "ffn_up", rows: s.intermediateSize, cols: H, bias: true),
                           down: try w.linear(b + "ffn_down", rows: H, cols: s.intermediateSize, bias: true), act: act)
            } else if let moe = s.moe, s.isMoELayer(l) {
                ffn = .moe(MixtureOfExperts(
                    spec: moe, router: try w.linear(b + "ffn_gate_inp", rows: moe.routedExperts, cols: H),
                    bias: moe.correctionBias ? try w.vector(b + "exp_probs_b.bias", count: moe.routedExperts) : nil,
                    experts: try (0..<moe.routedExperts).map { e in
                        try swiglu(b, "_exps.\(e)", width: moe.expertIntermediateSize)
                    },
                    shared: moe.sharedExperts > 0 ? try swiglu(b, "_shexp", width: moe.expertIntermediateSize * moe.sharedExperts) : nil))
            } else {
                ffn = .swiglu(try swiglu(b, width: s.intermediateSize, bias: s.mlpBias))
            }
            return Layer(attnNorm: try norm(b + "attn_norm"), attention: attention, ffnNorm: try norm(b + "ffn_norm"), ffn: ffn)
        }
        layers = try (0..<s.layers).map(decoderLayer)
        if mtp {
            guard s.mtpLayers >= 1 else {
                throw MalError(.unsupported, "the model has no multi-token-prediction layer (num_nextn_predict_layers is 0)")
            }
            let n = "blk.\(s.layers).nextn."
            mtpHead = MTPHead(embeddingNorm: try norm(n + "enorm"), hiddenNorm: try norm(n + "hnorm"),
                              projection: try w.linear(n + "eh_proj", rows: H, cols: 2 * H), block: try decoderLayer(s.layers),
                              headNorm: try norm(n + "shared_head_norm"))
        } else {
            mtpHead = nil
        }
        outputNorm = try norm("output_norm")
        output = try w.linear(tied ? "token_embd" : "output", rows: V, cols: H)
        rotary = s.rope.map(Rotary.init)
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

    deinit {
        for p in keys + values { p.deallocate() }
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
    public var kvCacheBytesPerToken: Int { layers.count * (kDim + vDim) * 4 }

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
            output.row(Int(id), into: x)   // tied head: the same matrix
        }
        if let pe = positionEmbedding { for i in 0..<h { x[i] += pe[pos * h + i] } }
    }

    /// Runs `tokens` through the model after the cached positions and returns logits
    /// (`[T, vocab]` when `allLogits`, else those of the last token). `capture(k, states)` gets the
    /// input of every layer k (`[T, H]`) and, for k = layers, the final normed hidden state.
    /// With `keepHidden`, `finalHidden` holds every token's final normed hidden state (`[T, H]`, what
    /// the head reads: the input of the MTP layer).
    public func forward(_ tokens: [Int32], allLogits: Bool = false, keepHidden: Bool = false,
                        capture: ((Int, [Float]) -> Void)? = nil) throws -> [Float] {
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

    /// The C kernels' code for an activation (`MAL_ACT_*`).
    static func kernelCode(_ a: Activation) -> Int32 {
        switch a {
        case .geluTanh: Int32(MAL_ACT_GELU_TANH)
        case .geluErf: Int32(MAL_ACT_GELU_ERF)
        case .silu: Int32(MAL_ACT_SILU)
        case .relu: Int32(MAL_ACT_RELU)
        case .quickGelu: Int32(MAL_ACT_QUICK_GELU)
        }
    }

    /// Gated feed-forward: down(act(gate(x)) · up(x)); `out` may alias `x`.
    static func swiglu(_ f: SwiGLU, _ x: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, count T: Int, threads: Int) {
        let n = T * f.gate.rows
        let g = UnsafeMutablePointer<Float>.allocate(capacity: n), u = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { g.deallocate(); u.deallocate() }
        LinearWeight.apply(group: [f.gate, f.up], x, [g, u], count: T, threads: threads)
        mal_activate_mul(f.act, g, u, n)
        f.down.apply(batch: g, out, count: T, threads: threads)
    }

    /// Causal attention of the T new queries over all cached positions. A job is a range of heads
    /// that shares one KV group (a whole group when there are enough groups for the threads, else
    /// a slice of heads); it runs every query row in turn, so its group's keys and values stay in
    /// cache from one row to the next instead of being fetched again for each.
    func attend(cache l: Int, scale: Float, q: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, count T: Int, start: Int) {
        let heads = spec.heads, kvh = cacheHeads, dk = headK, dv = headV
        let K = SendableConstPointer(keys[l]), V = SendableConstPointer(latentCache ? keys[l] : values[l])
        let qs = SendableMutablePointer(q), os = SendableMutablePointer(out)
        let qd = qDim, od = heads * headV, ctx = contextLength
        // Absorbed MLA reads its values from the key rows (the first kv_lora_rank floats of each).
        let vRow = latentCache ? dk : dv
        let group = heads / kvh
        let perJob = kvh >= threads ? group : (heads + threads - 1) / threads
        let jobs = (heads + perJob - 1) / perJob
        let pool = BufferPool(size: perJob * (start + T) * 4)
        WorkerPool.run(jobs, threads: threads) { job in
            let h0 = job * perJob, h1 = min(heads, h0 + perJob)
            let raw = pool.get()
            defer { pool.put(raw) }
            for t in 0..<T {
                mal_attention(os.p + t * od, qs.p + t * qd, K.p, V.p, start + t + 1, dk, dv, heads, kvh, dk, vRow, ctx * dk, ctx * vRow,
                              scale, raw.assumingMemoryBound(to: Float.self), h0, h1)
            }
        }
    }
}
