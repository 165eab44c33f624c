import ArgumentParser
import Foundation
import MalCommandLine
import MalCore
import MalReaders
import MalTransforms
import MalWriters

/// Opening inputs and writing outputs the same way in every command.
enum ModelIO {
    /// A `.mal` file, or an HF folder / safetensors file / index, as a `CanonicalModel`.
    static func open(_ path: String, dtype: TargetDType = .keep) throws -> (model: CanonicalModel, sources: [String]) {
        if MalFile.isContainer(path) { return (try MalFile(path: path), [path]) }
        let hf = try HFModel(path: path)
        return (try HFCanonicalModel(model: hf, target: dtype), [path] + hf.checkpoint.files.map(\.path))
    }

    /// Writes `model` to `output` following the output convention (`.mal` → container, else HF
    /// folder; `--to` overrides). Prints the summary.
    static func write(
        _ model: CanonicalModel, output: String, to: OutputFormat?, inputs: [String], command: String,
        options: [String: String], quantization: MalMetadata.Quantization? = nil, level: Int32 = 1,
        threads: Int = availableCores, maxShardSize: ByteCount? = nil, force: Bool = false, json: Bool = false,
        codec: ContainerCodec = .auto, extra: [String: Any] = [:]
    ) throws {
        try refuseOverwritingInput(output: output, inputs: inputs)
        let progress = ProgressLine(command)
        let format = OutputFormat.resolve(path: output, explicit: to)
        if codec != .auto && format != .mal {
            throw MalError(.invalidArgument, "--codec \(codec.rawValue) is for .mal outputs; an HF folder's safetensors are raw already", file: output)
        }
        switch format {
        case .mal:
            var opts = MalWriter.Options()
            opts.level = level
            opts.threads = threads
            opts.replaceExisting = force
            opts.codec = codec.forced
            var recorded = options
            if codec != .auto { recorded["codec"] = codec.rawValue }
            let s = try ContainerExport.write(
                model, to: output, options: opts, command: command, optionValues: recorded,
                quantization: quantization, progress: progress.update)
            Report.container(s, path: output, json: json, extra: extra)
        case .safetensors:
            let start = monotonicSeconds()
            let s = try HFFolderWriter.write(
                model, to: output, maxShardBytes: maxShardSize?.bytes, force: force,
                progress: progress.update)
            Report.folder(s, path: output, seconds: monotonicSeconds() - start, json: json, extra: extra)
        }
    }
}

/// `--drop-mtp` of convert and quantize: the model without its MTP layers, and what that left out
/// (printed at once, or as `dropped_mtp` in the JSON summary).
enum MTPOption {
    static func apply(_ drop: Bool, to model: CanonicalModel, json: Bool) -> (CanonicalModel, [String: Any]) {
        guard drop else { return (model, [:]) }
        let w = WithoutMTP(base: model)
        if !json {
            printError(
                w.droppedTensors == 0
                    ? "--drop-mtp: the model has no multi-token-prediction layer; nothing left out"
                    : "left out the multi-token-prediction layer: \(w.droppedTensors) tensors, \(w.droppedBytes) bytes")
        }
        return (w, ["dropped_mtp": ["tensors": w.droppedTensors, "bytes": w.droppedBytes]])
    }
}
