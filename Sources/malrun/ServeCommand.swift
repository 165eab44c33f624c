import ArgumentParser
import Foundation
import MalChat
import MalCommandLine
import MalCore
import MalRuntime
import MalServe

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the model over an OpenAI-compatible HTTP API.",
        discussion: """
            Routes: GET /health, GET /v1/models, POST /v1/completions, POST /v1/chat/completions (with "stream": true: \
            server-sent events ending with data: [DONE]). Requests are queued and served one at a time; the KV cache \
            is kept between them, so a client that resends a conversation only pays for its new tokens. The sampling \
            options below are the defaults for fields a request leaves out (greedy unless --temperature is given). \
            Binds to 127.0.0.1 unless --host says otherwise.
            """)

    @OptionGroup var options: ModelOptions
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var templateOptions: TemplateOptions

    @Option(help: "Address to bind (0.0.0.0 for every interface).")
    var host = "127.0.0.1"

    @Option(help: "Port (0 picks a free one, printed on standard error).")
    var port = 8080

    @Option(help: "Require clients to send Authorization: Bearer KEY.")
    var apiKey: String?

    @Option(help: "The model's name in /v1/models and requests (default: the file or folder name).")
    var name: String?

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535") }
        if let apiKey, apiKey.isEmpty { throw ValidationError("--api-key must not be empty") }
    }

    func run() async throws {
        let session = try runReporting {
            let template = try templateOptions.template(model: options.model, announce: true)
            return try ChatSession(generator: try options.generator(sampling), template: template)
        }
        var config = OpenAIServer.Configuration(modelName: name ?? defaultName)
        config.host = host
        config.port = port
        config.apiKey = apiKey
        config.defaults = sampling.settings(maxTokens: 0)
        let server = OpenAIServer(session: session, configuration: config)
        let (host, name) = (host, config.modelName)
        do {
            try await server.run { port in
                printError("serving \(name) on http://\(host.contains(":") ? "[\(host)]" : host):\(port)/v1 (one request at a time)")
            }
        } catch {
            printError("error: cannot serve on \(host):\(port): \(error)")
            throw ExitCode(1)
        }
    }

    private var defaultName: String {
        var n = URL(fileURLWithPath: options.model).standardizedFileURL.lastPathComponent
        if n.hasSuffix(".mal") { n.removeLast(4) }
        return n
    }
}
