import CMalKernels
import MalCore

/// The gated feed-forward, `down(act(gate(x)) · up(x))`: SwiGLU with SiLU (Llama, DeepSeek's dense
/// layers and experts), GeGLU with a GELU.
struct GatedFeedForward {
    let gate: LinearWeight, up: LinearWeight, down: LinearWeight
    /// The activation's kernel code (`MAL_ACT_*`).
    let act: Int32

    var byteCount: Int { gate.byteCount + up.byteCount + down.byteCount }

    /// T rows of `x` through the block into `out` (which may alias `x`).
    func apply(_ x: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, count T: Int, threads: Int) {
        let n = T * gate.rows
        let g = UnsafeMutablePointer<Float>.allocate(capacity: n), u = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { g.deallocate(); u.deallocate() }
        LinearWeight.apply(group: [gate, up], x, [g, u], count: T, threads: threads)
        mal_activate_mul(act, g, u, n)
        down.apply(batch: g, out, count: T, threads: threads)
    }
}

/// The plain feed-forward, `down(act(up(x)))` (GPT-2's MLP).
struct PlainFeedForward {
    let up: LinearWeight, down: LinearWeight
    let act: Int32

    var byteCount: Int { up.byteCount + down.byteCount }

    func apply(_ x: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, count T: Int, threads: Int) {
        let f = UnsafeMutablePointer<Float>.allocate(capacity: T * up.rows)
        defer { f.deallocate() }
        up.apply(batch: x, f, count: T, threads: threads)
        mal_activate(act, f, T * up.rows)
        down.apply(batch: f, out, count: T, threads: threads)
    }
}

/// A layer's feed-forward, as `LayerComponents.feedForward` and `spec.isMoELayer` chose it.
enum FeedForward {
    case plain(PlainFeedForward)
    case gated(GatedFeedForward)
    case experts(MixtureOfExperts)

    /// Weight bytes read per token (MoE: the router, the shared experts and top-k routed ones).
    var bytesPerToken: Int {
        switch self {
        case let .plain(f): f.byteCount
        case let .gated(f): f.byteCount
        case let .experts(m): m.bytesPerToken
        }
    }
}

/// The C kernels' code for an activation (`MAL_ACT_*`).
func kernelCode(_ a: Activation) -> Int32 {
    switch a {
    case .geluTanh: Int32(MAL_ACT_GELU_TANH)
    case .geluErf: Int32(MAL_ACT_GELU_ERF)
    case .silu: Int32(MAL_ACT_SILU)
    case .relu: Int32(MAL_ACT_RELU)
    case .quickGelu: Int32(MAL_ACT_QUICK_GELU)
    }
}
