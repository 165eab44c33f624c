import ArgumentParser
import MalCore
import MalReaders

struct MalrunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "malrun",
        abstract: "Run converted LLMs on the CPU.",
        subcommands: [GenerateCommand.self, LogitsCommand.self, BenchCommand.self, TokenizeCommand.self, DetokenizeCommand.self,
                      InfoCommand.self],
        defaultSubcommand: GenerateCommand.self)
}

/// Shows the model the runtime would load: read through the same reader stage as malconv.
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show the architecture and size of a model the runtime would load.")

    @Argument(help: "Model folder, .safetensors file or shard index.")
    var model: String

    func run() throws {
        do {
            let m = try HFModel(path: model)
            print(SummaryText.render(ModelSummary(model: m)), terminator: "")
        } catch let e as MalError {
            printError("error: \(e)")
            throw ExitCode(1)
        }
    }
}
