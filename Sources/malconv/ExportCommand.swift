import ArgumentParser
import MalCommandLine
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
            let mal = try MalFile(path: input)
            do {
                try ModelIO.write(
                    mal, output: out.output, to: out.to, inputs: [input], command: "export", options: [:],
                    quantization: mal.metadata.quantization, maxShardSize: out.maxShardSize, force: out.force, json: json, codec: out.codec)
            } catch let e as MalError where e.tensor != nil && e.file == nil { throw e.inFile(input) }
        }
    }
}
