import MalCore

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
