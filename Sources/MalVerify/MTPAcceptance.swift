import MalCore
import MalRuntime
import MalTransforms

/// How often the multi-token-prediction layer's draft is what the main model then chooses: the
/// acceptance rate of a greedy self-speculative decoder with one draft, measured teacher-forced
/// as the samples' `evaluation.json` does (its `mtp` figures).
public enum MTPAcceptance {
    public struct Figures: Sendable, Codable {
        /// Drafts compared.
        public var positions = 0
        /// The draft equals the main model's greedy token at the same position.
        public var agreesWithMain = 0
        /// The draft equals the text's token there.
        public var agreesWithText = 0
        public init() {}
        public var acceptance: Double { Double(agreesWithMain) / Double(max(positions, 1)) }
        public var textAccuracy: Double { Double(agreesWithText) / Double(max(positions, 1)) }
    }

    /// Over `ids` cut into windows of `window` tokens (stride = window, each from scratch): in a
    /// window of n tokens, MTP row i (token i+1, main hidden state i) drafts token i+2, for
    /// i = 0 … n-3, compared with the main model's greedy choice from position i+1 and the text.
    public static func heldout(_ model: CanonicalModel, ids: [Int32], window: Int = 256, threads: Int = availableCores) throws -> Figures {
        let tr = try Transformer(model: model, contextLength: window, threads: threads, mtp: true)
        var f = Figures()
        for start in stride(from: 0, to: ids.count, by: window) {
            let w = Array(ids[start..<min(ids.count, start + window)])
            guard w.count > 2 else { continue }
            let (main, mtp) = try run(tr, w)
            let vocab = main.count / w.count
            for i in 0...(w.count - 3) {
                let draft = argmax(mtp, row: i, vocab)
                f.positions += 1
                if draft == argmax(main, row: i + 1, vocab) { f.agreesWithMain += 1 }
                if draft == w[i + 2] { f.agreesWithText += 1 }
            }
        }
        return f
    }

    /// Over a greedy continuation: `sequence` is a prompt and the main model's greedy tokens from
    /// index `start` on; the draft of each generated token but the first (made from the token
    /// before it and the hidden state two before) is compared with it.
    public static func continuation(_ model: CanonicalModel, sequence: [Int32], start: Int, threads: Int = availableCores) throws -> Figures {
        let tr = try Transformer(model: model, contextLength: sequence.count, threads: threads, mtp: true)
        let (_, mtp) = try run(tr, sequence)
        let vocab = mtp.count / (sequence.count - 1)
        var f = Figures()
        for p in (start + 1)..<sequence.count {
            f.positions += 1
            if argmax(mtp, row: p - 2, vocab) == sequence[p] { f.agreesWithMain += 1; f.agreesWithText += 1 }
        }
        return f
    }

    /// Main logits of every position and MTP logits of rows 0 … n-2.
    static func run(_ tr: Transformer, _ w: [Int32]) throws -> (main: [Float], mtp: [Float]) {
        tr.reset()
        let main = try tr.forward(w, allLogits: true, keepHidden: true)
        let H = tr.spec.hiddenSize
        let mtp = try tr.mtpForward(next: Array(w.dropFirst()), hidden: Array(tr.finalHidden[0..<((w.count - 1) * H)]), allLogits: true)
        return (main, mtp.logits)
    }

    static func argmax(_ l: [Float], row: Int, _ vocab: Int) -> Int32 {
        var best = row * vocab
        for j in (row * vocab)..<((row + 1) * vocab) where l[j] > l[best] { best = j }
        return Int32(best - row * vocab)
    }
}
