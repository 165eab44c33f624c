import ArgumentParser
import MalCore
import MalReaders
import MalRuntime

struct MalrunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "malrun",
        abstract: "Run converted LLMs on the CPU.",
        subcommands: [GenerateCommand.self, LogitsCommand.self, BenchCommand.self, TokenizeCommand.self, DetokenizeCommand.self,
                      InfoCommand.self],
        defaultSubcommand: GenerateCommand.self)
}

/// Shows the model the runtime would load: read through the same reader stage as malconv.
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show the architecture and size of a model the runtime would load.")

    @Argument(help: "A .mal file, model folder, .safetensors file or shard index.")
    var model: String

    func run() throws {
        do {
            let m = try ModelLoader.open(model)
            let s = m.spec
            let weights = m.tensors.filter { !$0.name.hasPrefix("aux/") }
            let params = weights.filter { !$0.name.hasSuffix(".scale_inv") && $0.aliasOf == nil }.reduce(0) { $0 + $1.shape.reduce(1, *) }
            let dtypes = Dictionary(grouping: weights, by: \.dtype.rawValue).mapValues(\.count).sorted { $0.key < $1.key }
            print("\(model)")
            print("  architecture   \(s.architecture.rawValue), \(s.layers) layers\(s.mtpLayers > 0 ? " (+\(s.mtpLayers) MTP, not run)" : ""), hidden \(s.hiddenSize), vocab \(s.vocabSize)")
            print("  parameters     \(params) in \(weights.count) tensors (\(dtypes.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))")
            if let mla = s.mla {
                let naive = s.layers * s.heads * (mla.qkHeadDim + mla.vHeadDim) * 4, latent = s.layers * (mla.kvLoraRank + mla.qkRopeHeadDim) * 4
                print("  attention      MLA, \(mla.absorbed.map { "absorbed (\($0)): latent KV cache" } ?? "naive: per-head KV cache"); "
                      + "KV cache \(mla.absorbed != nil ? latent : naive) B/token (naive \(naive), absorbed \(latent))")
            } else {
                print("  attention      \(s.heads) heads / \(s.kvHeads) KV heads; KV cache \(s.layers * s.kvHeads * s.headDim * 2 * 4) B/token")
            }
            if let moe = s.moe {
                print("  experts        \(moe.routedExperts) routed (top-\(moe.expertsPerToken)) + \(moe.sharedExperts) shared, \(moe.scoring.rawValue) routing")
            }
            if let q = s.quantization { print("  quantization   \(q.method) \(q.format), blocks \(q.weightBlockSize ?? [])") }
        } catch let e as MalError {
            printError("error: \(e)")
            throw ExitCode(1)
        }
    }
}
