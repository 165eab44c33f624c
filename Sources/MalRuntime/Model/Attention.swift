import MalCore

/// Multi-head attention's projections: `kvHeads` key/value heads shared by groups of query heads
/// (grouped-query attention; multi-head when equal, multi-query at one). Scores, softmax and the
/// weighted values run in `Transformer.attend` over the layer's KV cache.
struct MultiHeadAttention {
    let q: LinearWeight, k: LinearWeight, v: LinearWeight, output: LinearWeight

    var byteCount: Int { q.byteCount + k.byteCount + v.byteCount + output.byteCount }

    /// Queries, keys and values of T normed rows, rotated when the model has rotary positions.
    func project(
        _ x: UnsafeMutablePointer<Float>, count T: Int, q qs: UnsafeMutablePointer<Float>, k ks: UnsafeMutablePointer<Float>,
        v vs: UnsafeMutablePointer<Float>, rotary: Rotary?, heads: Int, kvHeads: Int, headDim: Int, start: Int, threads: Int
    ) {
        LinearWeight.apply(group: [q, k, v], x, [qs, ks, vs], count: T, threads: threads)
        guard let rotary else { return }
        for t in 0..<T {
            rotary.apply(qs + t * q.rows, heads: heads, stride: headDim, position: start + t)
            rotary.apply(ks + t * k.rows, heads: kvHeads, stride: headDim, position: start + t)
        }
    }
}

/// A layer's attention, as `LayerComponents.attention` chose it.
enum Attention {
    case multiHead(MultiHeadAttention)
    case latent(LatentAttention)

    var byteCount: Int {
        switch self {
        case let .multiHead(a): a.byteCount
        case let .latent(m): m.byteCount
        }
    }
}
