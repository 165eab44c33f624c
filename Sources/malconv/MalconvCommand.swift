import ArgumentParser
import MalCore

struct MalconvCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "malconv",
        abstract: "Convert, quantise and verify Hugging Face LLM checkpoints (GPT-2, Llama 3, DeepSeek V2/V3).",
        subcommands: [InspectCommand.self, ConvertCommand.self, QuantizeCommand.self, DequantizeCommand.self, AbsorbCommand.self, VerifyCommand.self, ExportCommand.self, CheckCommand.self])
}

/// Runs `body`, turning a `MalError` into a one-line message on stderr and exit code 1.
func runReporting(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as MalError {
        printError("error: \(e)")
        throw ExitCode(1)
    }
}
