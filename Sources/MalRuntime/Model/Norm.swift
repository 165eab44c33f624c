import CMalKernels
import MalCore

/// Normalisation layer: LayerNorm (GPT-2: mean and variance, weight and bias) or RMSNorm
/// (Llama, DeepSeek: `x · rsqrt(mean(x²) + eps) · weight`), in float32.
struct Norm {
    let weight: [Float]
    let bias: [Float]?
    let eps: Float
    let rms: Bool

    /// `y` may be `x` (in place). The sums run in 16 fixed lanes (`mal_rms_norm`, `mal_layer_norm`).
    func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        precondition(n <= weight.count)
        if rms {
            mal_rms_norm(y, x, weight, n, eps)
        } else if let bias {
            mal_layer_norm(y, x, weight, bias, n, eps)
        } else {
            mal_layer_norm(y, x, weight, nil, n, eps)
        }
    }
}
