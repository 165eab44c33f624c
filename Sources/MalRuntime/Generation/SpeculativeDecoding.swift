import MalCore

/// Self-speculative decoding with the multi-token-prediction layer (DeepSeek-V3 report §5.4.3;
/// vLLM's and SGLang's MTP speculators). Each step:
///
/// 1. the main model's token t at position P is sampled (as plain decoding would);
/// 2. the MTP layer runs its rows for the positions the main model has finished, the last one
///    (t, h[P-1]) drafting d₁ for P+1 (its greedy choice); with more drafts it runs again on its
///    own output hidden state (d₁, z) for d₂, and so on; those chained rows are then forgotten;
/// 3. the main model runs [t, d₁ … d_k] in one batched step (the matrix-matrix path: while
///    decoding is memory-bound, verifying k + 1 tokens costs about one step);
/// 4. d_j is accepted while it equals the main model's own token at its position (the sampler is a
///    pure function of logits, history, seed and position, so this is exact for sampling too);
///    the KV cache is rolled back past the first rejected draft, whose position's token comes
///    from that step's logits.
extension Generator {
    func decodeSpeculatively(from first: [Float], _ sampler: Sampler, _ stream: inout TokenStream, _ result: inout Result) throws {
        let H = transformer.spec.hiddenSize, vocab = first.count
        var logits = first
        while !stream.done {
            let t = sampler.sample(logits, history: tokens, position: tokens.count)
            noteLogprob(logits[...], t)
            guard stream.emit(t) else { break }
            tokens.append(t)
            let P = transformer.position  // t's position
            if stream.done { pending = t; break }
            // Drafts: fewer near the limit and the end of the context.
            let k = min(draftTokens, stream.limit - stream.generated.count, transformer.contextLength - P - 1)
            var drafts = k > 0 ? try draft(k, hidden: H) : []
            if let f = draftFilter, !drafts.isEmpty { drafts = f(draftSteps, drafts) }
            draftSteps += 1
            let verify = try transformer.forward([t] + drafts, allLogits: true, keepHidden: true)
            result.mainSteps += 1
            try requireFinite(verify)
            let hidden = transformer.finalHidden
            var accepted = 0
            while accepted < drafts.count && !stream.done {
                let row = Array(verify[(accepted * vocab)..<((accepted + 1) * vocab)])
                let s = sampler.sample(row, history: tokens, position: tokens.count)
                guard s == drafts[accepted], !stream.ends.contains(s) else { break }
                noteLogprob(row[...], s)
                _ = stream.emit(s)
                tokens.append(s)
                accepted += 1
            }
            result.drafted += drafts.count
            result.accepted += accepted
            // Keep t and the accepted drafts; at the limit the last of them stays pending, as in
            // plain decoding, so a continued session is in the same state either way.
            var kept = 1 + accepted
            if stream.done && accepted > 0 {
                kept -= 1
                pending = tokens.last
            }
            transformer.truncate(to: P + kept)
            unrunHidden += hidden[0..<(kept * H)]
            if stream.done { break }
            logits = Array(verify[(accepted * vocab)..<((accepted + 1) * vocab)])
        }
    }

    /// Runs the MTP rows of every position the main model has finished (row i: the token at i+1,
    /// the hidden state at i; the newest token is `tokens.last`) and chains `k - 1` more rows on
    /// the layer's own output; returns the k greedy drafts and forgets the chained rows.
    func draft(_ k: Int, hidden H: Int) throws -> [Int32] {
        let start = transformer.mtpPosition, rows = unrunHidden.count / H
        let next = Array(tokens[(start + 1)...(start + rows)])
        var (logits, z) = try transformer.mtpForward(next: next, hidden: unrunHidden)
        unrunHidden = []
        var drafts = [argmax(logits)]
        let committed = transformer.mtpPosition
        while drafts.count < k {
            (logits, z) = try transformer.mtpForward(next: [drafts.last!], hidden: Array(z[(z.count - H)...]))
            drafts.append(argmax(logits))
        }
        transformer.truncateMTP(to: committed)
        return drafts
    }

    func argmax(_ l: [Float]) -> Int32 { Int32(l.indices.max { l[$0] < l[$1] }!) }
}
