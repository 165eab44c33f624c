import Dispatch
import Foundation
import MalChat
import MalCore
import MalRuntime

/// Runs requests one at a time on the model (one KV cache, one serial queue off the server's
/// threads). The session keeps its cache between requests, so a chat client that sends the whole
/// conversation again only pays for the new tokens (`Generator.generate(history:)`).
final class GenerationWorker: @unchecked Sendable {
    let session: ChatSession
    let modelName: String
    private let queue = DispatchQueue(label: "malrun.serve.generation")
    private let lock = NSLock()
    private var waiting = 0
    private var cancelledCount = 0

    init(session: ChatSession, modelName: String) {
        self.session = session
        self.modelName = modelName
    }

    var contextLength: Int { session.generator.transformer.contextLength }
    /// Requests queued or running.
    var queued: Int { lock.withLock { waiting } }
    /// Requests stopped because their client went away.
    var cancelled: Int { lock.withLock { cancelledCount } }

    /// What one request streams: text (with the token's log-probabilities when asked), then the end.
    enum Event: Sendable {
        case text(String, logprob: LogprobEntry?)
        case finished(Summary)
        case failed(APIError)
    }

    struct LogprobEntry: Sendable {
        var token: String
        var logprob: Float
        var top: [(token: String, logprob: Float)]
    }

    struct Summary: Sendable {
        var promptTokens: Int
        /// Prompt tokens that ran (the rest were in the cache).
        var promptTokensRun: Int
        var completionTokens: Int
        var finishReason: String
        var promptSeconds: Double
        var generationSeconds: Double
    }

    /// Set when the client has gone: the running request stops at its next token, a queued one never starts.
    final class Cancellation: @unchecked Sendable {
        private let lock = NSLock()
        private var flag = false
        var isCancelled: Bool { lock.withLock { flag } }
        func cancel() { lock.withLock { flag = true } }
    }

    /// Queues `request`. `ready` is called once the prompt is tokenized and fits (with its token
    /// count) or with the error that refuses it; then `events` gets the answer.
    func submit(
        _ request: APIRequest, cancel: Cancellation, events: AsyncStream<Event>.Continuation,
        ready: @escaping @Sendable (Result<Int, APIError>) -> Void
    ) {
        lock.withLock { waiting += 1 }
        queue.async {
            defer { self.lock.withLock { self.waiting -= 1 } }
            guard !cancel.isCancelled else {
                self.lock.withLock { self.cancelledCount += 1 }
                ready(.failure(APIError(.badRequest, "the client went away")))
                events.finish()
                return
            }
            let history: [Int32], text: String?
            do { (text, history) = try self.promptTokens(request) } catch let e as APIError {
                ready(.failure(e))
                events.finish()
                return
            } catch {
                ready(.failure(APIError(.badRequest, "\(error)")))
                events.finish()
                return
            }
            ready(.success(history.count))
            do {
                let (summary, generated) = try self.run(request, history, cancel, events)
                if let text { self.session.noteGenerated(promptText: text, promptIds: history, generated: generated) }
                events.yield(.finished(summary))
            } catch {
                events.yield(.failed(APIError(.internalServerError, "\(error)")))
            }
            events.finish()
        }
    }

    /// The prompt's tokens (and its text, when it has one): the chat template for messages, the
    /// tokenizer (with its BOS) for text, the ids as given for a token list.
    private func promptTokens(_ request: APIRequest) throws -> (String?, [Int32]) {
        let ids: [Int32]
        var text: String?
        switch request.input {
        case .text(let s):
            ids = session.tokens(forText: s, addSpecial: true)
            text = s
        case .tokens(let t):
            let vocab = session.generator.transformer.spec.vocabSize
            if let bad = t.first(where: { Int($0) >= vocab }) { throw APIError.invalid("prompt", "token id \(bad) is outside the vocabulary (0..<\(vocab))") }
            ids = t
        case .chat(let messages, let variables):
            do {
                let rendered = try session.template.render(
                    messages: messages.map(JinjaValue.init(json:)), addGenerationPrompt: true,
                    variables: variables.map { ($0.0, JinjaValue(json: $0.1)) })
                ids = session.tokens(forText: rendered, addSpecial: session.template.addsSpecialTokens)
                text = rendered
            } catch let e as TemplateError {
                throw APIError.invalid("messages", "the chat template cannot render these messages: \(e)")
            }
        }
        guard !ids.isEmpty else { throw APIError.invalid(request.inputParam, "the prompt is empty (and the tokenizer adds no BOS token)") }
        guard ids.count < contextLength else {
            throw APIError(
                .badRequest,
                "this model's context length is \(contextLength) tokens (serve --context raises it up to the model's "
                    + "\(session.generator.transformer.spec.maxPositions)); the prompt has \(ids.count), leaving none to generate",
                param: request.inputParam, code: "context_length_exceeded")
        }
        return (text, ids)
    }

    private func run(
        _ request: APIRequest, _ history: [Int32], _ cancel: Cancellation,
        _ events: AsyncStream<Event>.Continuation
    ) throws -> (Summary, [Int32]) {
        var settings = request.settings
        settings.maxTokens = request.maxTokens ?? contextLength
        settings.logprobs = request.logprobs
        let generator = session.generator, tokenizer = session.tokenizer
        let turn = try ChatSession.complete(generator, history: history, settings: settings, stop: request.stop) { id, ready in
            // One event per token when log-probabilities are asked for (its text may be empty:
            // held back as the start of a character or a stop string); else one per text piece.
            let lp =
                id >= 0 && request.logprobs != nil
                ? generator.lastLogprob.map { lp in
                    LogprobEntry(token: tokenizer.decode([id]), logprob: lp.logprob, top: lp.top.map { (tokenizer.decode([$0.id]), $0.logprob) })
                } : nil
            if lp != nil || !ready.isEmpty { events.yield(.text(ready, logprob: lp)) }
            return !cancel.isCancelled
        }
        let r = turn.result
        let reason: String
        switch r.stop {
        case .endToken: reason = "stop"
        case .maxTokens, .contextFull: reason = "length"
        case .cancelled: reason = turn.stoppedByString ? "stop" : "cancelled"
        }
        if reason == "cancelled" { lock.withLock { cancelledCount += 1 } }
        return (
            Summary(
                promptTokens: history.count, promptTokensRun: r.promptTokens, completionTokens: r.generated.count,
                finishReason: reason, promptSeconds: r.promptSeconds, generationSeconds: r.generationSeconds), r.generated
        )
    }
}

extension APIRequest {
    var inputParam: String {
        if case .chat = input { return "messages" }
        return "prompt"
    }
}
