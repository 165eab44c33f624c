import Foundation
import MalCore

/// Text generation as a library (as `generate()` in llama2.c's `run.c`): one session with a model,
/// its tokenizer and its KV cache. `generate` runs the prompt through the model in one batched
/// step, then produces tokens until an end token, the token limit or a full context, and streams
/// UTF-8-safe text through a callback that may also stop it.
///
/// The session keeps what it has seen, so a second call continues the conversation: only its new
/// tokens are processed (a chat turn), and the repetition penalty sees the whole history. The
/// last sampled token is not run through the model until the next call needs it, so a full
/// context still yields one more token.
///
/// With `draftTokens` > 0 the session decodes speculatively with the model's multi-token-
/// prediction layer (`SpeculativeDecoding.swift`): the output is token for token that of plain
/// decoding, greedy or sampled, because the sampler is a pure function of the position.
public final class Generator {
    public let transformer: Transformer
    /// nil for a model without one (benchmarks): the callback then gets no text.
    public let tokenizer: Tokenizer?
    /// The model's path, named by errors about what it computed.
    public let modelPath: String
    /// Drafts per main-model step (0: plain decoding).
    public let draftTokens: Int
    /// Every token of the session: prompts and generated tokens.
    public internal(set) var tokens: [Int32] = []
    /// A sampled token not yet in the KV cache (run first by the next call).
    var pending: Int32?
    /// The log-probabilities of the token just passed to `generate`'s callback (with
    /// `Settings.logprobs`).
    public internal(set) var lastLogprob: TokenLogprob?
    var logprobCount: Int?
    /// Applied to each step's drafts before they are verified (tests force rejections with it).
    public var draftFilter: ((_ step: Int, _ drafts: [Int32]) -> [Int32])?
    var draftSteps = 0
    /// Speculative decoding: the main model's final hidden states of the positions from
    /// `transformer.mtpPosition` on, whose MTP rows have not run yet (`[rows, H]`).
    var unrunHidden: [Float] = []

    public struct Settings: Sendable {
        public var maxTokens = 128
        public var temperature: Float = 0
        public var topK = 0
        public var topP: Float = 1
        public var minP: Float = 0
        public var repetitionPenalty: Float = 1
        public var seed: UInt64 = 0
        /// Stop at the tokenizer's end-of-sequence and end-of-turn tokens.
        public var stopAtEndTokens = true
        /// Record each generated token's log-probability and this many most likely alternatives
        /// (`lastLogprob`, read in the token callback); nil records nothing.
        public var logprobs: Int?
        public init() {}

        var sampler: Sampler {
            Sampler(temperature: temperature, topK: topK, topP: topP, minP: minP, repetitionPenalty: repetitionPenalty, seed: seed)
        }
    }

    public enum StopReason: String, Sendable, Codable {
        /// An end token was sampled (it is not part of the output).
        case endToken
        /// `maxTokens` tokens were generated.
        case maxTokens
        /// The context is full: no position is left for another token.
        case contextFull
        /// The callback asked to stop.
        case cancelled
    }

    public struct Result: Sendable {
        /// Tokens this call ran through the model before sampling (the new prompt tokens).
        public var promptTokens: Int
        public var generated: [Int32] = []
        public var stop = StopReason.maxTokens
        public var promptSeconds: Double = 0
        public var generationSeconds: Double = 0
        /// Main-model forward passes that produced tokens, the prompt's included (one per token
        /// without drafting).
        public var mainSteps = 0
        /// Tokens the MTP layer drafted, and how many of them the main model accepted.
        public var drafted = 0
        public var accepted = 0
        public var promptTokensPerSecond: Double { Double(promptTokens) / max(promptSeconds, 1e-9) }
        public var tokensPerSecond: Double { Double(generated.count) / max(generationSeconds, 1e-9) }
        public var acceptanceRate: Double { Double(accepted) / Double(max(drafted, 1)) }
        /// Generated tokens per main-model step.
        public var tokensPerStep: Double { Double(generated.count) / Double(max(mainSteps, 1)) }
    }

    /// - Parameter draftTokens: MTP drafts per step (the transformer must be loaded with `mtp: true`).
    public init(transformer: Transformer, tokenizer: Tokenizer?, modelPath: String, draftTokens: Int = 0) throws {
        if draftTokens > 0 && !transformer.hasMTP {
            throw MalError(
                .unsupported,
                "speculative decoding with MTP needs a model with a multi-token-prediction layer "
                    + "(num_nextn_predict_layers >= 1), loaded with it", file: modelPath)
        }
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.modelPath = modelPath
        self.draftTokens = max(0, draftTokens)
    }

    /// Forgets the conversation (the KV cache is reused from position 0).
    public func reset() {
        transformer.reset()
        tokens = []
        pending = nil
        unrunHidden = []
    }

    /// Positions left in the context for new tokens (the pending token takes one; after a full
    /// context it has none to go to, and the next call is refused).
    public var remainingContext: Int { max(0, transformer.contextLength - transformer.position - (pending == nil ? 0 : 1)) }

    /// Runs `prompt` (after whatever the session holds) and generates up to `settings.maxTokens`
    /// tokens. `onToken(id, text)` gets each generated token and the text it completes (possibly
    /// empty mid-character); returning false stops generation. Text still held back at the end
    /// (an incomplete character) comes in a last call with id -1.
    public func generate(prompt: [Int32], settings: Settings, onToken: (Int32, String) -> Bool = { _, _ in true }) throws -> Result {
        let input = (pending.map { [$0] } ?? []) + prompt
        if input.isEmpty { throw MalError(.invalidArgument, "the prompt is empty and the tokenizer adds no BOS token") }
        guard transformer.position + input.count <= transformer.contextLength else {
            throw MalError(
                .invalidArgument,
                "the prompt (\(input.count) tokens\(pending == nil ? "" : ", with the last answer's token")) does not fit the "
                    + "\(transformer.contextLength - transformer.position) positions left of the context length \(transformer.contextLength)")
        }
        tokens += prompt
        pending = nil
        var result = Result(promptTokens: input.count)
        logprobCount = settings.logprobs
        lastLogprob = nil
        let t0 = monotonicSeconds()
        let logits = try transformer.forward(input, keepHidden: draftTokens > 0)
        try requireFinite(logits)
        if draftTokens > 0 { unrunHidden += transformer.finalHidden }
        result.promptSeconds = monotonicSeconds() - t0
        result.mainSteps = 1  // the prompt's pass yields the first token
        // The last token needs no forward pass: a full context still yields one more token.
        let limit = min(settings.maxTokens, transformer.contextLength - transformer.position + 1)
        let t1 = monotonicSeconds()
        try withoutActuallyEscaping(onToken) { callback in
            var stream = TokenStream(
                tokenizer: tokenizer, ends: settings.stopAtEndTokens ? tokenizer?.endTokenIds ?? [] : [], limit: limit,
                onToken: callback)
            if draftTokens > 0 {
                try decodeSpeculatively(from: logits, settings.sampler, &stream, &result)
            } else {
                try decode(from: logits, settings.sampler, &stream, &result)
            }
            result.generated = stream.generated
            result.stop = stream.stop
            stream.finish()
        }
        if result.stop == .maxTokens && result.generated.count == limit && limit < settings.maxTokens { result.stop = .contextFull }
        result.generationSeconds = monotonicSeconds() - t1
        // A mapped model's weights are checked while it runs: a damaged file fails the first
        // answer after the check finds it (a command waits for the check before it ends).
        if let damaged = transformer.weightCheck?.failure { throw damaged }
        return result
    }

    /// Plain decoding: one main-model step per token.
    func decode(from first: [Float], _ sampler: Sampler, _ stream: inout TokenStream, _ result: inout Result) throws {
        var logits = first
        while !stream.done {
            let next = sampler.sample(logits, history: tokens, position: tokens.count)
            noteLogprob(logits[...], next)
            guard stream.emit(next) else { break }
            tokens.append(next)
            if stream.done { pending = next; break }
            logits = try transformer.forward([next])
            result.mainSteps += 1
            try requireFinite(logits)
        }
    }

    /// With `Settings.logprobs`: the chosen token's log-probability under the model (the
    /// log-softmax of the raw logits, before temperature and filters, as OpenAI reports them)
    /// and the most likely alternatives.
    func noteLogprob(_ logits: ArraySlice<Float>, _ chosen: Int32) {
        guard let k = logprobCount else { return }
        lastLogprob = TokenLogprob(logits: logits, chosen: chosen, top: k)
    }

    /// Sampling from NaN logits would print a plausible-looking token (greedy picks id 0): stop.
    func requireFinite(_ logits: [Float]) throws {
        guard let bad = NonFiniteScan.firstIndex(logits) else { return }
        throw MalError(
            .nonFiniteValue,
            "the model computed a non-finite logit (\(logits[bad]) for token \(bad)) at position "
                + "\(transformer.position - 1): its weights hold NaN or infinity, or its activations overflowed", file: modelPath)
    }
}

/// One generated token's log-probability and the `top` most likely tokens at its position.
public struct TokenLogprob: Sendable {
    public var id: Int32
    public var logprob: Float
    public var top: [(id: Int32, logprob: Float)]

    init(logits: ArraySlice<Float>, chosen: Int32, top k: Int) {
        let base = logits.startIndex
        let m = logits.max() ?? 0
        var sum: Double = 0
        for v in logits { sum += Double(Foundation.exp(v - m)) }
        let logZ = m + Float(Foundation.log(sum))
        id = chosen
        logprob = logits[base + Int(chosen)] - logZ
        // The k largest by a partial selection: k is small (OpenAI allows up to 20).
        var best: [(Int32, Float)] = []
        if k > 0 {
            for (i, v) in logits.enumerated() where best.count < k || v > best[best.count - 1].1 {
                let entry = (Int32(i), v - logZ)
                let at = best.firstIndex { $0.1 < entry.1 } ?? best.count
                best.insert(entry, at: at)
                if best.count > k { best.removeLast() }
            }
        }
        top = best.map { (id: $0.0, logprob: $0.1) }
    }
}

/// The generated side of one `generate` call: the end-token and limit rules, the callback and the
/// UTF-8-safe text of each token.
struct TokenStream {
    let ends: Set<Int32>
    let limit: Int
    let onToken: (Int32, String) -> Bool
    var decoder: StreamingDecoder?
    private(set) var generated: [Int32] = []
    private(set) var stop = Generator.StopReason.maxTokens
    private var stopped = false

    init(tokenizer: Tokenizer?, ends: Set<Int32>, limit: Int, onToken: @escaping (Int32, String) -> Bool) {
        self.ends = ends
        self.limit = limit
        self.onToken = onToken
        decoder = tokenizer.map { StreamingDecoder(tokenizer: $0) }
    }

    /// No more tokens: an end token, the limit or the callback.
    var done: Bool { stopped || generated.count >= limit }

    /// Offers the next token: false (and nothing recorded) for an end token; otherwise it is
    /// generated and passed on, and the callback may stop what follows.
    mutating func emit(_ id: Int32) -> Bool {
        if ends.contains(id) { stop = .endToken; stopped = true; return false }
        generated.append(id)
        if !onToken(id, decoder?.push(id) ?? "") { stop = .cancelled; stopped = true }
        return true
    }

    mutating func finish() {
        let rest = decoder?.finish() ?? ""
        if !rest.isEmpty { _ = onToken(-1, rest) }
    }
}

extension Generator {
    /// Generates after `history`, the whole token sequence of a conversation (a chat re-renders
    /// its template each turn): the longest prefix it shares with what the session holds stays in
    /// the KV cache and only the rest runs, so a turn costs its new tokens. A history that
    /// diverges earlier (a template that rewrites past turns) rolls the cache back to where it
    /// diverges; `Result.promptTokens` says how many tokens ran.
    public func generate(history: [Int32], settings: Settings, onToken: (Int32, String) -> Bool = { _, _ in true }) throws -> Result {
        guard !history.isEmpty else { throw MalError(.invalidArgument, "the conversation renders to no tokens") }
        var common = 0
        while common < min(tokens.count, history.count) && tokens[common] == history[common] { common += 1 }
        // At least one token must run to give logits for the next one.
        if common == history.count && (common < tokens.count || pending == nil) { common -= 1 }
        if common < tokens.count { rewind(keeping: common) }
        return try generate(prompt: Array(history[tokens.count...]), settings: settings, onToken: onToken)
    }

    /// Forgets every token from position `p` on. With drafting, the MTP layer's row for `p - 1`
    /// was computed from the token at `p`, so it goes too, and the main model re-runs the token
    /// at `p - 1` to give that row its hidden state again.
    func rewind(keeping p: Int) {
        precondition(p >= 0 && p <= tokens.count)
        var keep = min(p, transformer.position)
        if draftTokens > 0 {
            let m = transformer.mtpPosition, rows = m + unrunHidden.count / transformer.spec.hiddenSize
            precondition(rows == transformer.position)
            if m > max(p - 1, 0) {
                keep = max(p - 1, 0)
                transformer.truncateMTP(to: keep)
                unrunHidden = []
            } else {
                unrunHidden = Array(unrunHidden[0..<((keep - m) * transformer.spec.hiddenSize)])
            }
        }
        transformer.truncate(to: keep)
        tokens = Array(tokens[0..<keep])
        pending = nil
    }
}
