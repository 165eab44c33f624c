import MalCore

/// Text generation as a library (as `generate()` in llama2.c's `run.c`): one session with a model,
/// its tokenizer and its KV cache. `generate` runs the prompt through the model in one batched
/// step, then samples token by token until an end token, the token limit or a full context, and
/// streams UTF-8-safe text through a callback that may also stop it.
///
/// The session keeps what it has seen, so a second call continues the conversation: only its new
/// tokens are processed (a chat turn), and the repetition penalty sees the whole history. The
/// last sampled token is not run through the model until the next call needs it, so a full
/// context still yields one more token.
public final class Generator {
    public let transformer: Transformer
    public let tokenizer: Tokenizer
    /// The model's path, named by errors about what it computed.
    public let modelPath: String
    /// Every token of the session: prompts and generated tokens.
    public private(set) var tokens: [Int32] = []
    /// A sampled token not yet in the KV cache (run first by the next call).
    private var pending: Int32?

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
        public init() {}
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
        public var generated: [Int32]
        public var stop: StopReason
        public var promptSeconds: Double
        public var generationSeconds: Double
        public var promptTokensPerSecond: Double { Double(promptTokens) / max(promptSeconds, 1e-9) }
        public var tokensPerSecond: Double { Double(generated.count) / max(generationSeconds, 1e-9) }
    }

    public init(transformer: Transformer, tokenizer: Tokenizer, modelPath: String) {
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.modelPath = modelPath
    }

    /// Forgets the conversation (the KV cache is reused from position 0).
    public func reset() {
        transformer.reset()
        tokens = []
        pending = nil
    }

    /// Positions left in the context for new tokens (the pending token takes one; after a full
    /// context it has none to go to, and the next call is refused).
    public var remainingContext: Int { max(0, transformer.contextLength - transformer.position - (pending == nil ? 0 : 1)) }

    /// Runs `prompt` (after whatever the session holds) and generates up to `settings.maxTokens`
    /// tokens. `onToken(id, text)` gets each generated token and the text it completes (possibly
    /// empty mid-character); returning false stops generation. The text still held back at the
    /// end (an incomplete character) is returned in the result's last callback with id -1.
    public func generate(prompt: [Int32], settings: Settings, onToken: (Int32, String) -> Bool = { _, _ in true }) throws -> Result {
        let input = (pending.map { [$0] } ?? []) + prompt
        if input.isEmpty { throw MalError(.invalidArgument, "the prompt is empty and the tokenizer adds no BOS token") }
        guard transformer.position + input.count <= transformer.contextLength else {
            throw MalError(.invalidArgument, "the prompt (\(input.count) tokens\(pending == nil ? "" : ", with the last answer's token")) does not fit the "
                           + "\(transformer.contextLength - transformer.position) positions left of the context length \(transformer.contextLength)")
        }
        let sampler = Sampler(temperature: settings.temperature, topK: settings.topK, topP: settings.topP, minP: settings.minP,
                              repetitionPenalty: settings.repetitionPenalty, seed: settings.seed)
        let ends = settings.stopAtEndTokens ? tokenizer.endTokenIds : []
        tokens += prompt
        pending = nil
        var t0 = monotonicSeconds()
        var logits = try transformer.forward(input)
        try requireFinite(logits)
        let promptSeconds = monotonicSeconds() - t0
        // The last token needs no forward pass: a full context still yields one more token.
        let limit = min(settings.maxTokens, transformer.contextLength - transformer.position + 1)
        var decoder = StreamingDecoder(tokenizer: tokenizer)
        var generated: [Int32] = []
        var stop = StopReason.maxTokens
        t0 = monotonicSeconds()
        while generated.count < limit {
            let next = sampler.sample(logits, history: tokens, position: tokens.count)
            if ends.contains(next) { stop = .endToken; break }
            tokens.append(next)
            generated.append(next)
            if !onToken(next, decoder.push(next)) {
                pending = next
                stop = .cancelled
                break
            }
            if generated.count < limit {
                logits = try transformer.forward([next])
                try requireFinite(logits)
            } else {
                pending = next
            }
        }
        if stop == .maxTokens && generated.count == limit && limit < settings.maxTokens { stop = .contextFull }
        let rest = decoder.finish()
        if !rest.isEmpty { _ = onToken(-1, rest) }
        return Result(promptTokens: input.count, generated: generated, stop: stop, promptSeconds: promptSeconds,
                      generationSeconds: monotonicSeconds() - t0)
    }

    /// Sampling from NaN logits would print a plausible-looking token (greedy picks id 0): stop.
    func requireFinite(_ logits: [Float]) throws {
        guard let bad = NonFiniteScan.firstIndex(logits) else { return }
        throw MalError(.nonFiniteValue, "the model computed a non-finite logit (\(logits[bad]) for token \(bad)) at position "
                       + "\(transformer.position - 1): its weights hold NaN or infinity, or its activations overflowed", file: modelPath)
    }
}
