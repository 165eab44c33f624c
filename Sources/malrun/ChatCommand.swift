import ArgumentParser
import Foundation
import MalChat
import MalCommandLine
import MalCore
import MalRuntime
#if canImport(Glibc)
import Glibc
#endif

/// Options that pick the chat template, shared by `chat`, `serve` and `template`.
struct TemplateOptions: ParsableArguments {
    @Option(help: ArgumentHelp("A Jinja chat template file instead of the model's own.", valueName: "file"))
    var chatTemplate: String?

    /// The template: `--chat-template`, the model's, or the plain one for a model without one
    /// (said on standard error when `announce`).
    func template(model: String, announce: Bool) throws -> ChatTemplate {
        if let chatTemplate { return try ChatTemplate.load(file: chatTemplate, model: model) }
        let t = try ChatTemplate.loadOrPlain(model: model)
        if announce && t.isPlain {
            printError(
                "note: \(model) has no chat template (a base model): each message is sent as plain text on a new line, and answers continue the text; "
                    + "--chat-template FILE gives one")
        }
        return t
    }
}

/// Ctrl-C during an answer stops the answer, not the program: the handler only sets a flag the
/// token callback reads. At the prompt, Ctrl-C ends the chat (as end of input does).
enum Interrupt {
    nonisolated(unsafe) static var requested: sig_atomic_t = 0

    static func install() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in Interrupt.requested = 1 }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0  // no SA_RESTART: a read at the prompt returns
        sigaction(SIGINT, &action, nil)
    }

    /// Whether Ctrl-C came since the last call.
    static func take() -> Bool {
        defer { requested = 0 }
        return requested != 0
    }
}

struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Chat with a model in the terminal, through its chat template.",
        discussion: """
            Each turn runs only its new tokens: the conversation stays in the KV cache. Commands: /reset (forget the \
            conversation), /system TEXT (a new system message; starts again), /exit. Ctrl-C stops the current answer. \
            Without a terminal, each line of standard input is one user message and each answer is printed on its own \
            line, so a chat can be scripted.
            """)

    @OptionGroup var options: ModelOptions
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var templateOptions: TemplateOptions

    @Option(help: "The system message.")
    var system: String?

    @Option(name: .short, help: "Most tokens per answer.")
    var n: Int = 512

    func validate() throws {
        guard n >= 1 else { throw ValidationError("-n must be >= 1") }
    }

    func run() throws {
        try runReporting {
            let template = try templateOptions.template(model: options.model, announce: true)
            let generator = try options.generator(sampling)
            let tr = generator.transformer
            let session = try ChatSession(generator: generator, template: template, system: system)
            let interactive = isatty(0) != 0 && isatty(1) != 0
            if interactive {
                Interrupt.install()
                printError("chat with \(options.model) (\(tr.contextLength) tokens of context); /reset, /system TEXT, /exit; Ctrl-C stops an answer")
            }
            try loop(session, interactive: interactive)
            try tr.requireIntactWeights()
        }
    }

    private func loop(_ session: ChatSession, interactive: Bool) throws {
        while true {
            if interactive { writeOut("> ") }
            guard let line = readLine(strippingNewline: true) else {
                if interactive { writeOut("\n") }
                return
            }
            _ = Interrupt.take()
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            switch command(text) {
            case .exit: return
            case .reset:
                session.reset()
                printError("(conversation forgotten)")
                continue
            case .system(let s):
                session.setSystem(s.isEmpty ? nil : s)
                printError(s.isEmpty ? "(no system message; conversation forgotten)" : "(new system message; conversation forgotten)")
                continue
            case .unknown(let c):
                printError("unknown command \(c) (commands: /reset, /system TEXT, /exit)")
                continue
            case nil: break
            }
            do {
                let turn = try session.send(line, settings: sampling.settings(maxTokens: n)) { piece in
                    writeOut(piece)
                    return Interrupt.requested == 0
                }
                writeOut("\n")
                let r = turn.result
                var notes: [String] = []
                if Interrupt.take() { notes.append("stopped") }
                if r.stop == .contextFull { notes.append("the context is full: /reset to go on") }
                if r.stop == .maxTokens { notes.append("-n \(n) reached") }
                printError(
                    String(
                        format: "[prompt %d new tokens, %.1f tok/s | answer %d tokens, %.1f tok/s%@%@]", r.promptTokens,
                        r.promptTokensPerSecond, r.generated.count, r.tokensPerSecond,
                        sampling.speculative == nil ? "" : String(format: " | %.0f%% of drafts accepted", 100 * r.acceptanceRate),
                        notes.isEmpty ? "" : " | " + notes.joined(separator: "; ")))
            } catch let e as MalError {
                // A turn that cannot run (too long for the context) is reported; the chat goes on.
                printError("error: \(e)")
                if !interactive { throw ExitCode(1) }
            } catch let e as TemplateError {
                printError("error: \(e)")
                if !interactive { throw ExitCode(1) }
            }
        }
    }

    enum Command: Equatable { case exit, reset, system(String), unknown(String) }

    func command(_ text: String) -> Command? {
        guard text.hasPrefix("/") else { return nil }
        let word = text.prefix { !$0.isWhitespace }
        let rest = text.dropFirst(word.count).trimmingCharacters(in: .whitespaces)
        switch word {
        case "/exit", "/quit", "/bye": return .exit
        case "/reset", "/clear": return .reset
        case "/system": return .system(rest)
        default: return .unknown(String(word))
        }
    }
}
