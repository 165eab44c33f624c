import ArgumentParser
import Foundation
import MalCommandLine
import MalCore
import MalReaders
import MalTransforms
import MalWriters

struct AbsorbCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "absorb-mla",
        abstract: "Absorb DeepSeek's MLA up-projections so the runtime caches only the latent c_kv and the rope key.",
        discussion: """
            split (llama.cpp, mlx-lm, vLLM): kv_b becomes per-head W_UK^T (attn_k_b) and W_UV (attn_v_b). merged (the \
            DeepSeek-V2 paper): W_UK^T·W_UQ and W_O·W_UV are precomputed per head (attn_q_lat, attn_output_lat). FP8 inputs \
            are dequantised block by block and absorbed in float32; the new tensors keep those exact float32 values \
            unless --dtype bf16 or --requantize fp8. The output is a .mal file (absorbed layouts have no HF names).
            """)

    @Argument(help: "DeepSeek model: .mal or HF folder.")
    var input: String

    @Option(name: .shortAndLong, help: "Output .mal file.")
    var output: String

    @Option(help: "split (per-head W_UK, W_UV) or merged (W_UK^T·W_UQ, W_O·W_UV).")
    var mode: AbsorbedModel.Mode = .split

    @Option(help: "Absorbed tensors as f32 (exact) or bf16.")
    var dtype: FloatOutputType = .f32

    @Option(help: "fp8: quantise the absorbed tensors to FP8 E4M3 (the input's blocks, else 128x128); none keeps them.")
    var requantize: Requantization = .none

    var requantizeFP8: Bool { requantize == .fp8 }

    @Option(help: "KV length used for the FLOP comparison.")
    var kvLength: Int = 4096

    @Flag(help: "Print the summary (written file, absorbed tensors, split/merged cost) as one JSON document.")
    var json = false

    @Flag(help: "Replace an existing output file (only once the new one is complete).")
    var force = false

    func validate() throws {
        guard output.hasSuffix(".mal") else { throw ValidationError("-o must be a .mal file: absorbed layouts have no HF names") }
    }

    func run() throws {
        try runReporting {
            let (base, inputs) = try ModelIO.open(input)
            let absorbed = try AbsorbedModel(base: base, mode: mode, dtype: dtype.dtype)
            let absorbedNames = absorbed.absorbedTensorNames
            let requantized = requantizeFP8 ? try QuantizedModel(base: absorbed, include: absorbedNames) : nil
            let model: CanonicalModel = requantized ?? absorbed
            let s = AbsorbedModel.cost(spec: base.spec, mode: .split, kvLength: kvLength)
            let g = AbsorbedModel.cost(spec: base.spec, mode: .merged, kvLength: kvLength)
            let extra: [String: Any] = [
                "mode": mode.rawValue, "dtype": dtype.rawValue, "requantize": requantize.rawValue, "absorbed_tensors": absorbedNames,
                "cost_per_layer": [
                    "kv_length": kvLength, "split": ["params": s.params, "multiply_adds_per_token": s.flops],
                    "merged": ["params": g.params, "multiply_adds_per_token": g.flops],
                ],
            ]
            try ModelIO.write(
                model, output: output, to: .mal, inputs: inputs, command: "absorb-mla",
                options: ["mode": mode.rawValue, "dtype": dtype.rawValue, "requantize": requantize.rawValue],
                force: force, json: json, extra: extra)
            if json { return }
            let blocks = requantized?.block.description ?? ""
            let what =
                requantizeFP8
                ? "requantised to FP8 E4M3 \(blocks) (smaller, no longer exact)"
                : dtype == .bf16 ? "rounded to BF16 (smaller, no longer exact)" : "kept as exact float32 values"
            print("absorbed \(absorbedNames.count) tensors (\(mode.rawValue)); absorbed tensors \(what)")
            let pr = Double(g.params) / Double(max(s.params, 1)), fr = Double(g.flops) / Double(max(s.flops, 1))
            print(
                String(
                    format: "per layer at KV length %d: split %d params, %d multiply-adds/token; merged %d params (%.2fx), "
                        + "%d multiply-adds/token (%.2fx)", kvLength, s.params, s.flops, g.params, pr, g.flops, fr))
            print("which layout decodes faster: " + AbsorbedModel.recommendation(spec: base.spec, kvLength: kvLength))
        }
    }
}
