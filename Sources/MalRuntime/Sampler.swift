import Foundation

/// Next-token selection: greedy, or sampling with temperature, top-k, top-p (nucleus), min-p and
/// a repetition penalty (CTRL-style: positive logits of seen tokens divided, negative multiplied).
/// A fixed seed gives reproducible output (SplitMix64 generator).
public struct Sampler {
    public var temperature: Float = 0
    public var topK: Int = 0
    public var topP: Float = 1
    public var minP: Float = 0
    public var repetitionPenalty: Float = 1
    private var state: UInt64

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, minP: Float = 0, repetitionPenalty: Float = 1, seed: UInt64) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        state = seed
    }

    mutating func nextUniform() -> Float {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Float(z >> 40) / Float(1 << 24)
    }

    /// Picks the next token from `logits`, given the tokens so far (for the repetition penalty).
    public mutating func sample(_ logits: [Float], history: [Int32]) -> Int32 {
        var l = logits
        if repetitionPenalty != 1 {
            for id in Set(history) where Int(id) < l.count {
                let v = l[Int(id)]
                l[Int(id)] = v > 0 ? v / repetitionPenalty : v * repetitionPenalty
            }
        }
        if temperature <= 0 { return Int32(l.indices.max { l[$0] < l[$1] }!) }
        // Candidates sorted by logit.
        var idx = Array(l.indices)
        idx.sort { l[$0] > l[$1] }
        if topK > 0 && topK < idx.count { idx.removeLast(idx.count - topK) }
        let maxL = l[idx[0]]
        var probs = idx.map { exp((l[$0] - maxL) / temperature) }
        var sum = probs.reduce(0, +)
        if minP > 0 {
            let cut = minP * probs[0]
            var n = probs.count
            while n > 1 && probs[n - 1] < cut { n -= 1 }
            probs.removeLast(probs.count - n); idx.removeLast(idx.count - n)
            sum = probs.reduce(0, +)
        }
        if topP < 1 {
            var acc: Float = 0
            var n = 0
            while n < probs.count { acc += probs[n] / sum; n += 1; if acc >= topP { break } }
            probs.removeLast(probs.count - n); idx.removeLast(idx.count - n)
            sum = probs.reduce(0, +)
        }
        let r = nextUniform() * sum
        var acc: Float = 0
        for (k, p) in probs.enumerated() {
            acc += p
            if r < acc { return Int32(idx[k]) }
        }
        return Int32(idx[idx.count - 1])
    }
}
