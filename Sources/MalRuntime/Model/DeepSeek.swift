import CMalKernels
import Foundation
import MalCore

/// Multi-head latent attention (DeepSeek V2/V3). Queries through the q-LoRA (`q_a` → RMSNorm →
/// `q_b`) or a plain `q_proj`; the joint `kv_a` projection gives the latent `c_kv` (RMS-normed)
/// and one rope key shared by all heads; RoPE (interleaved, YaRN) on the rope parts.
///
/// - naive: `kv_b` expands `c_kv` to per-head no-rope keys and values, which are cached
///   (h·(nope+rope) + h·v values per token per layer);
/// - absorbed (`absorb-mla`): only `[c_kv, k_pe]` is cached (r + rope values, shared by all heads);
///   queries move into the latent space (`q_lat[h] = W_UKᵀ q_nope[h]`, or the merged
///   W_UKᵀ·W_UQ), attention runs over the latent cache, and W_UV (split) or W_O·W_UV (merged)
///   brings the result back.
struct LatentAttention {
    enum Mode {
        case naive(kvB: LinearWeight, output: LinearWeight)
        case split(kB: LinearWeight, vB: LinearWeight, output: LinearWeight)
        case merged(qLat: LinearWeight, qRope: LinearWeight, outputLat: LinearWeight)
    }

    let qA: LinearWeight?, qANorm: Norm?, q: LinearWeight?       // q: q_b, or q_proj without q-LoRA (not merged)
    let kvA: LinearWeight, kvANorm: Norm
    let mode: Mode
    let mla: MLASpec
    let heads: Int

    init(_ w: WeightLoader, prefix b: String, mla: MLASpec, heads h: Int, hidden H: Int, eps: Float) throws {
        self.mla = mla
        self.heads = h
        let r = mla.kvLoraRank, rope = mla.qkRopeHeadDim, nope = mla.qkNopeHeadDim, v = mla.vHeadDim
        let qIn = mla.qLoraRank ?? H                       // the query projection's input width
        if let qr = mla.qLoraRank {
            qA = try w.linear(b + "attn_q_a", rows: qr, cols: H)
            qANorm = Norm(weight: try w.vector(b + "attn_q_a_norm.weight", count: qr), bias: nil, eps: eps, rms: true)
        } else {
            qA = nil; qANorm = nil
        }
        kvA = try w.linear(b + "attn_kv_a_mqa", rows: r + rope, cols: H)
        kvANorm = Norm(weight: try w.vector(b + "attn_kv_a_norm.weight", count: r), bias: nil, eps: eps, rms: true)
        let qName = b + (mla.qLoraRank != nil ? "attn_q_b" : "attn_q")
        switch mla.absorbed {
        case nil:
            q = try w.linear(qName, rows: h * (nope + rope), cols: qIn)
            mode = .naive(kvB: try w.linear(b + "attn_kv_b", rows: h * (nope + v), cols: r),
                          output: try w.linear(b + "attn_output", rows: H, cols: h * v))
        case "split":
            q = try w.linear(qName, rows: h * (nope + rope), cols: qIn)
            mode = .split(kB: try w.linear(b + "attn_k_b", rows: h * r, cols: nope), vB: try w.linear(b + "attn_v_b", rows: h * v, cols: r),
                          output: try w.linear(b + "attn_output", rows: H, cols: h * v))
        case "merged":
            q = nil
            mode = .merged(qLat: try w.linear(b + "attn_q_lat", rows: h * r, cols: qIn), qRope: try w.linear(b + "attn_q_rope", rows: h * rope, cols: qIn),
                           outputLat: try w.linear(b + "attn_output_lat", rows: H, cols: h * r))
        default:
            throw MalError(.unsupported, "unknown MLA absorption '\(mla.absorbed!)'")
        }
    }

    var absorbed: Bool { if case .naive = mode { return false }; return true }

    var byteCount: Int {
        var n = [qA, q, kvA].compactMap { $0?.byteCount }.reduce(0, +)
        switch mode {
        case let .naive(kvB, o): n += kvB.byteCount + o.byteCount
        case let .split(kB, vB, o): n += kB.byteCount + vB.byteCount + o.byteCount
        case let .merged(ql, qr, ol): n += ql.byteCount + qr.byteCount + ol.byteCount
        }
        return n
    }

    /// Queries, keys and values of T normed inputs `x` [T, H] for the cache layout of the mode:
    /// naive: q [T, h·(nope+rope)], k [T, h·(nope+rope)], v [T, h·v]; absorbed: q [T, h·(r+rope)]
    /// (latent query and rope query per head), k [T, r+rope] (`c_kv`, `k_pe`), v unused.
    func project(_ x: UnsafeMutablePointer<Float>, count T: Int, q out: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>,
                 v: UnsafeMutablePointer<Float>, rotary: Rotary?, start: Int, threads: Int) {
        let nope = mla.qkNopeHeadDim, rope = mla.qkRopeHeadDim, dv = mla.vHeadDim, r = mla.kvLoraRank, dk = nope + rope
        // Query input: the normed q-LoRA latent, or x itself.
        var qIn = x
        let qa: UnsafeMutablePointer<Float>? = qA.map { .allocate(capacity: T * $0.rows) }
        defer { qa?.deallocate() }
        let kva = UnsafeMutablePointer<Float>.allocate(capacity: T * (r + rope))
        defer { kva.deallocate() }
        if let qA, let qANorm, let qa {
            LinearWeight.apply(group: [qA, kvA], x, [qa, kva], count: T, threads: threads)
            for t in 0..<T { qANorm.apply(qa + t * qA.rows, qa + t * qA.rows, qA.rows) }
            qIn = qa
        } else {
            kvA.apply(batch: x, kva, count: T, threads: threads)
        }
        for t in 0..<T {
            kvANorm.apply(kva + t * (r + rope), kva + t * (r + rope), r)
            rotary?.apply(kva + t * (r + rope) + r, heads: 1, stride: rope, position: start + t)
        }
        switch mode {
        case let .naive(kvB, _):
            q!.apply(batch: qIn, out, count: T, threads: threads)
            let latent = UnsafeMutablePointer<Float>.allocate(capacity: T * r)
            let kvb = UnsafeMutablePointer<Float>.allocate(capacity: T * heads * (nope + dv))
            defer { latent.deallocate(); kvb.deallocate() }
            for t in 0..<T { latent.advanced(by: t * r).update(from: kva + t * (r + rope), count: r) }
            kvB.apply(batch: latent, kvb, count: T, threads: threads)
            for t in 0..<T {
                rotary?.apply(out + t * heads * dk, heads: heads, stride: dk, offset: nope, position: start + t)
                let pe = kva + t * (r + rope) + r
                for h in 0..<heads {
                    let src = kvb + t * heads * (nope + dv) + h * (nope + dv)
                    let kh = k + t * heads * dk + h * dk
                    kh.update(from: src, count: nope)
                    (kh + nope).update(from: pe, count: rope)
                    (v + t * heads * dv + h * dv).update(from: src + nope, count: dv)
                }
            }
            return
        case let .split(kB, _, _):
            let qf = UnsafeMutablePointer<Float>.allocate(capacity: T * heads * dk)
            defer { qf.deallocate() }
            q!.apply(batch: qIn, qf, count: T, threads: threads)
            for t in 0..<T {
                rotary?.apply(qf + t * heads * dk, heads: heads, stride: dk, offset: nope, position: start + t)
                let lat = UnsafeMutablePointer<Float>.allocate(capacity: heads * r)
                defer { lat.deallocate() }
                for h in 0..<heads { kB.applyRows(qf + t * heads * dk + h * dk, lat, h * r, (h + 1) * r) }
                for h in 0..<heads {
                    let dst = out + t * heads * (r + rope) + h * (r + rope)
                    dst.update(from: lat + h * r, count: r)
                    (dst + r).update(from: qf + t * heads * dk + h * dk + nope, count: rope)
                }
            }
        case let .merged(qLat, qRope, _):
            let lat = UnsafeMutablePointer<Float>.allocate(capacity: T * heads * r)
            let pe = UnsafeMutablePointer<Float>.allocate(capacity: T * heads * rope)
            defer { lat.deallocate(); pe.deallocate() }
            qLat.apply(batch: qIn, lat, count: T, threads: threads)
            qRope.apply(batch: qIn, pe, count: T, threads: threads)
            for t in 0..<T {
                rotary?.apply(pe + t * heads * rope, heads: heads, stride: rope, position: start + t)
                for h in 0..<heads {
                    let dst = out + t * heads * (r + rope) + h * (r + rope)
                    dst.update(from: lat + t * heads * r + h * r, count: r)
                    (dst + r).update(from: pe + t * heads * rope + h * rope, count: rope)
                }
            }
        }
        // Absorbed cache rows: [c_kv (normed), k_pe (roped)].
        k.update(from: kva, count: T * (r + rope))
    }

    /// Attention output [T, h·(v | r)] → the layer's output [T, H].
    func finish(_ att: UnsafeMutablePointer<Float>, count T: Int, out: UnsafeMutablePointer<Float>, threads: Int) {
        let r = mla.kvLoraRank, dv = mla.vHeadDim
        switch mode {
        case let .naive(_, o): o.apply(batch: att, out, count: T, threads: threads)
        case let .split(_, vB, o):
            let vals = UnsafeMutablePointer<Float>.allocate(capacity: T * heads * dv)
            defer { vals.deallocate() }
            for t in 0..<T { for h in 0..<heads { vB.applyRows(att + t * heads * r + h * r, vals + t * heads * dv, h * dv, (h + 1) * dv) } }
            o.apply(batch: vals, out, count: T, threads: threads)
        case let .merged(_, _, ol): ol.apply(batch: att, out, count: T, threads: threads)
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
        // `norm_topk_prob` renormalises only sigmoid (V3) scores. transformers' DeepseekV2 (softmax
        // scores) never normalises, whatever the flag says; DeepSeek's own V2 code normalises when
        // it is set. transformers is the oracle here (its logits are the fixtures'), so a V2 config
        // with the flag set runs as transformers runs it (tested: `v2IgnoresNormTopkProb`).
        if spec.normTopkProb && spec.scoring == .sigmoid {
            let sum = weights.reduce(0, +) + 1e-20
            weights = weights.map { $0 / sum }
        }
        weights = weights.map { $0 * Float(spec.routedScalingFactor) }
        return (chosen.map { Int32($0) }, weights)
    }

    /// out[t] = Σ_k w_k·expert_k(x[t]) + shared(x[t]) for T tokens (`out` may alias `x`); returns
    /// each token's routing. Every token sums its experts in routing order, then the shared
    /// expert, whichever path computed them, so one token gives the same result alone or in a batch.
    func apply(batch x: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, count T: Int,
               threads: Int) -> [(ids: [Int32], weights: [Float])] {
        let h = router.cols, k = spec.expertsPerToken
        var logits = [Float](repeating: 0, count: T * router.rows)
        logits.withUnsafeMutableBufferPointer { router.apply(batch: x, $0.baseAddress!, count: T, threads: threads) }
        let choices = (0..<T).map { t in route(Array(logits[(t * router.rows)..<((t + 1) * router.rows)])) }
        if T == 1 {
            decode(x, out: out, choice: choices[0], threads: threads)
            return choices
        }
        // Prompt: each expert runs once over the tokens routed to it (a matrix-matrix product).
        let routed = UnsafeMutablePointer<Float>.allocate(capacity: T * k * h)
        let sharedOut = UnsafeMutablePointer<Float>.allocate(capacity: shared != nil ? T * h : 1)
        defer { routed.deallocate(); sharedOut.deallocate() }
        var slots = [[(token: Int, slot: Int)]](repeating: [], count: experts.count)
        for (t, c) in choices.enumerated() { for (slot, id) in c.ids.enumerated() { slots[Int(id)].append((t, slot)) } }
        for (e, list) in slots.enumerated() where !list.isEmpty {
            let n = list.count
            let xin = UnsafeMutablePointer<Float>.allocate(capacity: n * h), y = UnsafeMutablePointer<Float>.allocate(capacity: n * h)
            defer { xin.deallocate(); y.deallocate() }
            for (i, ts) in list.enumerated() { (xin + i * h).update(from: x + ts.token * h, count: h) }
            Transformer.swiglu(experts[e], xin, out: y, count: n, threads: threads)
            for (i, ts) in list.enumerated() { (routed + (ts.token * k + ts.slot) * h).update(from: y + i * h, count: h) }
        }
        if let shared { Transformer.swiglu(shared, x, out: sharedOut, count: T, threads: threads) }
        for t in 0..<T {
            let o = out + t * h
            for i in 0..<h { o[i] = 0 }
            for (slot, w) in choices[t].weights.enumerated() {
                let r = routed + (t * k + slot) * h
                for i in 0..<h { o[i] += w * r[i] }
            }
            if shared != nil { let s = sharedOut + t * h; for i in 0..<h { o[i] += s[i] } }
        }
        return choices
    }

    /// One token: the chosen experts' gate and up rows (and the shared expert's) run as one
    /// parallel region, their down projections as a second one split by output rows, so a MoE
    /// layer costs two thread hand-offs instead of three per expert.
    private func decode(_ x: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, choice: (ids: [Int32], weights: [Float]),
                        threads: Int) {
        let h = router.cols
        var units: [(f: Transformer.SwiGLU, w: Float)] = zip(choice.ids, choice.weights).map { (experts[Int($0)], $1) }
        if let shared { units.append((shared, 1)) }
        let inner = units.map { $0.f.gate.rows }, offsets = inner.reduce(into: [0]) { $0.append($0.last! + $1) }
        let total = offsets.last!
        let gate = UnsafeMutablePointer<Float>.allocate(capacity: total), up = UnsafeMutablePointer<Float>.allocate(capacity: total)
        let parts = UnsafeMutablePointer<Float>.allocate(capacity: units.count * h)
        defer { gate.deallocate(); up.deallocate(); parts.deallocate() }
        let gs = SendableMutablePointer(gate), ps = SendableMutablePointer(parts)
        // Region 1: the gate and up rows of every unit in equal shares.
        LinearWeight.apply(group: units.flatMap { [$0.f.gate, $0.f.up] }, x,
                           offsets.dropLast().flatMap { [gate + $0, up + $0] }, threads: threads)
        mal_activate_mul(units[0].f.act, gate, up, total)   // one activation for all experts
        // Region 2: each share of output rows runs every unit's down projection for those rows.
        let chunks2 = Swift.max(1, Swift.min(threads, h / 64)), per2 = (h + chunks2 - 1) / chunks2
        WorkerPool.run(chunks2, threads: threads) { c in
            let r0 = c * per2, r1 = Swift.min(h, r0 + per2)
            if r0 >= r1 { return }
            for (u, unit) in units.enumerated() { unit.f.down.applyRows(UnsafePointer(gs.p + offsets[u]), ps.p + u * h, r0, r1) }
        }
        for i in 0..<h {
            var s: Float = 0
            for (u, unit) in units.enumerated() { s += unit.w * parts[u * h + i] }
            out[i] = s
        }
    }
}
