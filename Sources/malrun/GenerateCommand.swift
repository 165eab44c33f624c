import ArgumentParser
import Foundation
import MalCommandLine
import MalCore
import MalRuntime
import MalWriters
#if canImport(Glibc)
import Glibc
#endif

/// Options shared by the commands that load a model.
struct ModelOptions: ParsableArguments {
    @Argument(help: "Model: a .mal file or an HF folder.")
    var model: String

    @Option(help: "Threads (default: all cores).")
    var threads: Int = availableCores

    @Option(help: "Context length (KV cache size; default min(4096, the model's maximum)).")
    var context: Int?

    @Flag(
        help: ArgumentHelp(
            "Use the weights in place, mapped from the file, instead of copying them into memory: instant loads of a "
                + "cached model, one copy shared by every process, and models larger than memory (paged, slowly). For "
                + "containers written with `malconv convert --codec raw` (their checksums are checked while the model runs, and "
                + "the command fails if one does not match); compressed tensors are still decoded."))
    var mmap = false

    @Option(
        help: ArgumentHelp(
            "Prompt precision: exact (float32 activations: logits within 1e-4 of transformers) or fast (activations "
                + "rounded to BF16 in the products of BF16 and FP8 weights, AVX-512 BF16 dot products where they pay; what it "
                + "costs and gains: Docs/ACCURACY.md, Docs/PERFORMANCE.md). Decoding steps are exact in both. Default: fast "
                + "for generate, chat, serve and bench; exact for logits.", valueName: "exact|fast"))
    var precision: Precision?

    /// The model through the reader stage; with `--mmap` its raw tensors' checksums are checked
    /// while it runs (`Transformer.requireIntactWeights`).
    func open() throws -> CanonicalModel { try ModelLoader.open(model, mapped: mmap) }

    /// The runtime for the loaded `model` in `--precision`, else the command's `precision`; errors
    /// about its tensors name this file.
    func transformer(_ loaded: CanonicalModel, context: Int?, mtp: Bool = false, precision fallback: Precision) throws -> Transformer {
        do {
            let bar = ProgressLine("loading \(model)", after: 1)
            let tr = try Transformer(
                model: loaded, contextLength: context, threads: threads, mtp: mtp, mapped: mmap,
                progress: { bar.update($0, $1, "MiB") })
            bar.finish()
            tr.precision = precision ?? fallback
            return tr
        } catch let e as MalError { throw e.inFile(model) }
    }

    /// The model, its tokenizer and a generation session over them, with `sampling`'s drafts
    /// (`generate`, `chat` and `serve` start the same way). Their prompts default to the fast
    /// precision: what a user sees is text, which BF16 activations change in a small share of
    /// tokens (Docs/ACCURACY.md), and prompts run up to twice as fast where the CPU's BF16 dot
    /// product pays.
    func generator(_ sampling: SamplingOptions) throws -> Generator {
        let loaded = try open()
        let tok = try TokenizerLoader.load(model)  // before the weights load: a missing tokenizer fails fast
        let tr = try transformer(loaded, context: context, mtp: sampling.speculative == .mtp, precision: .fast)
        return try Generator(transformer: tr, tokenizer: tok, modelPath: model, draftTokens: sampling.draftTokens)
    }

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        if let context, context < 1 { throw ValidationError("--context must be at least 1") }
    }
}

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text from a prompt (the default command: `malrun MODEL -p TEXT`).")

    @OptionGroup var options: ModelOptions

    @Option(name: .shortAndLong, help: "Prompt text (the tokenizer's BOS is added when it adds one).")
    var prompt: String = ""

    @Option(name: .short, help: "Tokens to generate.")
    var n: Int = 128

    @OptionGroup var sampling: SamplingOptions

    func validate() throws {
        guard n >= 0 else { throw ValidationError("-n must be >= 0") }
    }

    func run() throws {
        try runReporting {
            let t0 = monotonicSeconds()
            let generator = try options.generator(sampling)
            let tr = generator.transformer, maxPositions = tr.spec.maxPositions
            let loadTime = monotonicSeconds() - t0
            let ids = generator.tokenizer!.encode(prompt, addSpecial: true)
            if ids.isEmpty { throw MalError(.invalidArgument, "the prompt is empty and the tokenizer adds no BOS token") }
            guard ids.count <= tr.contextLength else {
                throw MalError(
                    .invalidArgument,
                    "the prompt (\(ids.count) tokens) is longer than the context length \(tr.contextLength)"
                        + (options.context == nil ? " (--context raises it up to the model's \(maxPositions))" : ""))
            }
            let settings = sampling.settings(maxTokens: n)
            writeOut(prompt)
            let r = try generator.generate(prompt: ids, settings: settings) { _, text in
                writeOut(text)
                return true
            }
            writeOut("\n")
            try tr.requireIntactWeights()
            if r.stop == .contextFull {
                printError(
                    "stopped after \(r.generated.count) tokens: the context length \(tr.contextLength) is full (--context raises it up to \(maxPositions))")
            }
            printError(
                String(
                    format: "load %.2f s | prompt %d tokens, %.1f tok/s | generated %d tokens, %.1f tok/s | %d threads | KV cache %d B/token%@",
                    loadTime, r.promptTokens, r.promptTokensPerSecond, r.generated.count, r.tokensPerSecond, options.threads,
                    tr.kvCacheBytesPerToken,
                    tr.spec.mla.map { $0.absorbed != nil ? " (absorbed MLA: latent cache)" : " (naive MLA)" } ?? ""))
            if let line = sampling.speculativeSummary(r) { printError(line) }
        }
    }
}

struct LogitsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logits",
        abstract: "One forward pass over token ids; writes float32 logits [T, vocab] to a safetensors file.")

    @OptionGroup var options: ModelOptions

    @Option(help: "Token ids, e.g. 1,2,3.")
    var ids: String

    @Option(name: .shortAndLong, help: "Output .safetensors file (tensor `logits`).")
    var output: String

    @Flag(help: "Replace an existing output file (only once the new one is complete).")
    var force = false

    @Flag(
        help: """
            Also write `mtp_logits` [T, vocab] from the multi-token-prediction layer: row i predicts token i+2 from token \
            i+1 and the main hidden state at i (for the last row, the main model's greedy next token).
            """)
    var mtp = false

    func run() throws {
        try runReporting {
            let list = try ids.split(separator: ",").map { s -> Int32 in
                guard let v = Int32(s.trimmingCharacters(in: .whitespaces)) else {
                    throw MalError(.invalidArgument, "'\(s)' is not a token id")
                }
                return v
            }
            guard !list.isEmpty else { throw MalError(.invalidArgument, "no token ids") }
            try refuseOverwritingInput(output: output, inputs: [options.model])
            if !force && fileExists(output) { throw MalError(.invalidArgument, "output exists (use --force to replace it)", file: output) }
            // Exact by default: logits are what a user compares with transformers'.
            let tr = try options.transformer(
                try options.open(), context: max(list.count, options.context ?? 0), mtp: mtp, precision: .exact)
            let logits = try tr.forward(list, allLogits: true, keepHidden: mtp)
            let vocab = logits.count / list.count
            if let bad = NonFiniteScan.firstIndex(logits) {
                printError("warning: the logits hold NaN or infinity (first at position \(bad / vocab), token \(bad % vocab))")
            }
            var tensors: [(name: String, shape: [Int], values: [Float])] = [("logits", [list.count, vocab], logits)]
            if mtp {
                let last = Array(logits[((list.count - 1) * vocab)...])
                let greedy = Int32(last.indices.max { last[$0] < last[$1] }!)
                let r = try tr.mtpForward(next: Array(list.dropFirst()) + [greedy], hidden: tr.finalHidden, allLogits: true)
                tensors.append(("mtp_logits", [list.count, vocab], r.logits))
            }
            try tr.requireIntactWeights()
            try SafetensorsOutput.write(path: output, tensors: tensors, replace: force)
            printError("wrote \(output): " + tensors.map { "\($0.name) [\(list.count), \(vocab)]" }.joined(separator: ", "))
        }
    }
}
