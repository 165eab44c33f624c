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

/// Rotary position embedding in HF's "rotate half" layout (Llama), with Llama 3 frequency
/// scaling (`rope_type: llama3`): wavelengths above `orig/low` are divided by `factor`, below
/// `orig/high` kept, and smoothly interpolated in between.
struct Rotary {
    let invFreq: [Float]
    let dims: Int

    init(_ r: RopeSpec) {
        let d = r.dimensions
        dims = d
        var f = (0..<(d / 2)).map { 1.0 / pow(r.theta, Double(2 * $0) / Double(d)) }
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
        case .none, .yarn: break
        }
        invFreq = f.map { Float($0) }
    }

    /// Rotates `heads` vectors of `headDim` at `position` in place (first `dims` of each head).
    func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, position: Int) {
        let half = dims / 2
        for i in 0..<half {
            let angle = Float(position) * invFreq[i]
            let c = cos(angle), s = sin(angle)
            for h in 0..<heads {
                let p = x + h * headDim
                let a = p[i], b = p[i + half]
                p[i] = a * c - b * s
                p[i + half] = b * c + a * s
            }
        }
    }
}

/// The decoder-only transformer of GPT-2 and Llama 3, assembled from the spec: norm (LayerNorm |
/// RMSNorm), positions (learned | RoPE), attention (multi-head | grouped-query), feed-forward
/// (GELU MLP | SwiGLU). Float32 activations, a KV cache, batched prompt processing.
public final class Transformer: @unchecked Sendable {
    public let spec: ModelSpec
    public var threads: Int
    public let contextLength: Int

    enum FeedForward {
        case gelu(up: LinearWeight, down: LinearWeight)
        case swiglu(gate: LinearWeight, up: LinearWeight, down: LinearWeight)
    }

    struct Layer {
        let attnNorm: Norm, q: LinearWeight, k: LinearWeight, v: LinearWeight, o: LinearWeight
        let ffnNorm: Norm, ffn: FeedForward
    }

    let arena: WeightArena
    let embedding: Tensor
    /// Scale grid of an FP8 (tied) embedding.
    let embeddingScale: Tensor?
    let embeddingBlock: BlockShape
    let positionEmbedding: [Float]?
    let layers: [Layer]
    let outputNorm: Norm
    let output: LinearWeight
    let rotary: Rotary?
    let qDim: Int, kvDim: Int
    // KV cache: per layer [contextLength, kvDim].
    var keys: [UnsafeMutablePointer<Float>]
    var values: [UnsafeMutablePointer<Float>]
    public private(set) var position = 0

    /// Weight bytes read per generated token (for bandwidth ceilings).
    public var weightBytesPerToken: Int {
        var n = output.byteCount
        for l in layers {
            n += l.q.byteCount + l.k.byteCount + l.v.byteCount + l.o.byteCount
            switch l.ffn {
            case let .gelu(u, d): n += u.byteCount + d.byteCount
            case let .swiglu(g, u, d): n += g.byteCount + u.byteCount + d.byteCount
            }
        }
        return n
    }

    public init(model: CanonicalModel, contextLength requested: Int? = nil, threads: Int = availableCores) throws {
        let s = model.spec
        spec = s
        self.threads = threads
        guard s.architecture == .gpt2 || s.architecture == .llama else {
            throw MalError(.unsupported, "the runtime runs GPT-2 and Llama models; \(s.architecture.rawValue) is not supported yet")
        }
        let ctx = min(requested ?? 4096, s.maxPositions)
        contextLength = ctx
        arena = WeightArena()
        let w = WeightLoader(model: model, arena: arena)
        let gpt2 = s.architecture == .gpt2
        func norm(_ base: String) throws -> Norm {
            Norm(weight: try w.vector(base + ".weight"), bias: gpt2 ? try w.vector(base + ".bias") : nil, eps: Float(s.normEps), rms: !gpt2)
        }
        embedding = try w.tensor("token_embd.weight")
        if embedding.dtype == .f8e4m3, let sc = model.tensors.first(where: { $0.name == "token_embd.weight" })?.scale {
            embeddingScale = try w.tensor(sc)
            embeddingBlock = w.block
        } else {
            embeddingScale = nil
            embeddingBlock = w.block
        }
        guard [.f32, .f16, .bf16].contains(embedding.dtype) || embeddingScale != nil else {
            throw MalError(.unsupported, "token embedding of dtype \(embedding.dtype.rawValue) is not supported", tensor: "token_embd.weight")
        }
        positionEmbedding = gpt2 ? try w.vector("position_embd.weight") : nil
        let bias = gpt2 || s.attentionBias
        layers = try (0..<s.layers).map { l in
            let b = "blk.\(l)."
            let ffn: FeedForward = gpt2
                ? .gelu(up: try w.linear(b + "ffn_up", bias: true), down: try w.linear(b + "ffn_down", bias: true))
                : .swiglu(gate: try w.linear(b + "ffn_gate", bias: s.mlpBias), up: try w.linear(b + "ffn_up", bias: s.mlpBias),
                          down: try w.linear(b + "ffn_down", bias: s.mlpBias))
            return Layer(attnNorm: try norm(b + "attn_norm"), q: try w.linear(b + "attn_q", bias: bias), k: try w.linear(b + "attn_k", bias: bias),
                         v: try w.linear(b + "attn_v", bias: bias), o: try w.linear(b + "attn_output", bias: bias),
                         ffnNorm: try norm(b + "ffn_norm"), ffn: ffn)
        }
        outputNorm = try norm("output_norm")
        output = try w.linear(w.has("output.weight") ? "output" : "token_embd")
        rotary = s.rope.map(Rotary.init)
        qDim = s.heads * s.headDim
        kvDim = s.kvHeads * s.headDim
        let kvd = s.kvHeads * s.headDim
        keys = (0..<s.layers).map { _ in .allocate(capacity: ctx * kvd) }
        values = (0..<s.layers).map { _ in .allocate(capacity: ctx * kvd) }
        _ = w
    }

    deinit {
        for p in keys + values { p.deallocate() }
    }

    public func reset() { position = 0 }

    /// Embedding of token `id` (+ learned position) into `x`.
    func embed(_ id: Int32, position pos: Int, into x: UnsafeMutablePointer<Float>) throws {
        let h = spec.hiddenSize
        guard id >= 0, Int(id) < embedding.shape[0] else {
            throw MalError(.invalidArgument, "token id \(id) is outside the vocabulary (0..<\(embedding.shape[0]))")
        }
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
        if let pe = positionEmbedding { for i in 0..<h { x[i] += pe[pos * h + i] } }
    }

    /// Runs `tokens` through the model after the cached positions and returns logits
    /// (`[T, vocab]` when `allLogits`, else those of the last token). `capture(k, states)` gets the
    /// input of every layer k (`[T, H]`) and, for k = layers, the final normed hidden state.
    public func forward(_ tokens: [Int32], allLogits: Bool = false, capture: ((Int, [Float]) -> Void)? = nil) throws -> [Float] {
        let T = tokens.count, H = spec.hiddenSize
        guard T > 0 else { return [] }
        guard position + T <= contextLength else {
            throw MalError(.invalidArgument, "\(position + T) tokens exceed the context length of \(contextLength)")
        }
        let x = UnsafeMutablePointer<Float>.allocate(capacity: T * H)
        let xn = UnsafeMutablePointer<Float>.allocate(capacity: T * H)
        let q = UnsafeMutablePointer<Float>.allocate(capacity: T * qDim)
        let kv = UnsafeMutablePointer<Float>.allocate(capacity: T * kvDim * 2)
        let att = UnsafeMutablePointer<Float>.allocate(capacity: T * qDim)
        let ffnWidth = layers.first.map { l -> Int in switch l.ffn { case let .gelu(u, _): return u.rows; case let .swiglu(g, _, _): return g.rows } } ?? 0
        let f1 = UnsafeMutablePointer<Float>.allocate(capacity: T * max(ffnWidth, 1))
        let f2 = UnsafeMutablePointer<Float>.allocate(capacity: T * max(ffnWidth, 1))
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 1)
        defer { for p in [x, xn, q, kv, att, f1, f2, scratch] { p.deallocate() } }
        for (t, id) in tokens.enumerated() { try embed(id, position: position + t, into: x + t * H) }
        let hd = spec.headDim
        for (l, layer) in layers.enumerated() {
            capture?(l, Array(UnsafeBufferPointer(start: x, count: T * H)))
            for t in 0..<T { layer.attnNorm.apply(x + t * H, xn + t * H, H) }
            layer.q.apply(batch: xn, q, count: T, threads: threads)
            layer.k.apply(batch: xn, kv, count: T, threads: threads)
            layer.v.apply(batch: xn, kv + T * kvDim, count: T, threads: threads)
            for t in 0..<T {
                let pos = position + t
                if let r = rotary {
                    r.apply(q + t * qDim, heads: spec.heads, headDim: hd, position: pos)
                    r.apply(kv + t * kvDim, heads: spec.kvHeads, headDim: hd, position: pos)
                }
                (keys[l] + pos * kvDim).update(from: kv + t * kvDim, count: kvDim)
                (values[l] + pos * kvDim).update(from: kv + T * kvDim + t * kvDim, count: kvDim)
            }
            try attend(layer: l, q: q, out: att, count: T, scratch: scratch)
            layer.o.apply(batch: att, xn, count: T, threads: threads)
            for i in 0..<(T * H) { x[i] += xn[i] }
            for t in 0..<T { layer.ffnNorm.apply(x + t * H, xn + t * H, H) }
            switch layer.ffn {
            case let .gelu(up, down):
                up.apply(batch: xn, f1, count: T, threads: threads)
                let n = T * up.rows
                for i in 0..<n { f1[i] = Transformer.geluTanh(f1[i]) }
                down.apply(batch: f1, xn, count: T, threads: threads)
            case let .swiglu(gate, up, down):
                gate.apply(batch: xn, f1, count: T, threads: threads)
                up.apply(batch: xn, f2, count: T, threads: threads)
                let n = T * gate.rows
                for i in 0..<n { let g = f1[i]; f1[i] = g / (1 + exp(-g)) * f2[i] }
                down.apply(batch: f1, xn, count: T, threads: threads)
            }
            for i in 0..<(T * H) { x[i] += xn[i] }
        }
        position += T
        let first = allLogits || capture != nil ? 0 : T - 1
        let rowsOut = T - first
        for t in first..<T { outputNorm.apply(x + t * H, xn + (t - first) * H, H) }
        capture?(layers.count, Array(UnsafeBufferPointer(start: xn, count: rowsOut * H)))
        if !allLogits && rowsOut > 1 { (xn).update(from: xn + (rowsOut - 1) * H, count: H) }
        let n = allLogits ? rowsOut : 1
        var logits = [Float](repeating: 0, count: n * output.rows)
        logits.withUnsafeMutableBufferPointer { output.apply(batch: xn, $0.baseAddress!, count: n, threads: threads) }
        return logits
    }

    /// Causal attention of the T new queries over all cached positions.
    func attend(layer l: Int, q: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, count T: Int,
                scratch: UnsafeMutablePointer<Float>) throws {
        let hd = spec.headDim, heads = spec.heads, kvh = spec.kvHeads
        let scale = 1 / Float(hd).squareRoot()
        let K = SendableConstPointer(keys[l]), V = SendableConstPointer(values[l])
        let qs = SendableMutablePointer(q), os = SendableMutablePointer(out)
        let start = position, qd = qDim, kvd = kvDim
        let perT = max(1, min(heads, threads))
        let headsPer = (heads + perT - 1) / perT
        let pool = BufferPool(size: headsPer * (position + T) * 4)
        WorkerPool.run(T * perT, threads: threads) { job in
            let t = job / perT, part = job % perT
            let h0 = part * headsPer, h1 = min(heads, h0 + headsPer)
            if h0 >= h1 { return }
            let nPos = start + t + 1
            // Scratch: each job uses its own slice (heads × positions of the longest query).
            let raw = pool.get()
            defer { pool.put(raw) }
            let buf = raw.assumingMemoryBound(to: Float.self)
            mal_attention(os.p + t * qd, qs.p + t * qd, K.p, V.p, nPos, hd, heads, kvh, kvd, scale, buf, h0, h1)
        }
    }

    /// GPT-2's `gelu_new`: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    @inline(__always)
    static func geluTanh(_ x: Float) -> Float {
        0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
    }
}
