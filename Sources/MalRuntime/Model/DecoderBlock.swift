import CMalKernels
import MalCore

/// One decoder block as a function of its KV cache and start position, so the main stack and the
/// multi-token-prediction layer (`MultiTokenPrediction.swift`) run the same code.
extension Transformer {
    /// Buffers of one batch of T tokens through a decoder block.
    final class BlockScratch {
        let xn, q, k, v, att: UnsafeMutablePointer<Float>
        init(count T: Int, hidden H: Int, qDim: Int, kDim: Int, vDim: Int, attDim: Int) {
            xn = .allocate(capacity: T * H)
            q = .allocate(capacity: T * qDim)
            k = .allocate(capacity: T * kDim)
            v = .allocate(capacity: max(T * vDim, 1))
            att = .allocate(capacity: T * attDim)
        }
        deinit { for p in [xn, q, k, v, att] { p.deallocate() } }
    }

    /// One decoder block over T tokens at positions `start ..< start + T`, in place on `x`
    /// (`[T, H]`): x += attention(norm(x)) with KV cache `c`, then x += ffn(norm(x)).
    func run(_ layer: Layer, cache c: Int, _ x: UnsafeMutablePointer<Float>, _ s: BlockScratch, count T: Int, start: Int) {
        let H = spec.hiddenSize
        let xn = s.xn, q = s.q, k = s.k, v = s.v, att = s.att
        for t in 0..<T { layer.attnNorm.apply(x + t * H, xn + t * H, H) }
        switch layer.attention {
        case let .multiHead(a):
            a.project(
                xn, count: T, q: q, k: k, v: v, rotary: rotary, heads: spec.heads, kvHeads: cacheHeads, headDim: headK,
                start: start, threads: threads)
        case let .latent(m):
            m.project(xn, count: T, q: q, k: k, v: v, rotary: rotary, start: start, threads: threads)
        }
        for t in 0..<T {
            let p = start + t
            for g in 0..<cacheHeads {
                (keys[c] + (g * contextLength + p) * headK).update(from: k + t * kDim + g * headK, count: headK)
                if vDim > 0 { (values[c] + (g * contextLength + p) * headV).update(from: v + t * vDim + g * headV, count: headV) }
            }
        }
        attend(cache: c, scale: softmaxScales[min(c, softmaxScales.count - 1)], q: q, out: att, count: T, start: start)
        switch layer.attention {
        case let .multiHead(a): a.output.apply(batch: att, xn, count: T, threads: threads)
        case let .latent(m): m.finish(att, count: T, out: xn, threads: threads)
        }
        for i in 0..<(T * H) { x[i] += xn[i] }
        for t in 0..<T { layer.ffnNorm.apply(x + t * H, xn + t * H, H) }
        switch layer.ffn {
        case let .plain(f):
            f.apply(xn, out: xn, count: T, threads: threads)
        case let .gated(f):
            f.apply(xn, out: xn, count: T, threads: threads)
        case let .experts(m):
            let choices = m.apply(batch: xn, out: xn, count: T, threads: threads)
            if let onRoute { for (t, ch) in choices.enumerated() { onRoute(c, t, ch.ids, ch.weights) } }
        }
        for i in 0..<(T * H) { x[i] += xn[i] }
    }
}
