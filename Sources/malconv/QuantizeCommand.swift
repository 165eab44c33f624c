import ArgumentParser
import Foundation
import MalCommandLine
import MalCore
import MalReaders
import MalTransforms
import MalWriters

struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Block-quantise Linear weights to FP8 E4M3 (DeepSeek-V3 layout: 128x128 blocks, scale_inv = amax/448).",
        discussion: """
            By default every Linear weight of attention, MLP, experts and shared experts is quantised; embeddings, \
            output head, norms, biases, router gate, routing bias and the MTP projection/head keep their dtype (what \
            DeepSeek's release does). Weights that are already FP8 pass through. NaN or infinite weights stop the \
            command with the tensor and element. An HF output folder follows the DeepSeek-V3 release layout \
            (<name>_scale_inv, quantization_config), which vLLM and SGLang load. Patterns match canonical names \
            (Formats/NAMES.md), e.g. --exclude 'blk.0.*' --include 'output.weight'.
            """)

    @Argument(help: "HF model folder, .safetensors, shard index or .mal.")
    var input: String

    @OptionGroup var out: WriteOptions

    @Option(help: "FP8 format.")
    var format: FP8Format = .e4m3

    @Option(
        help: ArgumentHelp(
            "Block shape: 128x128 (DeepSeek-V3), 1x128, per-channel, or any RxC (default: the input's when it holds "
                + "FP8 weights already, else 128x128).", valueName: "RxC"))
    var block: BlockShape?

    @Option(help: "Scale format: f32 (amax/448) or ue8m0 (rounded up to a power of two, as DeepSeek V3.1).")
    var scale: ScaleFormat = .f32

    @Option(help: "Also quantise tensors matching this pattern (repeatable).")
    var include: [String] = []

    @Option(help: "Never quantise tensors matching this pattern (repeatable).")
    var exclude: [String] = []

    @Option(help: "Threads (default: all cores).")
    var threads: Int = availableCores

    @Flag(help: "Print the summary (what was quantised, what was kept and why) as JSON.")
    var json = false

    @Flag(help: "Leave out the multi-token-prediction layers (DeepSeek-V3's model.layers.{num_hidden_layers}.*); says how many bytes that saved.")
    var dropMtp = false

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        try runReporting {
            let (opened, inputs) = try ModelIO.open(input)
            let (base, mtpExtra) = MTPOption.apply(dropMtp, to: opened, json: json)
            let q: QuantizedModel
            do {
                q = try QuantizedModel(base: base, block: block, scale: scale, include: include, exclude: exclude, threads: threads)
            } catch let e as MalError { throw e.inFile(input) }
            let b = q.block, s = scale
            try ModelIO.write(
                q, output: out.output, to: out.to, inputs: inputs, command: "quantize",
                options: [
                    "format": format.rawValue, "block": b.description, "scale": s.rawValue,
                    "include": include.joined(separator: ","), "exclude": exclude.joined(separator: ","),
                    "drop-mtp": String(dropMtp),
                ],
                quantization: MalMetadata.Quantization(format: "e4m3", blockSize: [b.rows, b.cols], scale: s.rawValue),
                threads: threads, maxShardSize: out.maxShardSize, force: out.force, json: json, codec: out.codec,
                extra: (json ? ["decisions": try Self.jsonObject(q.decisions)] : [:]).merging(mtpExtra) { a, _ in a })
            if !json { Self.summarize(q.decisions) }
        }
    }

    /// The per-tensor decisions as a JSON value (one document with the write summary).
    static func jsonObject(_ d: [QuantizedModel.Decision]) throws -> Any {
        try JSONSerialization.jsonObject(with: JSONEncoder().encode(d))
    }

    static func summarize(_ d: [QuantizedModel.Decision]) {
        var groups: [String: Int] = [:]
        for x in d { groups["\(x.action): \(x.reason)", default: 0] += 1 }
        for (k, n) in groups.sorted(by: { $0.key < $1.key }) { print("  \(n) \(k)") }
    }
}

struct DequantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dequantize",
        abstract: "Turn an FP8 checkpoint (e.g. DeepSeek-V3's release) into BF16 or F32 on the CPU, streaming.",
        discussion: """
            Each block-quantised weight becomes float32(q) x scale_inv (then rounded to BF16 with --dtype bf16); edge \
            blocks use the block size from the config (not the ratio of shapes, which transformers uses and gets \
            wrong). Scale tensors and quantization_config are dropped; other tensors are unchanged.
            """)

    @Argument(help: "HF model folder, .safetensors, shard index or .mal.")
    var input: String

    @OptionGroup var out: WriteOptions

    @Option(help: "The dequantised weights' type.")
    var dtype: FloatOutputType = .bf16

    @Option(help: "Threads (default: all cores).")
    var threads: Int = availableCores

    @Flag(help: "Print the summary as JSON.")
    var json = false

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        try runReporting {
            let (base, inputs) = try ModelIO.open(input)
            let d = try DequantizedModel(base: base, dtype: dtype.dtype, threads: threads)
            try ModelIO.write(
                d, output: out.output, to: out.to, inputs: inputs, command: "dequantize", options: ["dtype": dtype.rawValue],
                threads: threads, maxShardSize: out.maxShardSize, force: out.force, json: json, codec: out.codec)
        }
    }
}
