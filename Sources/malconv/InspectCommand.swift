import ArgumentParser
import Foundation
import MalCommandLine
import MalCore
import MalReaders

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a checkpoint's architecture, hyper-parameters, tensors and problems.",
        discussion: """
            PATH is a model folder, a .safetensors file or a model.safetensors.index.json (config.json is read \
            from the same folder), or a .mal file (its spec, per-dtype and per-codec sizes, provenance). Exits \
            with 1 when the file is malformed, 2 when tensors are missing, unexpected or mis-shaped.
            """)

    @Argument(help: "Model folder, .safetensors file, shard index or .mal file.")
    var path: String

    @Flag(help: "Print a stable JSON document instead of text.")
    var json = false

    @Flag(help: "List every tensor.")
    var tensors = false

    func run() throws {
        if MalFile.isContainer(path) { try inspectContainer(); return }
        var summary: ModelSummary!
        var model: HFModel!
        try runReporting {
            model = try HFModel(path: path)
            summary = ModelSummary(model: model)
        }
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(summary), as: UTF8.self))
        } else {
            print(SummaryText.render(summary, tensors: tensors ? model.tensors : nil), terminator: "")
        }
        if !summary.inventory.isClean { throw ExitCode(2) }
    }

    /// A `.mal` file: opening it validates structure, metadata and table (chunk checksums are
    /// `malconv check`'s job), so a damaged file exits 1 naming the offset.
    private func inspectContainer() throws {
        var summary: MalSummary!
        try runReporting { summary = MalSummary(file: try MalFile(path: path)) }
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            var s = summary!
            if !tensors { s.tensors = [] }
            print(String(decoding: try enc.encode(s), as: UTF8.self))
        } else {
            print(SummaryText.render(summary, tensors: tensors), terminator: "")
        }
    }
}
