import Foundation
import MalCore

/// Multi-head latent attention (DeepSeek V2/V3), "naive" path: queries through the q-LoRA
/// (`q_a` → RMSNorm → `q_b`) or a plain `q_proj`; the joint `kv_a` projection gives the latent
/// `c_kv` (RMS-normed) and one rope key shared by all heads; `kv_b` expands `c_kv` to per-head
/// no-rope keys and values; RoPE (interleaved, YaRN) on the rope parts of q and k.
struct LatentAttention {
    let qA: LinearWeight?, qANorm: Norm?, qB: LinearWeight?, q: LinearWeight?
    let kvA: LinearWeight, kvANorm: Norm, kvB: LinearWeight
    let output: LinearWeight
    let mla: MLASpec
    let heads: Int

    init(_ w: WeightLoader, prefix b: String, mla: MLASpec, heads: Int, eps: Float) throws {
        self.mla = mla
        self.heads = heads
        if mla.qLoraRank != nil {
            qA = try w.linear(b + "attn_q_a")
            qANorm = Norm(weight: try w.vector(b + "attn_q_a_norm.weight"), bias: nil, eps: eps, rms: true)
            qB = try w.linear(b + "attn_q_b")
            q = nil
        } else {
            qA = nil; qANorm = nil; qB = nil
            q = try w.linear(b + "attn_q")
        }
        kvA = try w.linear(b + "attn_kv_a_mqa")
        kvANorm = Norm(weight: try w.vector(b + "attn_kv_a_norm.weight"), bias: nil, eps: eps, rms: true)
        kvB = try w.linear(b + "attn_kv_b")
        output = try w.linear(b + "attn_output")
    }

    var byteCount: Int { [qA, qB, q, kvA, kvB, output].compactMap { $0?.byteCount }.reduce(0, +) }

    /// Queries [T, heads·(nope+rope)], keys [T, heads·(nope+rope)], values [T, heads·v] for the
    /// normed inputs `x` [T, H].
    func project(_ x: UnsafeMutablePointer<Float>, count T: Int, q out: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>,
                 v: UnsafeMutablePointer<Float>, rotary: Rotary?, start: Int, threads: Int) {
        let nope = mla.qkNopeHeadDim, rope = mla.qkRopeHeadDim, dv = mla.vHeadDim, r = mla.kvLoraRank, dk = nope + rope
        if let qA, let qB, let qANorm {
            let a = UnsafeMutablePointer<Float>.allocate(capacity: T * qA.rows)
            defer { a.deallocate() }
            qA.apply(batch: x, a, count: T, threads: threads)
            for t in 0..<T { qANorm.apply(a + t * qA.rows, a + t * qA.rows, qA.rows) }
            qB.apply(batch: a, out, count: T, threads: threads)
        } else {
            q!.apply(batch: x, out, count: T, threads: threads)
        }
        let kva = UnsafeMutablePointer<Float>.allocate(capacity: T * (r + rope))
        let kvb = UnsafeMutablePointer<Float>.allocate(capacity: T * heads * (nope + dv))
        defer { kva.deallocate(); kvb.deallocate() }
        kvA.apply(batch: x, kva, count: T, threads: threads)
        let latent = UnsafeMutablePointer<Float>.allocate(capacity: T * r)
        defer { latent.deallocate() }
        for t in 0..<T { kvANorm.apply(kva + t * (r + rope), latent + t * r, r) }
        kvB.apply(batch: latent, kvb, count: T, threads: threads)
        for t in 0..<T {
            let pe = kva + t * (r + rope) + r
            rotary?.apply(pe, heads: 1, stride: rope, position: start + t)
            rotary?.apply(out + t * heads * dk, heads: heads, stride: dk, offset: nope, position: start + t)
            for h in 0..<heads {
                let src = kvb + t * heads * (nope + dv) + h * (nope + dv)
                let kh = k + t * heads * dk + h * dk
                kh.update(from: src, count: nope)
                (kh + nope).update(from: pe, count: rope)
                (v + t * heads * dv + h * dv).update(from: src + nope, count: dv)
            }
        }
    }
}

/// DeepSeek's mixture of experts. V3 (`noaux_tc`): sigmoid scores; the correction bias is added
/// for selection only; group score = sum of the group's top two; the best `topk_group` of
/// `n_group` groups are kept; top-k experts among them; weights are the unbiased scores,
/// normalised if `norm_topk_prob`, times `routed_scaling_factor`. V2: softmax scores, greedy top-k
/// (or group-limited with the group maximum). Shared experts are always added. Only the chosen
/// experts are computed.
struct MixtureOfExperts {
    let spec: MoESpec
    let router: LinearWeight
    let bias: [Float]?
    let experts: [Transformer.SwiGLU]
    let shared: Transformer.SwiGLU?

    var bytesPerToken: Int {
        let e = experts.first.map { $0.gate.byteCount + $0.up.byteCount + $0.down.byteCount } ?? 0
        let s = shared.map { $0.gate.byteCount + $0.up.byteCount + $0.down.byteCount } ?? 0
        return router.byteCount + spec.expertsPerToken * e + s
    }

    /// The routing decision for one token's logits: expert ids (by descending selection score)
    /// and their weights.
    func route(_ logits: [Float]) -> (ids: [Int32], weights: [Float]) {
        let n = logits.count
        var scores = [Float](repeating: 0, count: n)
        if spec.scoring == .sigmoid {
            for i in 0..<n { scores[i] = 1 / (1 + exp(-logits[i])) }
        } else {
            let m = logits.max()!
            var sum: Float = 0
            for i in 0..<n { scores[i] = exp(logits[i] - m); sum += scores[i] }
            for i in 0..<n { scores[i] /= sum }
        }
        var select = scores
        if let bias { for i in 0..<n { select[i] += bias[i] } }
        if spec.groups > 1 && spec.topkGroups < spec.groups && spec.topkMethod != "greedy" {
            let per = n / spec.groups
            let groupScore: [Float] = (0..<spec.groups).map { g in
                let slice = select[(g * per)..<((g + 1) * per)].sorted(by: >)
                return spec.topkMethod == "noaux_tc" ? slice.prefix(2).reduce(0, +) : slice[0]
            }
            let keep = Set((0..<spec.groups).sorted { groupScore[$0] > groupScore[$1] }.prefix(spec.topkGroups))
            for g in 0..<spec.groups where !keep.contains(g) { for i in (g * per)..<((g + 1) * per) { select[i] = -.infinity } }
        }
        let chosen = (0..<n).sorted { select[$0] > select[$1] || (select[$0] == select[$1] && $0 < $1) }.prefix(spec.expertsPerToken)
        var weights = chosen.map { scores[$0] }
        if spec.normTopkProb && spec.scoring == .sigmoid {
            let sum = weights.reduce(0, +) + 1e-20
            weights = weights.map { $0 / sum }
        }
        weights = weights.map { $0 * Float(spec.routedScalingFactor) }
        return (chosen.map { Int32($0) }, weights)
    }

    /// out = Σ w·expert(x) + shared(x) for one token (`out` may alias `x`).
    func apply(_ x: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, threads: Int) -> (ids: [Int32], weights: [Float]) {
        let h = router.cols
        var logits = [Float](repeating: 0, count: router.rows)
        logits.withUnsafeMutableBufferPointer { router.apply(x, $0.baseAddress!, threads: threads) }
        let choice = route(logits)
        let input = UnsafeMutablePointer<Float>.allocate(capacity: h), y = UnsafeMutablePointer<Float>.allocate(capacity: h)
        let acc = UnsafeMutablePointer<Float>.allocate(capacity: h)
        defer { input.deallocate(); y.deallocate(); acc.deallocate() }
        input.update(from: x, count: h)
        acc.initialize(repeating: 0, count: h)
        for (id, w) in zip(choice.ids, choice.weights) {
            Transformer.swiglu(experts[Int(id)], input, out: y, count: 1, threads: threads)
            for i in 0..<h { acc[i] += w * y[i] }
        }
        if let shared {
            Transformer.swiglu(shared, input, out: y, count: 1, threads: threads)
            for i in 0..<h { acc[i] += y[i] }
        }
        out.update(from: acc, count: h)
        return choice
    }
}
