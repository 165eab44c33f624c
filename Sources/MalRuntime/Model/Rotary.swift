import Foundation
import MalCore

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
