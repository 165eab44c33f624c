import CMalKernels
import Foundation
import MalCore

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
    let experts: [GatedFeedForward]
    let shared: GatedFeedForward?

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
    func apply(
        batch x: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, count T: Int,
        threads: Int
    ) -> [(ids: [Int32], weights: [Float])] {
        let h = router.cols, k = spec.expertsPerToken
        var logits = [Float](repeating: 0, count: T * router.rows)
        logits.withUnsafeMutableBufferPointer { router.apply(batch: x, $0.baseAddress!, count: T, threads: threads) }
        let choices = (0..<T).map { t in route(Array(logits[(t * router.rows)..<((t + 1) * router.rows)])) }
        if T <= LinearWeight.smallBatch {
            decode(x, out: out, count: T, choices: choices, threads: threads)
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
            experts[e].apply(xin, out: y, count: n, threads: threads)
            for (i, ts) in list.enumerated() { (routed + (ts.token * k + ts.slot) * h).update(from: y + i * h, count: h) }
        }
        if let shared { shared.apply(x, out: sharedOut, count: T, threads: threads) }
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

    /// One token or a verify step's few: every expert that any of them chose (and the shared one)
    /// runs once over the tokens routed to it, the gate and up rows of all of them as one parallel
    /// region and their down projections as a second, so a MoE layer costs two thread hand-offs
    /// instead of two per expert. Each expert's weights are read once for all its tokens.
    private func decode(
        _ x: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, count T: Int,
        choices: [(ids: [Int32], weights: [Float])], threads: Int
    ) {
        let h = router.cols
        // Units: each chosen expert with its tokens (in token order), then the shared expert.
        var unitOf = [Int: Int](), tokens = [[Int]](), units = [GatedFeedForward]()
        for (t, c) in choices.enumerated() {
            for id in c.ids {
                let e = Int(id)
                if let u = unitOf[e] { tokens[u].append(t) } else { unitOf[e] = units.count; units.append(experts[e]); tokens.append([t]) }
            }
        }
        if let shared { units.append(shared); tokens.append(Array(0..<T)) }
        // Per unit: its inputs (gathered; the shared expert reads x itself), gate/up and down outputs.
        let rowsBefore = zip(units, tokens).reduce(into: [0]) { $0.append($0.last! + $1.0.gate.rows * $1.1.count) }
        let inputsBefore = tokens.reduce(into: [0]) { $0.append($0.last! + $1.count) }
        let gate = UnsafeMutablePointer<Float>.allocate(capacity: rowsBefore.last!)
        let up = UnsafeMutablePointer<Float>.allocate(capacity: rowsBefore.last!)
        let gathered = UnsafeMutablePointer<Float>.allocate(capacity: inputsBefore.last! * h)
        let parts = UnsafeMutablePointer<Float>.allocate(capacity: inputsBefore.last! * h)
        defer { gate.deallocate(); up.deallocate(); gathered.deallocate(); parts.deallocate() }
        var first = [LinearWeight.RowJob](), second = [LinearWeight.RowJob]()
        for (u, unit) in units.enumerated() {
            let n = tokens[u].count, inner = unit.gate.rows
            var xin = UnsafePointer(gathered + inputsBefore[u] * h)
            if shared != nil && u == units.count - 1 {
                xin = UnsafePointer(x)
            } else {
                for (i, t) in tokens[u].enumerated() { (gathered + (inputsBefore[u] + i) * h).update(from: x + t * h, count: h) }
            }
            let g = gate + rowsBefore[u], v = up + rowsBefore[u]
            first.append(LinearWeight.RowJob(weight: unit.gate, x: xin, count: n, y: g, outputStride: inner))
            first.append(LinearWeight.RowJob(weight: unit.up, x: xin, count: n, y: v, outputStride: inner))
            second.append(LinearWeight.RowJob(weight: unit.down, x: UnsafePointer(g), count: n, y: parts + inputsBefore[u] * h, outputStride: h))
        }
        LinearWeight.apply(jobs: first, threads: threads)
        mal_activate_mul(units[0].act, gate, up, rowsBefore.last!)  // one activation for all experts
        LinearWeight.apply(jobs: second, threads: threads)
        // Each token sums its experts in routing order, then the shared expert.
        for (t, c) in choices.enumerated() {
            let o = out + t * h
            for i in 0..<h { o[i] = 0 }
            var terms = zip(c.ids, c.weights).map { id, w -> (Int, Float) in
                let u = unitOf[Int(id)]!
                return (inputsBefore[u] + tokens[u].firstIndex(of: t)!, w)
            }
            if shared != nil { terms.append((inputsBefore[units.count - 1] + t, 1)) }
            for (row, w) in terms {
                let p = parts + row * h
                for i in 0..<h { o[i] += w * p[i] }
            }
        }
    }
}
