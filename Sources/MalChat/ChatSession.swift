import MalCore
import MalRuntime

/// A conversation with a model: its messages rendered through the chat template each turn, the
/// KV cache of everything said so far kept in the generator, so a turn runs only its new tokens
/// (`Generator.generate(history:)`). `malrun chat` and `serve` are front ends of this.
public final class ChatSession {
    public let generator: Generator
    public let template: ChatTemplate
    public let tokenizer: Tokenizer
    /// The system message (first in `messages`), nil for none.
    public private(set) var system: String?
    /// The conversation after the system message: user and assistant turns.
    public private(set) var turns: [JinjaValue] = []
    /// The text and tokens of the last prompt and its answer, as they were generated.
    private var heldText: [UInt8] = []
    private var heldIds: [Int32] = []

    public init(generator: Generator, template: ChatTemplate, system: String? = nil) throws {
        guard let tok = generator.tokenizer else { throw MalError(.invalidArgument, "a chat needs the model's tokenizer") }
        self.generator = generator
        self.template = template
        self.tokenizer = tok
        self.system = system
    }

    /// Every message, the system message first.
    public var messages: [JinjaValue] {
        (system.map { [ChatTemplate.message(role: "system", content: $0)] } ?? []) + turns
    }

    /// Forgets the turns (the system message stays).
    public func reset() {
        turns = []
        heldText = []
        heldIds = []
        generator.reset()
    }

    /// A new system message: the conversation starts again with it.
    public func setSystem(_ text: String?) {
        system = text
        reset()
    }

    /// The token ids of `messages` with or without the generation prompt, as transformers'
    /// `apply_chat_template(…, tokenize=True)` gives them, except where the text extends the last
    /// prompt and answer (`tokens(forText:)`).
    public func tokens(for messages: [JinjaValue], addGenerationPrompt: Bool = true) throws -> [Int32] {
        try tokens(
            forText: try template.render(messages: messages, addGenerationPrompt: addGenerationPrompt),
            addSpecial: template.addsSpecialTokens)
    }

    /// The tokens of a prompt. A prompt that begins with the last prompt and its answer keeps
    /// their tokens as generated and tokenizes only the rest: tokenizing the whole text again
    /// can split the answer differently from how it was sampled, and then the KV cache would be
    /// reused only up to the first difference (as llama.cpp's interactive mode, it appends).
    public func tokens(forText text: String, addSpecial: Bool) -> [Int32] {
        let bytes = Array(text.utf8)
        if !heldIds.isEmpty, bytes.count >= heldText.count, bytes.starts(with: heldText),
            bytes.count == heldText.count || bytes[heldText.count] & 0xC0 != 0x80
        {
            return heldIds + tokenizer.encode(String(decoding: bytes[heldText.count...], as: UTF8.self), addSpecial: false)
        }
        return tokenizer.encode(text, addSpecial: addSpecial)
    }

    /// Records what the generator holds after a request: the prompt's text and tokens and the
    /// generated tokens (all of them, also past a stop string).
    public func noteGenerated(promptText: String, promptIds: [Int32], generated: [Int32]) {
        heldText = Array(promptText.utf8) + generated.flatMap(tokenizer.tokenBytes)
        heldIds = promptIds + generated
    }

    public struct Turn {
        /// The answer's text (what the callback got, up to a stop string).
        public var text: String
        public var result: Generator.Result
        /// Whether a stop string ended it.
        public var stoppedByString: Bool
    }

    /// Sends a user message and generates the answer, streaming its text to `onText` (which may
    /// stop it by returning false). The answer joins the conversation even when stopped early.
    public func send(_ text: String, settings: Generator.Settings, stop: [String] = [], onText: (String) -> Bool = { _ in true }) throws -> Turn {
        let prompt = try template.render(messages: messages + [ChatTemplate.message(role: "user", content: text)], addGenerationPrompt: true)
        let history = tokens(forText: prompt, addSpecial: template.addsSpecialTokens)
        let turn = try Self.complete(generator, history: history, settings: settings, stop: stop) { _, piece in piece.isEmpty || onText(piece) }
        noteGenerated(promptText: prompt, promptIds: history, generated: turn.result.generated)
        turns.append(ChatTemplate.message(role: "user", content: text))
        turns.append(ChatTemplate.message(role: "assistant", content: turn.text))
        return turn
    }

    /// Generates after `history` with stop strings. `onToken(id, text)` gets each token and the
    /// text it makes showable: empty while held back as the start of a character or of a stop
    /// string; id -1 for what is left at the end. Generation ends at the first stop string,
    /// which is not part of the text; the callback may end it too by returning false.
    public static func complete(
        _ generator: Generator, history: [Int32], settings: Generator.Settings, stop: [String],
        onToken: (Int32, String) -> Bool
    ) throws -> Turn {
        var matcher = StopMatcher(stops: stop)
        var text = ""
        let result = try generator.generate(history: history, settings: settings) { id, piece in
            let (ready, stopped) = matcher.push(piece)
            text += ready
            let goOn = onToken(id, ready)
            return goOn && !stopped
        }
        if !matcher.stopped {
            let rest = matcher.finish()
            text += rest
            if !rest.isEmpty { _ = onToken(-1, rest) }
        }
        return Turn(text: text, result: result, stoppedByString: matcher.stopped)
    }
}

/// Finds stop strings in streamed text (OpenAI's `stop`): `push` returns the text that can be
/// shown, holding back a tail that may begin a stop string; after a match, nothing more.
public struct StopMatcher {
    public let stops: [String]
    private var held = ""
    public private(set) var stopped = false
    /// Which stop string ended the text.
    public private(set) var matched: String?

    public init(stops: [String]) { self.stops = stops.filter { !$0.isEmpty } }

    public mutating func push(_ piece: String) -> (ready: String, stopped: Bool) {
        guard !stopped else { return ("", true) }
        guard !stops.isEmpty else { return (piece, false) }
        held += piece
        let h = Array(held.unicodeScalars)
        // The earliest full match ends the text.
        var best: (Int, String)?
        for s in stops {
            if let r = h.firstIndex(of: Array(s.unicodeScalars)), best == nil || r < best!.0 { best = (r, s) }
        }
        if let (at, s) = best {
            stopped = true
            matched = s
            held = ""
            return (String(String.UnicodeScalarView(h[0..<at])), true)
        }
        // Hold back the longest tail that is a proper prefix of some stop string.
        var keep = 0
        for s in stops {
            let u = Array(s.unicodeScalars)
            for k in stride(from: min(u.count - 1, h.count), to: keep, by: -1) where Array(h[(h.count - k)...]) == Array(u[0..<k]) {
                keep = k
                break
            }
        }
        held = String(String.UnicodeScalarView(h[(h.count - keep)...]))
        return (String(String.UnicodeScalarView(h[0..<(h.count - keep)])), false)
    }

    /// The held-back tail at the end of generation.
    public mutating func finish() -> String {
        defer { held = "" }
        return stopped ? "" : held
    }
}

private extension Array where Element == Unicode.Scalar {
    func firstIndex(of n: [Unicode.Scalar]) -> Int? {
        guard !n.isEmpty, n.count <= count else { return nil }
        for i in 0...(count - n.count) where self[i] == n[0] && Array(self[i..<(i + n.count)]) == n { return i }
        return nil
    }
}
