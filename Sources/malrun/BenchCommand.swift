import ArgumentParser
import Foundation
import MalCommandLine
import MalCore
import MalRuntime

/// `llama-bench`-style measurements: prompt processing of `-p` tokens and generation of `-n`
/// tokens from an empty context, repeated, mean ± standard deviation of tokens/s.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure prompt processing and generation speed (llama-bench style; --json uses its field names).")

    @OptionGroup var options: ModelOptions

    @Option(name: .short, help: "Prompt tokens (0 skips the test).")
    var p: Int = 128

    @Option(name: .short, help: "Generated tokens (0 skips the test).")
    var n: Int = 64

    @Option(name: .short, help: "Context tokens processed (untimed) before each test, like llama-bench's -d.")
    var d: Int = 0

    @Option(help: "Repetitions.")
    var repetitions: Int = 5

    @Option(help: "Seed of the random token ids (prompts, context and each generation step).")
    var seed: UInt64 = 1

    @Flag(help: "Print a JSON list of records with llama-bench's field names.")
    var json = false

    @Option(
        help:
            ArgumentHelp(
                "mtp: also measure generation with MTP drafting (greedy, from a 16-token random prompt) beside the same without, "
                    + "and the cost of verifying k + 1 tokens in one step against one."))
    var speculative: SpeculativeMode?

    @Option(help: "With --speculative mtp: drafts per step.")
    var draft: Int = 1

    func validate() throws {
        guard p >= 0, n >= 0 else { throw ValidationError("-p and -n must be >= 0 (0 skips that test)") }
        guard d >= 0 else { throw ValidationError("-d must be >= 0") }
        guard p + n > 0 else { throw ValidationError("-p 0 and -n 0 leave nothing to measure") }
        guard repetitions >= 1 else { throw ValidationError("--repetitions must be at least 1") }
        guard (1...3).contains(draft) else {
            throw ValidationError("--draft must be in 1...3 (a verify step of up to 4 tokens keeps the one-token kernels, so the output is exact)")
        }
        if speculative != nil && n == 0 { throw ValidationError("--speculative measures generation: give -n > 0") }
    }

    /// One test's result; the fields are llama-bench's (`-o json`), plus `weight_bytes_per_token`.
    struct Record: Codable {
        var test_time: String
        var cpu_info: String
        var backends = "CPU"
        var model_filename: String
        var model_type: String
        var model_size: Int
        var model_n_params: Int
        var n_threads: Int
        var n_batch: Int
        var n_depth: Int
        var n_prompt: Int
        var n_gen: Int
        var avg_ns: Int
        var stddev_ns: Int
        var avg_ts: Double
        var stddev_ts: Double
        var samples_ns: [Int]
        var samples_ts: [Double]
        var weight_bytes_per_token: Int
        /// `--precision` of the prompt products, and whether `fast` multiplies with BF16 dot products
        /// on this CPU (beside llama-bench's fields).
        var precision: String
        var bf16_dot_products: Bool
        /// Seconds to load the weights, and then to finish checking mapped raw weights' checksums
        /// (`--mmap`; 0 otherwise), before any test (beside llama-bench's fields).
        var load_seconds: Double
        var check_seconds: Double
        /// `--speculative` records (beside llama-bench's fields): the drafting source and drafts
        /// per step (0: the same generation without drafting), the share of drafts accepted,
        /// generated tokens per main-model step, and the time of one main step over k + 1 tokens
        /// (k = n_draft) divided by that of a 1-token step.
        var speculative: String? = nil
        var n_draft: Int? = nil
        var draft_acceptance: Double? = nil
        var tokens_per_main_step: Double? = nil
        var verify_step_ratio: Double? = nil
    }

    func run() throws {
        try runReporting {
            let records = try measure()
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try enc.encode(records), as: UTF8.self))
            } else {
                printTable(records)
            }
        }
    }

    /// The tests asked for, as llama-bench records.
    func measure() throws -> [Record] {
        let t0 = monotonicSeconds()
        let model = try options.open()
        let tr = try options.transformer(
            model, context: max(d + max(p, n), 1) + (speculative == nil ? 0 : 16 + draft + 1),
            mtp: speculative == .mtp, precision: .fast)  // as generate, whose speed it measures
        let t1 = monotonicSeconds()
        try tr.requireIntactWeights()  // a mapped model's check must not share the timed cores
        let loadSeconds = t1 - t0, checkSeconds = monotonicSeconds() - t1
        guard d + max(p, n) <= tr.contextLength else {
            throw MalError(.invalidArgument, "-d \(d) plus the longest test (\(max(p, n)) tokens) exceed the context length \(tr.contextLength)")
        }
        var rng = SplitMix64(seed: seed)  // seeded: a run is reproducible
        let types = Set(model.weightTensors.filter { $0.shape.count == 2 }.map(\.dtype.rawValue)).sorted()
        let startTime = ISO8601DateFormatter().string(from: Date()), cpuInfo = Self.cpuModelName()
        func record(_ s: ThroughputSamples, prompt: Int, gen: Int, depth: Int) -> Record {
            Record(
                test_time: startTime, cpu_info: cpuInfo, model_filename: options.model,
                model_type: "\(model.spec.modelType) \(types.joined(separator: "+"))", model_size: model.weightBytes,
                model_n_params: model.parameterCount ?? 0, n_threads: options.threads, n_batch: max(prompt, 1), n_depth: depth,
                n_prompt: prompt, n_gen: gen, avg_ns: s.meanNanoseconds, stddev_ns: s.deviationNanoseconds, avg_ts: s.mean,
                stddev_ts: s.standardDeviation, samples_ns: s.nanoseconds, samples_ts: s.tokensPerSecond,
                weight_bytes_per_token: tr.weightBytesPerToken, precision: tr.precision.rawValue,
                bf16_dot_products: tr.precision == .fast && Precision.dotProductsPay, load_seconds: loadSeconds,
                check_seconds: checkSeconds)
        }
        var records: [Record] = []
        if p > 0 {
            records.append(
                record(
                    try Throughput.measure(tr, prompt: p, generate: 0, depth: d, repetitions: repetitions, random: &rng),
                    prompt: p, gen: 0, depth: d))
        }
        if n > 0 {
            records.append(
                record(
                    try Throughput.measure(tr, prompt: 0, generate: n, depth: d, repetitions: repetitions, random: &rng),
                    prompt: 0, gen: n, depth: d))
        }
        guard speculative == .mtp else { return records }
        let tok = try? TokenizerLoader.load(options.model)  // random-weight models have none
        let prompt = (0..<16).map { _ in Int32.random(in: 0..<Int32(model.spec.vocabSize), using: &rng) }
        let ratio = try Throughput.verifyStepRatio(tr, k: draft, repetitions: max(repetitions, 5) * 4)
        for k in [0, draft] {
            let r = try Throughput.speculativeGeneration(
                tr, tokenizer: tok, path: options.model, prompt: prompt, n: n, drafts: k,
                repetitions: repetitions)
            var rec = record(r.samples, prompt: 0, gen: n, depth: 16)
            rec.speculative = "mtp"
            rec.n_draft = k
            rec.draft_acceptance = k > 0 ? r.acceptance : nil
            rec.tokens_per_main_step = r.tokensPerStep
            rec.verify_step_ratio = k > 0 ? ratio : nil
            records.append(rec)
        }
        return records
    }

    /// Generation reads every weight once per token: t/s × bytes is the bandwidth it used.
    func printTable(_ records: [Record]) {
        print("| model | size | read/token | params | threads | test | t/s | weights read |")
        print("|---|---|---|---|---|---|---|---|")
        for r in records {
            var test = (r.n_prompt > 0 ? "pp\(r.n_prompt)" : "tg\(r.n_gen)") + (r.n_depth > 0 ? " @ d\(r.n_depth)" : "")
            if r.n_prompt > 0 { test += " (\(r.precision)\(r.bf16_dot_products ? ", BF16 dot" : ""))" }
            if let k = r.n_draft {
                test +=
                    k == 0
                    ? " greedy, no drafts"
                    : String(
                        format: " greedy, mtp x%d: %.1f%% accepted, %.2f tok/step, verify %d+1 = %.2fx a 1-token step",
                        k, 100 * (r.draft_acceptance ?? 0), r.tokens_per_main_step ?? 0, k, r.verify_step_ratio ?? 0)
            }
            let read = r.n_prompt > 0 ? "-" : String(format: "%.1f GB/s", r.avg_ts * Double(r.weight_bytes_per_token) / 1e9)
            print(
                String(
                    format: "| %@ | %.2f MiB | %.2f MiB | %.2f M | %d | %@ | %.2f ± %.2f | %@ |", r.model_type, Double(r.model_size) / 1048576,
                    Double(r.weight_bytes_per_token) / 1048576,
                    Double(r.model_n_params) / 1e6, r.n_threads, test, r.avg_ts, r.stddev_ts, read))
        }
        if let r = records.first {
            print(
                String(format: "\nload %.2f s", r.load_seconds)
                    + (options.mmap ? String(format: ", mapped weights' checksums checked in %.2f s more", r.check_seconds) : ""))
        }
    }

    /// The processor's name as llama-bench reports it (`model name` in /proc/cpuinfo on Linux).
    static func cpuModelName() -> String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown" }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") { return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces) }
        }
        return "unknown"
    }
}
