import ArgumentParser
import Foundation
import MalCommandLine
import MalCore
import MalReaders
import MalRuntime

@main
struct MalrunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "malrun",
        abstract: "Run converted LLMs on the CPU.",
        subcommands: [
            GenerateCommand.self, ChatCommand.self, ServeCommand.self, LogitsCommand.self, BenchCommand.self,
            TokenizeCommand.self, DetokenizeCommand.self, TemplateCommand.self, InfoCommand.self,
        ],
        defaultSubcommand: GenerateCommand.self)
}

/// Shows the model the runtime would load: read through the same reader stage as malconv.
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show the architecture and size of a model the runtime would load.")

    @Argument(help: "A .mal file, model folder, .safetensors file or shard index.")
    var model: String

    @Flag(help: "Print the facts as JSON.")
    var json = false

    func run() throws {
        try runReporting {
            let m = try ModelLoader.open(model)
            if json {
                print(
                    String(
                        decoding: try JSONSerialization.data(withJSONObject: document(m), options: [.prettyPrinted, .sortedKeys]),
                        as: UTF8.self))
            } else {
                printText(m)
            }
        }
    }

    /// The facts as one JSON object (`--json`); counts that do not fit an Int are null.
    func document(_ m: CanonicalModel) -> [String: Any] {
        let s = m.spec, plan = MemoryPlan(model: m)
        func orNull(_ x: Any?) -> Any { x ?? NSNull() }
        var doc: [String: Any] = [
            "model": model, "architecture": s.modelType, "layers": s.layers, "mtp_layers": s.mtpLayers,
            "hidden_size": s.hiddenSize, "vocab_size": s.vocabSize, "heads": s.heads, "kv_heads": s.kvHeads,
            "parameters": orNull(m.parameterCount), "tensors": m.weightTensors.count,
            "tensors_by_dtype": Dictionary(grouping: m.weightTensors, by: \.dtype.rawValue).mapValues(\.count),
            "kv_cache_bytes_per_token": plan.kvBytesPerToken, "activation": s.activation,
            "memory": [
                "weights_bytes": plan.weightBytes, "load_peak_bytes": plan.loadPeakBytes,
                "available_bytes": plan.memoryBytes, "max_context_in_memory": orNull(plan.maxContext),
                "kv_cache_bytes_per_token_naive": orNull(plan.kvBytesPerTokenNaive),
                "kv_cache_bytes_per_token_absorbed": orNull(plan.kvBytesPerTokenLatent),
            ] as [String: Any],
        ]
        if let mla = s.mla { doc["mla"] = ["absorbed": orNull(mla.absorbed), "kv_lora_rank": mla.kvLoraRank] }
        if let moe = s.moe {
            doc["moe"] = [
                "routed_experts": moe.routedExperts, "experts_per_token": moe.expertsPerToken,
                "shared_experts": moe.sharedExperts, "scoring": moe.scoring.rawValue,
            ]
        }
        if let q = s.quantization { doc["quantization"] = ["method": q.method, "format": q.format, "weight_block_size": q.weightBlockSize ?? []] }
        return doc
    }

    func printText(_ m: CanonicalModel) {
        let s = m.spec, plan = MemoryPlan(model: m), weights = m.weightTensors
        let n = { (x: Int?) in x.map(String.init) ?? "too large to count" }
        let dtypes = Dictionary(grouping: weights, by: \.dtype.rawValue).mapValues(\.count).sorted { $0.key < $1.key }
        print("\(model)")
        print(
            "  architecture   \(s.modelType), \(s.layers) layers\(s.mtpLayers > 0 ? " (+\(s.mtpLayers) MTP, not run)" : ""), "
                + "hidden \(s.hiddenSize), vocab \(s.vocabSize)")
        print("  parameters     \(n(m.parameterCount)) in \(weights.count) tensors (\(dtypes.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))")
        if let mla = s.mla {
            print(
                "  attention      MLA, \(mla.absorbed.map { "absorbed (\($0)): latent KV cache" } ?? "naive: per-head KV cache"); "
                    + "KV cache \(plan.kvBytesPerToken) B/token (naive \(n(plan.kvBytesPerTokenNaive)), absorbed \(n(plan.kvBytesPerTokenLatent)))")
        } else {
            print("  attention      \(s.heads) heads / \(s.kvHeads) KV heads; KV cache \(plan.kvBytesPerToken) B/token")
        }
        if let moe = s.moe {
            print(
                "  experts        \(moe.routedExperts) routed (top-\(moe.expertsPerToken)) + \(moe.sharedExperts) shared, "
                    + "\(moe.scoring.rawValue) routing")
        }
        if let q = s.quantization { print("  quantization   \(q.method) \(q.format), blocks \(q.weightBlockSize ?? [])") }
        func size(_ b: Int) -> String { b < 1 << 30 ? String(format: "%.1f MiB", Double(b) / Double(1 << 20)) : gibibytes(b) }
        print(
            "  memory         weights \(size(plan.weightBytes)) (loading peaks at \(size(plan.loadPeakBytes))); "
                + "this process may use \(size(plan.memoryBytes)); "
                + (plan.maxContext.map { "the longest context that fits: \($0) positions (\(size(plan.kvBytes(context: $0))) of KV cache)" }
                    ?? "the weights do not fit"))
    }
}
