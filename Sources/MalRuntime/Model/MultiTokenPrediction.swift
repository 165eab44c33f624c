import MalCore

/// DeepSeek-V3's multi-token-prediction layer (`model.layers.{num_hidden_layers}.*`; the V3
/// report §2.2, vLLM `deepseek_mtp.py`, transformers' `MtpLayer`). Row i predicts token i+2 from
/// token i+1 and the main model's final normed hidden state h_i:
///
///     z = eh_proj(concat(enorm(embed(x[i+1])), hnorm(h[i])))      (embedding first)
///     z = block(z)         (an MLA + MoE decoder layer with its own KV cache, causal over the rows)
///     logits = head(shared_head_norm(z))
///
/// The embedding and the head are the main model's (the checkpoint's copies are identical and
/// stored once). Row i's RoPE position is i: the fixtures use i + 1, and rotary attention depends
/// only on the difference of positions.
struct MTPHead {
    let embeddingNorm: Norm
    let hiddenNorm: Norm
    let projection: LinearWeight
    let block: Transformer.Layer
    let headNorm: Norm
}

extension Transformer {
    /// Whether the MTP layer is loaded (`Transformer(model:mtp:)`).
    public var hasMTP: Bool { mtpHead != nil }

    /// Runs MTP rows `mtpPosition ..< mtpPosition + T`: row t from `next[t]` (the token after the
    /// row's main position) and `hidden[t]` (`[T, H]`, the main model's final normed state there).
    /// Returns the logits (`[T, vocab]` when `allLogits`, else the last row's) and each row's block
    /// output `z` (`[T, H]`, the hidden state a chained draft feeds back in place of h).
    public func mtpForward(next: [Int32], hidden: [Float], allLogits: Bool = false) throws -> (logits: [Float], hidden: [Float]) {
        guard let m = mtpHead else { throw MalError(.unsupported, "the MTP layer is not loaded") }
        let T = next.count, H = spec.hiddenSize
        guard T > 0 else { return ([], []) }
        precondition(hidden.count == T * H, "mtpForward: \(hidden.count) hidden values for \(T) rows of \(H)")
        guard mtpPosition + T <= contextLength else {
            throw MalError(.invalidArgument, "\(mtpPosition + T) MTP rows exceed the context length of \(contextLength)")
        }
        let cat = UnsafeMutablePointer<Float>.allocate(capacity: T * 2 * H)
        let z = UnsafeMutablePointer<Float>.allocate(capacity: T * H)
        defer { cat.deallocate(); z.deallocate() }
        let scratch = BlockScratch(count: T, hidden: H, qDim: qDim, kDim: kDim, vDim: vDim, attDim: spec.heads * headV)
        try hidden.withUnsafeBufferPointer { h in
            for t in 0..<T {
                try embed(next[t], position: mtpPosition + t, into: z + t * H)
                m.embeddingNorm.apply(z + t * H, cat + t * 2 * H, H)
                m.hiddenNorm.apply(h.baseAddress! + t * H, cat + t * 2 * H + H, H)
            }
        }
        m.projection.apply(batch: cat, z, count: T, threads: threads)
        run(m.block, cache: layers.count, z, scratch, count: T, start: mtpPosition)
        mtpPosition += T
        let out = Array(UnsafeBufferPointer(start: z, count: T * H))
        let first = allLogits ? 0 : T - 1
        for t in first..<T { m.headNorm.apply(z + t * H, scratch.xn + (t - first) * H, H) }
        let n = T - first
        var logits = [Float](repeating: 0, count: n * output.rows)
        logits.withUnsafeMutableBufferPointer { output.apply(batch: scratch.xn, $0.baseAddress!, count: n, threads: threads) }
        return (logits, out)
    }

    /// Forgets the MTP rows from `p` on.
    public func truncateMTP(to p: Int) {
        precondition(p >= 0 && p <= mtpPosition, "truncateMTP(to: \(p)) beyond the \(mtpPosition) cached rows")
        mtpPosition = p
    }
}
