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

    let qA: LinearWeight?, qANorm: Norm?, q: LinearWeight?  // q: q_b, or q_proj without q-LoRA (not merged)
    let kvA: LinearWeight, kvANorm: Norm
    let mode: Mode
    let mla: MLASpec
    let heads: Int

    init(_ w: WeightLoader, prefix b: String, mla: MLASpec, heads h: Int, hidden H: Int, eps: Float) throws {
        self.mla = mla
        self.heads = h
        let r = mla.kvLoraRank, rope = mla.qkRopeHeadDim, nope = mla.qkNopeHeadDim, v = mla.vHeadDim
        let qIn = mla.qLoraRank ?? H  // the query projection's input width
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
            mode = .naive(
                kvB: try w.linear(b + "attn_kv_b", rows: h * (nope + v), cols: r),
                output: try w.linear(b + "attn_output", rows: H, cols: h * v))
        case "split":
            q = try w.linear(qName, rows: h * (nope + rope), cols: qIn)
            mode = .split(
                kB: try w.linear(b + "attn_k_b", rows: h * r, cols: nope), vB: try w.linear(b + "attn_v_b", rows: h * v, cols: r),
                output: try w.linear(b + "attn_output", rows: H, cols: h * v))
        case "merged":
            q = nil
            mode = .merged(
                qLat: try w.linear(b + "attn_q_lat", rows: h * r, cols: qIn), qRope: try w.linear(b + "attn_q_rope", rows: h * rope, cols: qIn),
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
    func project(
        _ x: UnsafeMutablePointer<Float>, count T: Int, q out: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>,
        v: UnsafeMutablePointer<Float>, rotary: Rotary?, start: Int, threads: Int
    ) {
        let rope = mla.qkRopeHeadDim, r = mla.kvLoraRank
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
            naiveQueriesKeysValues(qIn, kva, kvB: kvB, count: T, q: out, k: k, v: v, rotary: rotary, start: start, threads: threads)
            return
        case let .split(kB, _, _):
            latentQueries(qIn, kB: kB, count: T, q: out, rotary: rotary, start: start, threads: threads)
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

    /// Naive MLA: the full queries, and `kv_b` expanding the latent `c_kv` to per-head no-rope
    /// keys and values; each head's key ends with the shared rope key `k_pe`.
    private func naiveQueriesKeysValues(
        _ qIn: UnsafeMutablePointer<Float>, _ kva: UnsafeMutablePointer<Float>, kvB: LinearWeight, count T: Int,
        q out: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
        rotary: Rotary?, start: Int, threads: Int
    ) {
        let nope = mla.qkNopeHeadDim, rope = mla.qkRopeHeadDim, dv = mla.vHeadDim, r = mla.kvLoraRank, dk = nope + rope
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
    }

    /// Split absorption: each head's no-rope query moved into the latent space
    /// (`q_lat[h] = W_UK[h]ᵀ q_nope[h]`), followed by its rope query.
    private func latentQueries(
        _ qIn: UnsafeMutablePointer<Float>, kB: LinearWeight, count T: Int, q out: UnsafeMutablePointer<Float>,
        rotary: Rotary?, start: Int, threads: Int
    ) {
        let nope = mla.qkNopeHeadDim, rope = mla.qkRopeHeadDim, r = mla.kvLoraRank, dk = nope + rope
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
