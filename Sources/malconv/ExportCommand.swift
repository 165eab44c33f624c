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

    @OptionGroup var out: WriteOptions


    @Flag(help: "Print the summary as JSON.")
    var json = false

    func run() throws {
        try runReporting {
            try refuseOverwritingInput(output: out.output, inputs: [input])
            let mal = try MalFile(path: input)
            let progress = Progress("export")
            switch out.format {
            case .safetensors:
                let start = monotonicSeconds()
                let s: HFFolderWriter.Summary
                do {
                    s = try HFFolderWriter.write(mal, to: out.output, maxShardBytes: try out.maxShardSize.map(parseSize), force: out.force,
                                                 progress: progress.update)
                } catch let e as MalError where e.tensor != nil { throw e.inFile(input) }
                Report.folder(s, path: out.output, seconds: monotonicSeconds() - start, json: json)
            case .mal:
                var opts = MalWriter.Options()
                opts.replaceExisting = out.force
                let s = try ContainerExport.write(mal, to: out.output, options: opts, command: "export",
                                                  optionValues: [:], sources: mal.metadata.provenance.sources,
                                                  dropped: mal.metadata.provenance.droppedTensors,
                                                  quantization: mal.metadata.quantization, progress: progress.update)
                Report.container(s, path: out.output, json: json)
            }
        }
    }
}
