import ArgumentParser
import Foundation
import MalCommandLine
import MalCore
import MalReaders
import MalTransforms
import MalWriters

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert an HF checkpoint to a .mal container (or an HF folder), streaming tensor by tensor.",
        discussion: """
            IN is a model folder, a .safetensors file or a shard index (config.json beside it). Tensors are renamed \
            to the canonical scheme (Formats/NAMES.md), compressed with zstd in 1 MiB chunks (byte planes for 16/32-bit \
            floats) on all cores, and written to a temporary file renamed into place at the end. Nothing is left \
            behind on failure or Ctrl-C; the input is never overwritten. A NaN or infinity, in the checkpoint or made \
            by the cast (F16 overflows beyond 65504), stops the conversion with its tensor and file offset.
            """)

    @Argument(help: "HF model folder, .safetensors file or shard index.")
    var input: String

    @OptionGroup var out: WriteOptions

    @Option(help: "Cast float tensors (FP8 weights, scales and DeepSeek's routing bias are kept).")
    var dtype: TargetDType = .keep

    @Option(help: "zstd level (1 is the sweet spot for weights; higher levels buy nothing).")
    var level: Int32 = 1

    @Option(help: "Threads (default: all cores).")
    var threads: Int = availableCores

    @Flag(help: "Carry NaN and infinite values over instead of stopping at the first one.")
    var allowNonfinite = false

    @Flag(help: "Print the summary as JSON.")
    var json = false

    @Flag(help: "Leave out the multi-token-prediction layers (DeepSeek-V3's model.layers.{num_hidden_layers}.*); says how many bytes that saved.")
    var dropMtp = false

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard (-7...22).contains(level) else { throw ValidationError("--level must be in -7...22") }
    }

    func run() throws {
        try runReporting {
            let model = try HFModel(path: input)
            let canon = try HFCanonicalModel(model: model, target: dtype)
            canon.checkFinite = !allowNonfinite
            let (written, extra) = MTPOption.apply(dropMtp, to: canon, json: json)
            try ModelIO.write(
                written, output: out.output, to: out.to, inputs: [input] + model.checkpoint.files.map(\.path),
                command: "convert", options: ["dtype": dtype.rawValue, "level": String(level), "drop-mtp": String(dropMtp)],
                level: Int32(level), threads: threads, maxShardSize: out.maxShardSize, force: out.force, json: json, codec: out.codec,
                extra: extra)
        }
    }
}
