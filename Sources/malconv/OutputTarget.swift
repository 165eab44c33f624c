import ArgumentParser
import MalCore

/// The output convention shared by every command that writes a model: `-o OUT` ending in `.mal`
/// writes the container, any other path an HF model folder; `--to` overrides.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case mal, safetensors

    static func resolve(path: String, explicit: OutputFormat?) -> OutputFormat {
        explicit ?? (path.hasSuffix(".mal") ? .mal : .safetensors)
    }
}

/// Parses sizes such as `5GB`, `500MB`, `2GiB` or a plain byte count.
func parseSize(_ s: String) throws -> Int {
    let units: [(String, Int)] = [
        ("GIB", 1 << 30), ("MIB", 1 << 20), ("KIB", 1 << 10), ("GB", 1_000_000_000), ("MB", 1_000_000),
        ("KB", 1000), ("B", 1),
    ]
    let u = s.uppercased()
    for (suffix, mult) in units where u.hasSuffix(suffix) {
        if let v = Double(u.dropLast(suffix.count)), v > 0 { return Int(v * Double(mult)) }
    }
    if let v = Int(u), v > 0 { return v }
    throw ValidationError("invalid size '\(s)' (examples: 5GB, 500MB, 2GiB)")
}

/// `--codec`: how a container stores its tensors.
enum ContainerCodec: String, CaseIterable, ExpressibleByArgument {
    case auto, raw
    var forced: MalFormat.Codec? { self == .raw ? .raw : nil }
}

/// Options of every command that writes a model.
struct WriteOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "Output: a path ending in .mal writes the container, any other path an HF model folder.")
    var output: String

    @Option(help: "Output format, overriding the -o convention (mal | safetensors).")
    var to: OutputFormat?

    @Option(help: "HF output only: largest shard, e.g. 5GB, 500MB, 2GiB (default: one file).")
    var maxShardSize: ByteCount?

    @Flag(help: "Replace an existing output (file or non-empty folder), only once the new one is complete.")
    var force = false

    @Option(
        help: ArgumentHelp(
            "A .mal output's tensor codec: auto (zstd where it saves 2% or more) or raw (uncompressed and "
                + "aligned, so `malrun --mmap` uses the weights in place from the file).", valueName: "codec"))
    var codec: ContainerCodec = .auto

    var format: OutputFormat { OutputFormat.resolve(path: output, explicit: to) }
}
