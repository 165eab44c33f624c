import ArgumentParser
import MalCore

struct MalconvCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "malconv",
        abstract: "Convert, quantise and verify Hugging Face LLM checkpoints (GPT-2, Llama 3, DeepSeek V2/V3).",
        subcommands: [
            InspectCommand.self, ConvertCommand.self, QuantizeCommand.self, DequantizeCommand.self, AbsorbCommand.self, VerifyCommand.self, ExportCommand.self,
            CheckCommand.self,
        ])
}
