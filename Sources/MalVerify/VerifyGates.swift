import MalCore
import MalRuntime

/// The thresholds `malconv verify` fails on (`--max-rel-rmse`, `--max-kl`, `--min-top1`), and
/// the structural differences it always fails on (tensors missing on either side or reshaped).
public struct VerifyGates: Sendable {
    public var maxRelativeRMSE: Double?
    public var maxMeanKL: Double?
    public var minTop1Agreement: Double?

    public init(maxRelativeRMSE: Double? = nil, maxMeanKL: Double? = nil, minTop1Agreement: Double? = nil) {
        self.maxRelativeRMSE = maxRelativeRMSE
        self.maxMeanKL = maxMeanKL
        self.minTop1Agreement = minTop1Agreement
    }

    /// One sentence per gate the comparison fails, in the order they are checked; empty: it passes.
    public func failures(_ report: ModelComparison.Report, _ evaluation: EvaluationReport?) -> [String] {
        var out: [String] = []
        if let e = evaluation, let m = maxMeanKL, e.meanKL > m { out.append("mean KL \(e.meanKL) exceeds --max-kl \(m)") }
        if let e = evaluation, let m = minTop1Agreement, e.top1Agreement < m {
            out.append("top-1 agreement \(e.top1Agreement) is below --min-top1 \(m)")
        }
        if let m = maxRelativeRMSE {
            let failed = report.tensors.filter { $0.relativeRMSE > m }
            if !failed.isEmpty {
                out.append("\(failed.count) tensors exceed --max-rel-rmse \(m): \(failed.prefix(5).map(\.name).joined(separator: ", "))")
            }
        }
        if !report.onlyInReference.isEmpty || !report.onlyInCandidate.isEmpty || !report.shapeMismatches.isEmpty {
            out.append(
                "tensors differ: \(report.onlyInReference.count) only in the reference, \(report.onlyInCandidate.count) only in the "
                    + "candidate, \(report.shapeMismatches.count) with other shapes")
        }
        return out
    }
}

extension ModelEvaluation {
    /// Evaluates each prompt as its own window: prompts are padded (with their last token) to the
    /// longest, so no window straddles two; prompts of one token predict nothing and are skipped.
    public static func evaluate(
        reference: CanonicalModel, candidate: CanonicalModel, prompts: [[Int32]], threads: Int = availableCores,
        candidatePrecision: Precision = .exact, progress: ((Int, Int) -> Void)? = nil
    ) throws -> EvaluationReport {
        let longest = prompts.map(\.count).max() ?? 1
        var ids: [Int32] = []
        for p in prompts where p.count > 1 { ids += p + [Int32](repeating: p.last!, count: longest - p.count) }
        return try evaluate(
            reference: reference, candidate: candidate, ids: ids, window: longest, threads: threads,
            candidatePrecision: candidatePrecision, progress: progress)
    }
}
