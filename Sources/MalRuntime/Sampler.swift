import CMalKernels
import Foundation
import MalCore

/// Next-token selection: greedy, or sampling with temperature, top-k, top-p (nucleus), min-p and
/// a repetition penalty (CTRL-style: positive logits of seen tokens divided, negative multiplied).
/// The filters run in transformers' order: penalty, temperature, top-k, top-p, min-p, each on the
/// probabilities the previous one left (renormalised).
///
/// The sampler is a pure function of (logits, settings, seed, position): the uniform draw for the
/// token at sequence position p is SplitMix64 of (seed, p), a counter-based stream, not the next
/// value of a generator's state. So the token at each position does not depend on how positions
/// were batched or resumed, and speculative decoding, which verifies several positions in one
/// step, yields exactly the tokens of plain decoding, sampled as well as greedy.
///
/// Nothing sorts the whole vocabulary: sorting 128K logits per token cost as much as a decoding
/// step (`Docs/PERFORMANCE.md`, sampling). Top-k keeps a k-element heap; top-p finds its nucleus from a
/// histogram of the weights' mass; plain temperature sampling and min-p need no order at all.
public struct Sampler {
    public var temperature: Float = 0
    public var topK: Int = 0
    public var topP: Float = 1
    public var minP: Float = 0
    public var repetitionPenalty: Float = 1
    public var seed: UInt64

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, minP: Float = 0, repetitionPenalty: Float = 1, seed: UInt64) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.seed = seed
    }

    /// The uniform draw in [0, 1) for sequence position `position`.
    func uniform(position: Int) -> Float {
        // The (position + 1)-th value of SplitMix64 seeded with `seed`, computed directly.
        let z = SplitMix64.mix(seed &+ (UInt64(truncatingIfNeeded: position) &+ 1) &* 0x9E37_79B9_7F4A_7C15)
        return Float(z >> 40) / Float(1 << 24)
    }

    /// Picks the token at sequence position `position` from `logits`, given the tokens before it
    /// (for the repetition penalty).
    public func sample(_ logits: [Float], history: [Int32], position: Int) -> Int32 {
        let l = penalized(logits, history: history)
        // A temperature so small that 1/T overflows is greedy too (and 0 · ∞ would make the top
        // token's weight NaN).
        if temperature <= 0 || !(1 / temperature).isFinite { return Int32(l.indices.max { l[$0] < l[$1] }!) }
        return Int32(filtered(l).pick(Double(uniform(position: position))))
    }

    func penalized(_ logits: [Float], history: [Int32]) -> [Float] {
        guard repetitionPenalty != 1 else { return logits }
        var l = logits
        for id in Set(history) where id >= 0 && Int(id) < l.count {
            let v = l[Int(id)]
            l[Int(id)] = v > 0 ? v / repetitionPenalty : v * repetitionPenalty
        }
        return l
    }

    /// The survivors of temperature, top-k, top-p and min-p, kept without copying the
    /// vocabulary: weights `w` = exp((logit − max) / T) (the largest is 1) of either every token
    /// (`ids` nil) or of the top-k tokens `ids`; `keep` (nil: all of them) lists the positions in
    /// `w` that top-p kept; min-p then drops weights below `cut`.
    struct Filtered {
        var w: [Float]
        var ids: [Int]?
        var keep: [Int32]?
        var cut: Float

        /// Calls `body(position in w, weight)` for each survivor in order until it returns false
        /// (inlined, so the two passes of `pick` cost no closure calls).
        @inline(__always) func survivors(_ body: (Int, Float) -> Bool) {
            w.withUnsafeBufferPointer { w in
                if let keep {
                    for k in keep where w[Int(k)] >= cut { if !body(Int(k), w[Int(k)]) { return } }
                } else {
                    for i in 0..<w.count where w[i] >= cut { if !body(i, w[i]) { return } }
                }
            }
        }

        func tokenId(_ position: Int) -> Int { ids?[position] ?? position }

        /// The survivor at fraction `u` ∈ [0, 1) of their total weight (two passes, no copies).
        func pick(_ u: Double) -> Int {
            var total = 0.0
            survivors { _, v in
                total += Double(v); return true
            }
            let r = u * total
            var acc = 0.0, last = 0
            survivors { i, v in
                acc += Double(v); last = i; return r >= acc
            }
            return tokenId(last)
        }
    }

    func filtered(_ l: [Float]) -> Filtered {
        let maxL = l.isEmpty ? 0 : mal_max_f32(l, l.count)
        let ids = topK > 0 && topK < l.count ? Sampler.largest(topK, of: l) : nil  // heaviest first
        let logits = ids.map { $0.map { l[$0] } } ?? l
        var w = [Float](repeating: 0, count: logits.count)
        w.withUnsafeMutableBufferPointer { mal_exp_scaled($0.baseAddress!, logits, logits.count, maxL, 1 / temperature) }
        var keep: [Int32]?
        if topP < 1 {
            // Sums in Double: over 128K weights a Float sum is off by ~1e-4, enough to move the
            // nucleus boundary by a token depending on summation order.
            let need = Double(topP) * w.reduce(0.0) { $0 + Double($1) }
            // After top-k the weights are sorted, so the nucleus is a prefix.
            keep = ids != nil ? Array(0..<Int32(Sampler.prefixLength(reaching: need, w))) : Sampler.nucleus(w, need: need)
        }
        // min-p keeps weights ≥ minP × the heaviest survivor's, which is the top token's: e^0 = 1.
        return Filtered(w: w, ids: ids, keep: keep, cut: minP)
    }

    /// The survivors as arrays (tests compare them with a brute-force reference).
    func candidates(_ l: [Float]) -> (ids: [Int], weights: [Float]) {
        let f = filtered(l)
        var ids: [Int] = [], w: [Float] = []
        f.survivors { i, v in
            ids.append(f.tokenId(i)); w.append(v); return true
        }
        return (ids, w)
    }

    /// How many of `weights` (heaviest first) it takes for their sum to reach `need` (at least one,
    /// when there are any).
    static func prefixLength(reaching need: Double, _ weights: some Sequence<Float>) -> Int {
        var acc = 0.0, n = 0
        for v in weights { acc += Double(v); n += 1; if acc >= need { break } }
        return n
    }

    /// The smallest set of heaviest weights (ties: lower index first) whose sum reaches `need`,
    /// in two linear passes: a histogram of the weights' mass by the top 16 bits of their float
    /// pattern (monotonic for positive floats: 8 exponent and 7 mantissa bits), then the bins
    /// above the one where the cumulative mass crosses `need` are kept whole and only that bin's
    /// tokens are sorted. A flat 128K-token distribution (a random model, a high temperature) is
    /// its worst case; a full sort and a mass-carrying quickselect (whose partitions mispredict)
    /// were both slower there (`Docs/PERFORMANCE.md`, sampling).
    /// Returns indices into `w`.
    static func nucleus(_ w: [Float], need: Double) -> [Int32] {
        if w.count <= 4096 {  // small vocabularies: a plain sort is cheaper
            let order: [Int32] = (0..<Int32(w.count)).sorted { a, b in
                let wa = w[Int(a)], wb = w[Int(b)]
                return wa > wb || (wa == wb && a < b)
            }
            return Array(order.prefix(prefixLength(reaching: need, order.lazy.map { w[Int($0)] })))
        }
        let bins = 1 << 15  // non-negative floats: sign bit 0
        var mass = [Double](repeating: 0, count: bins)
        w.withUnsafeBufferPointer { w in
            mass.withUnsafeMutableBufferPointer { m in
                for v in w { m[Int(v.bitPattern >> 16)] += Double(v) }
            }
        }
        var acc = 0.0, boundary = 0
        for b in stride(from: bins - 1, through: 0, by: -1) where mass[b] > 0 {
            boundary = b
            if acc + mass[b] >= need { break }
            acc += mass[b]
        }
        var kept: [Int32] = [], edge: [Int32] = []
        w.withUnsafeBufferPointer { w in
            for i in 0..<w.count {
                let b = Int(w[i].bitPattern >> 16)
                if b > boundary { kept.append(Int32(i)) } else if b == boundary { edge.append(Int32(i)) }
            }
        }
        edge.sort { w[Int($0)] > w[Int($1)] || (w[Int($0)] == w[Int($1)] && $0 < $1) }
        for i in edge {
            kept.append(i)
            acc += Double(w[Int(i)])
            if acc >= need { break }
        }
        return kept
    }

    /// Indices of the `k` largest values, largest first (ties: lower index first), with a
    /// k-element min-heap: O(n log k) instead of a full sort.
    static func largest(_ k: Int, of v: [Float]) -> [Int] {
        var heap = BinaryHeap<Ranked>()  // its minimum is the worst value kept
        heap.reserveCapacity(k)
        for (i, x) in v.enumerated() {
            let r = Ranked(value: x, index: i)
            if heap.count < k { heap.insert(r) } else if heap.first! < r { heap.replaceMin(with: r) }
        }
        return heap.elements.sorted { $1 < $0 }.map(\.index)
    }

    /// A logit and its token id, ordered worst first: a lower value, or on ties a higher id.
    struct Ranked: Comparable {
        let value: Float, index: Int
        static func < (a: Ranked, b: Ranked) -> Bool { a.value < b.value || (a.value == b.value && a.index > b.index) }
    }
}
