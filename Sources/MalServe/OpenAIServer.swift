import Foundation
import Hummingbird
import Logging
import MalChat
import MalCore
import MalRuntime

/// An OpenAI-compatible HTTP server for one model, on Hummingbird: `GET /health`,
/// `GET /v1/models`, `POST /v1/completions` and `POST /v1/chat/completions`, with and without
/// `stream` (server-sent events in OpenAI's chunk format, ending with `data: [DONE]`).
/// Requests are served one at a time, in arrival order (`GenerationWorker`).
public struct OpenAIServer: Sendable {
    public struct Configuration: Sendable {
        public var host = "127.0.0.1"
        public var port = 8080
        /// Clients must send `Authorization: Bearer <key>` when set.
        public var apiKey: String?
        /// The name `/v1/models` lists and requests may give as `model`.
        public var modelName: String
        /// Sampling settings for the fields a request leaves out.
        public var defaults = Generator.Settings()
        /// Request bodies above this are refused (413).
        public var maxBodyBytes = 16 << 20
        public init(modelName: String) { self.modelName = modelName }
    }

    let configuration: Configuration
    let worker: GenerationWorker

    public init(session: ChatSession, configuration: Configuration) {
        self.configuration = configuration
        worker = GenerationWorker(session: session, modelName: configuration.modelName)
    }

    /// Serves until the process is stopped (SIGINT or SIGTERM end it gracefully).
    /// - Parameter onListening: called with the bound port (useful with port 0).
    public func run(onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let router = Router()
        router.add(middleware: APIErrorMiddleware(apiKey: configuration.apiKey))
        router.get("/health") { _, _ in
            jsonResponse(
                .object([
                    ("status", .string("ok")), ("model", .string(configuration.modelName)),
                    ("requests_in_progress", .int(Int64(worker.queued))),
                    ("requests_cancelled", .int(Int64(worker.cancelled))),
                ]))
        }
        router.get("/v1/models") { _, _ in
            jsonResponse(.object([("object", .string("list")), ("data", .array([modelObject]))]))
        }
        router.get("/v1/models/:id") { _, context in
            guard context.parameters.get("id") == configuration.modelName else { throw unknownModel(context.parameters.get("id") ?? "") }
            return jsonResponse(modelObject)
        }
        router.post("/v1/completions") { request, _ in try await complete(request, chat: false) }
        router.post("/v1/chat/completions") { request, _ in try await complete(request, chat: true) }
        var logger = Logger(label: "malrun.serve")
        logger.logLevel = .warning
        let app = Application(
            router: router,
            configuration: .init(
                address: .hostname(configuration.host, port: configuration.port),
                serverName: "malrun"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? configuration.port) },
            logger: logger)
        try await app.runService()
    }

    private var modelObject: JSONValue {
        .object([
            ("id", .string(configuration.modelName)), ("object", .string("model")), ("created", .int(Int64(startTime))),
            ("owned_by", .string("malrun")), ("context_length", .int(Int64(worker.contextLength))),
        ])
    }

    private var startTime: Int { Int(Date().timeIntervalSince1970) }

    private func unknownModel(_ name: String) -> APIError {
        APIError(
            .notFound, "the model '\(name)' does not exist; this server serves '\(configuration.modelName)'",
            param: "model", code: "model_not_found")
    }

    private func complete(_ request: Request, chat: Bool) async throws -> Response {
        let body: ByteBuffer
        do { body = try await request.body.collect(upTo: configuration.maxBodyBytes) } catch {
            throw APIError(.contentTooLarge, "the request body exceeds \(configuration.maxBodyBytes) bytes")
        }
        let req = try APIRequest.parse(Array(buffer: body), chat: chat, defaults: configuration.defaults)
        if let m = req.model, m != configuration.modelName { throw unknownModel(m) }
        let cancel = GenerationWorker.Cancellation()
        let (events, continuation) = AsyncStream<GenerationWorker.Event>.makeStream()
        continuation.onTermination = { _ in cancel.cancel() }
        let promptTokens: Int = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (k: CheckedContinuation<Int, Error>) in
                worker.submit(req, cancel: cancel, events: continuation) { k.resume(with: $0.mapError { $0 as Error }) }
            }
        } onCancel: {
            cancel.cancel()
        }
        let shape = ResponseShape(chat: chat, model: configuration.modelName, logprobs: req.logprobs != nil)
        if req.stream { return stream(events, shape, includeUsage: req.includeUsage, cancel: cancel) }
        var text = "", logprobs: [GenerationWorker.LogprobEntry] = []
        var summary: GenerationWorker.Summary?
        try await withTaskCancellationHandler {
            for await e in events {
                switch e {
                case .text(let t, let lp):
                    text += t
                    if let lp { logprobs.append(lp) }
                case .finished(let s): summary = s
                case .failed(let err): throw err
                }
            }
        } onCancel: {
            cancel.cancel()
        }
        guard let summary else { throw APIError(.internalServerError, "generation ended without a result (\(promptTokens) prompt tokens)") }
        return jsonResponse(shape.complete(text: text, logprobs: logprobs, summary: summary))
    }

    /// Server-sent events: one chunk per piece of text, the finish reason, usage if asked, `[DONE]`.
    /// A failed write (the client went away) cancels the generation.
    private func stream(
        _ events: AsyncStream<GenerationWorker.Event>, _ shape: ResponseShape, includeUsage: Bool,
        cancel: GenerationWorker.Cancellation
    ) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                func send(_ v: JSONValue) async throws { try await writer.write(ByteBuffer(string: "data: " + v.serialized + "\n\n")) }
                do {
                    if shape.chat { try await send(shape.chunk(delta: .object([("role", .string("assistant")), ("content", .string(""))]))) }
                    for await e in events {
                        switch e {
                        case .text(let t, let lp): try await send(shape.chunk(text: t, logprob: lp))
                        case .finished(let s):
                            try await send(shape.chunk(finish: s.finishReason))
                            if includeUsage { try await send(shape.usageChunk(s)) }
                        case .failed(let err): try await send(err.json)
                        }
                    }
                    try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                    try await writer.finish(nil)
                } catch {
                    cancel.cancel()
                    throw error
                }
            })
    }
}
