import ArgumentParser
import Foundation
import MalChat
import MalCommandLine
import MalCore
import MalRuntime

/// Shows what a model sees for a conversation: the rendered chat template and its token ids.
struct TemplateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "template",
        abstract: "Render the chat template for a list of messages (what `chat` and `serve` send the model).")

    @Argument(help: "Model: a .mal file or an HF folder.")
    var model: String

    @Option(
        help: ArgumentHelp(
            "JSON file with the messages: [{\"role\": …, \"content\": …}, …], or {\"messages\": […], more template variables}; - for standard input.",
            valueName: "file"))
    var messages: String

    @Flag(help: "End with the assistant's header, as for generation.")
    var addGenerationPrompt = false

    @OptionGroup var templateOptions: TemplateOptions

    @Flag(help: "Print {\"text\": …, \"ids\": […]} as JSON.")
    var json = false

    func run() throws {
        try runReporting {
            let template = try templateOptions.template(model: model, announce: !json)
            let doc = try JSONValue.parse(try TextInput.read(messages, lossy: false), file: messages == "-" ? "standard input" : messages)
            let list = doc.arrayValue ?? doc["messages"]?.arrayValue
            guard let list else { throw MalError(.invalidField, "expected a list of messages or an object with 'messages'", file: messages) }
            let variables = (doc.objectPairs ?? []).filter { $0.0 != "messages" }.map { ($0.0, JinjaValue(json: $0.1)) }
            let text = try template.render(
                messages: list.map(JinjaValue.init(json:)), addGenerationPrompt: addGenerationPrompt,
                variables: variables)
            guard json else { writeOut(text); return }
            let tok = try TokenizerLoader.load(model)
            let ids = tok.encode(text, addSpecial: template.addsSpecialTokens)
            print(JSONValue.object([("text", .string(text)), ("ids", .array(ids.map { .int(Int64($0)) }))]).serialized)
        }
    }
}
