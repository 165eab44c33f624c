import ArgumentParser
import MalCore
import MalReaders
import MalTransforms
import MalWriters

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export a .mal container back to an HF model folder (transformers and safetensors load it).",
        discussion: """
        Writes config.json in the Hub key style, model.safetensors (or shards with an index when --max-shard-size \
        is given) with HF tensor names, and the tokenizer files stored in the container. A lossless conversion \
        exports byte-identical tensors.
        """)

    @Argument(help: "A .mal file.")
    var input: String

    @Option(name: .shortAndLong, help: "Output folder (a path ending in .mal re-writes the container).")
    var output: String

    @Option(help: "Output format, overriding the -o convention (mal | safetensors).")
    var to: OutputFormat?

    @Option(help: "Largest shard, e.g. 5GB (default: one file).")
    var maxShardSize: String?

    @Flag(help: "Replace a non-empty output folder.")
    var force = false

    @Flag(help: "Print the summary as JSON.")
    var json = false

    func run() throws {
        try runReporting {
            try refuseOverwritingInput(output: output, inputs: [input])
            let mal = try MalFile(path: input)
            let progress = Progress("export")
            switch OutputFormat.resolve(path: output, explicit: to) {
            case .safetensors:
                let start = monotonicSeconds()
                let s = try HFFolderWriter.write(mal, to: output, maxShardBytes: try maxShardSize.map(parseSize), force: force,
                                                 progress: progress.update)
                Report.folder(s, path: output, seconds: monotonicSeconds() - start, json: json)
            case .mal:
                let s = try ContainerExport.write(mal, to: output, options: MalWriter.Options(), command: "export",
                                                  optionValues: [:], sources: mal.metadata.provenance.sources,
                                                  dropped: mal.metadata.provenance.droppedTensors,
                                                  quantization: mal.metadata.quantization, progress: progress.update)
                Report.container(s, path: output, json: json)
            }
        }
    }
}
