import Foundation
import MalCore

/// The JSON of OpenAI's responses for one request: `chat.completion` / `text_completion` objects
/// and their streamed chunks, with one id and creation time for all of them.
struct ResponseShape {
    let chat: Bool
    let model: String
    let logprobs: Bool
    let id: String
    let created: Int64

    init(chat: Bool, model: String, logprobs: Bool) {
        self.chat = chat
        self.model = model
        self.logprobs = logprobs
        let hex = (0..<24).map { _ in String(Int.random(in: 0..<16), radix: 16) }.joined()
        id = (chat ? "chatcmpl-" : "cmpl-") + hex
        created = Int64(Date().timeIntervalSince1970)
    }

    private func envelope(_ object: String, _ choices: [JSONValue], usage: JSONValue? = nil, extra: [(String, JSONValue)] = []) -> JSONValue {
        var fields: [(String, JSONValue)] = [
            ("id", .string(id)), ("object", .string(object)), ("created", .int(created)),
            ("model", .string(model)), ("choices", .array(choices)),
        ]
        if let usage { fields.append(("usage", usage)) }
        return .object(fields + extra)
    }

    func usage(_ s: GenerationWorker.Summary) -> JSONValue {
        .object([
            ("prompt_tokens", .int(Int64(s.promptTokens))), ("completion_tokens", .int(Int64(s.completionTokens))),
            ("total_tokens", .int(Int64(s.promptTokens + s.completionTokens))),
            ("prompt_tokens_details", .object([("cached_tokens", .int(Int64(max(0, s.promptTokens - s.promptTokensRun))))])),
        ])
    }

    /// llama-server-style timings: prompt tokens that ran (the rest came from the cache) and speeds.
    func timings(_ s: GenerationWorker.Summary) -> JSONValue {
        .object([
            ("prompt_n", .int(Int64(s.promptTokensRun))), ("prompt_per_second", .double(Double(s.promptTokensRun) / max(s.promptSeconds, 1e-9))),
            ("predicted_n", .int(Int64(s.completionTokens))),
            ("predicted_per_second", .double(Double(s.completionTokens) / max(s.generationSeconds, 1e-9))),
        ])
    }

    /// The whole answer (no streaming).
    func complete(text: String, logprobs lp: [GenerationWorker.LogprobEntry], summary s: GenerationWorker.Summary) -> JSONValue {
        let choice: JSONValue
        if chat {
            choice = .object([
                ("index", .int(0)), ("message", .object([("role", .string("assistant")), ("content", .string(text))])),
                ("logprobs", logprobs ? chatLogprobs(lp) : .null), ("finish_reason", .string(s.finishReason)),
            ])
        } else {
            choice = .object([
                ("index", .int(0)), ("text", .string(text)), ("logprobs", logprobs ? completionLogprobs(lp) : .null),
                ("finish_reason", .string(s.finishReason)),
            ])
        }
        return envelope(chat ? "chat.completion" : "text_completion", [choice], usage: usage(s), extra: [("timings", timings(s))])
    }

    func chunk(delta: JSONValue) -> JSONValue {
        envelope("chat.completion.chunk", [.object([("index", .int(0)), ("delta", delta), ("logprobs", .null), ("finish_reason", .null)])])
    }

    func chunk(text: String, logprob: GenerationWorker.LogprobEntry?) -> JSONValue {
        let lp: JSONValue = logprob.map { chat ? chatLogprobs([$0]) : completionLogprobs([$0]) } ?? .null
        if chat {
            return envelope(
                "chat.completion.chunk",
                [
                    .object([
                        ("index", .int(0)), ("delta", .object([("content", .string(text))])),
                        ("logprobs", lp), ("finish_reason", .null),
                    ])
                ])
        }
        return envelope("text_completion", [.object([("index", .int(0)), ("text", .string(text)), ("logprobs", lp), ("finish_reason", .null)])])
    }

    func chunk(finish reason: String) -> JSONValue {
        if chat {
            return envelope(
                "chat.completion.chunk",
                [
                    .object([
                        ("index", .int(0)), ("delta", .object([])), ("logprobs", .null),
                        ("finish_reason", .string(reason)),
                    ])
                ])
        }
        return envelope(
            "text_completion",
            [
                .object([
                    ("index", .int(0)), ("text", .string("")), ("logprobs", .null),
                    ("finish_reason", .string(reason)),
                ])
            ])
    }

    /// With `stream_options.include_usage`: a last chunk with no choices and the usage.
    func usageChunk(_ s: GenerationWorker.Summary) -> JSONValue {
        envelope(chat ? "chat.completion.chunk" : "text_completion", [], usage: usage(s), extra: [("timings", timings(s))])
    }

    private static func number(_ f: Float) -> JSONValue { .double(f.isFinite ? Double(f) : -9999) }
    private static func bytes(_ s: String) -> JSONValue { .array(s.utf8.map { .int(Int64($0)) }) }

    /// Chat logprobs: `{"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}`.
    private func chatLogprobs(_ entries: [GenerationWorker.LogprobEntry]) -> JSONValue {
        .object([
            (
                "content",
                .array(
                    entries.map { e in
                        .object([
                            ("token", .string(e.token)), ("logprob", Self.number(e.logprob)), ("bytes", Self.bytes(e.token)),
                            (
                                "top_logprobs",
                                .array(
                                    e.top.map {
                                        .object([
                                            ("token", .string($0.token)), ("logprob", Self.number($0.logprob)),
                                            ("bytes", Self.bytes($0.token)),
                                        ])
                                    })
                            ),
                        ])
                    })
            )
        ])
    }

    /// The legacy completions logprobs: parallel lists of tokens, their logprobs, the top
    /// alternatives (token → logprob) and each token's offset in the text.
    private func completionLogprobs(_ entries: [GenerationWorker.LogprobEntry]) -> JSONValue {
        var offsets: [JSONValue] = [], at = 0
        for e in entries { offsets.append(.int(Int64(at))); at += e.token.count }
        return .object([
            ("tokens", .array(entries.map { .string($0.token) })), ("token_logprobs", .array(entries.map { Self.number($0.logprob) })),
            ("top_logprobs", .array(entries.map { e in .object(e.top.map { ($0.token, Self.number($0.logprob)) }) })),
            ("text_offset", .array(offsets)),
        ])
    }
}
