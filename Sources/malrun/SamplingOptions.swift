import ArgumentParser
import Foundation
import MalRuntime

/// `--speculative`: where drafts come from.
enum SpeculativeMode: String, ExpressibleByArgument, CaseIterable { case mtp }
extension Precision: ExpressibleByArgument {}

/// Sampling and speculative-decoding options, the same for `generate`, `chat` and `serve`.
struct SamplingOptions: ParsableArguments {
    @Option(help: "Temperature (0 = greedy).")
    var temperature: Float = 0

    @Option(help: "Keep the K most likely tokens (0 = all).")
    var topK: Int = 0

    @Option(help: "Nucleus sampling: smallest set with this probability mass.")
    var topP: Float = 1

    @Option(help: "Drop tokens less likely than this fraction of the most likely one.")
    var minP: Float = 0

    @Option(help: "Repetition penalty (1 = none).")
    var repeatPenalty: Float = 1

    @Option(help: "Random seed for sampling.")
    var seed: UInt64 = 0

    @Option(help: "Speculative decoding: mtp drafts with the model's multi-token-prediction layer (DeepSeek-V3); the output is that of plain decoding.")
    var speculative: SpeculativeMode?

    @Option(help: "With --speculative mtp: drafts per step (the MTP layer chained on its own output beyond 1).")
    var draft: Int = 1

    func validate() throws {
        guard temperature >= 0 else { throw ValidationError("--temperature must be >= 0 (0 is greedy)") }
        guard topK >= 0 else { throw ValidationError("--top-k must be >= 0 (0 keeps every token)") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        guard minP >= 0, minP < 1 else { throw ValidationError("--min-p must be in [0, 1)") }
        guard repeatPenalty > 0 else { throw ValidationError("--repeat-penalty must be > 0") }
        guard (1...3).contains(draft) else {
            throw ValidationError("--draft must be in 1...3 (a verify step of up to 4 tokens keeps the one-token kernels, so the output is exact)")
        }
    }

    /// MTP drafts per step (0 without `--speculative`).
    var draftTokens: Int { speculative == .mtp ? draft : 0 }

    func settings(maxTokens: Int) -> Generator.Settings {
        var s = Generator.Settings()
        s.maxTokens = maxTokens
        s.temperature = temperature
        s.topK = topK
        s.topP = topP
        s.minP = minP
        s.repetitionPenalty = repeatPenalty
        s.seed = seed
        return s
    }

    /// The acceptance line printed after speculative decoding.
    func speculativeSummary(_ r: Generator.Result) -> String? {
        guard speculative != nil else { return nil }
        return String(
            format: "speculative (mtp, %d draft%@): %d of %d drafts accepted (%.1f%%), %.2f tokens per main-model step",
            draft, draft == 1 ? "" : "s", r.accepted, r.drafted, 100 * r.acceptanceRate, r.tokensPerStep)
    }
}
