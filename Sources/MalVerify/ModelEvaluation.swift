import CMalKernels
import Foundation
import MalCore
import MalRuntime
import MalTransforms

/// Model-level comparison through the runtime: both models read the same token windows and their
/// next-token distributions are compared position by position.
public struct EvaluationReport: Codable, Sendable {
    public var windows: Int
    public var windowLength: Int
    public var predictedTokens: Int
    public var referencePerplexity: Double
    public var candidatePerplexity: Double
    /// KL(P_reference ‖ P_candidate) of the next-token distributions, nats.
    public var meanKL: Double
    public var maxKL: Double
    /// Share of positions where both models' most likely next token is the same.
    public var top1Agreement: Double
    public var maxAbsLogitDiff: Double
    public var meanAbsLogitDiff: Double
    /// MoE models: routing decisions (token × MoE layer) and the share whose expert set changed.
    public var routerDecisions: Int
    public var routerChanged: Double
    /// Mean KL by position inside a window (index i predicts token i+1).
    public var klByPosition: [Double]
}

public enum ModelEvaluation {
    /// Evaluates on `ids` cut into windows of `window` tokens (stride = window, the last shorter),
    /// each processed from scratch; every window predicts its tokens 1..n-1. This is the procedure
    /// of the sample models' README, so perplexities are comparable with transformers'. The
    /// reference always runs `.exact`; `candidatePrecision` measures what `.fast` costs.
    public static func evaluate(
        reference: CanonicalModel, candidate: CanonicalModel, ids: [Int32], window: Int = 256,
        threads: Int = availableCores, maxWindows: Int? = nil, candidatePrecision: Precision = .exact,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> EvaluationReport {
        let ref = try Transformer(model: reference, contextLength: window, threads: threads)
        let cand = try Transformer(model: candidate, contextLength: window, threads: threads)
        cand.precision = candidatePrecision
        var windows = stride(from: 0, to: ids.count, by: window).map { Array(ids[$0..<min(ids.count, $0 + window)]) }.filter { $0.count > 1 }
        if let m = maxWindows { windows = Array(windows.prefix(m)) }
        var nllRef = 0.0, nllCand = 0.0, count = 0
        var klSum = 0.0, klMax = 0.0, agree = 0, dMax = 0.0, dSum = 0.0, dCount = 0
        var klPos = [Double](repeating: 0, count: window), klPosN = [Int](repeating: 0, count: window)
        var routesRef: [String: [Int32]] = [:], routesCand: [String: [Int32]] = [:]
        ref.onRoute = { l, t, e, _ in routesRef["\(l).\(t)"] = e.sorted() }
        cand.onRoute = { l, t, e, _ in routesCand["\(l).\(t)"] = e.sorted() }
        var decisions = 0, changed = 0
        for (w, win) in windows.enumerated() {
            progress?(w, windows.count)
            routesRef.removeAll(keepingCapacity: true); routesCand.removeAll(keepingCapacity: true)
            ref.reset(); cand.reset()
            let a = try ref.forward(win, allLogits: true), b = try cand.forward(win, allLogits: true)
            let V = a.count / win.count
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    for i in 0..<(win.count - 1) {
                        var na = 0.0, nb = 0.0, kl = 0.0, dm = 0.0, ds = 0.0
                        var xa = 0, xb = 0
                        mal_compare_logits(pa.baseAddress! + i * V, pb.baseAddress! + i * V, V, Int(win[i + 1]), &na, &nb, &kl, &xa, &xb, &dm, &ds)
                        nllRef += na; nllCand += nb
                        klSum += kl; klMax = max(klMax, kl)
                        klPos[i] += kl; klPosN[i] += 1
                        dMax = max(dMax, dm); dSum += ds; dCount += V
                        if xa == xb { agree += 1 }
                        count += 1
                    }
                }
            }
            for (k, e) in routesRef {
                decisions += 1
                if routesCand[k] != e { changed += 1 }
            }
        }
        progress?(windows.count, windows.count)
        return EvaluationReport(
            windows: windows.count, windowLength: window, predictedTokens: count,
            referencePerplexity: exp(nllRef / Double(max(count, 1))), candidatePerplexity: exp(nllCand / Double(max(count, 1))),
            meanKL: klSum / Double(max(count, 1)), maxKL: klMax, top1Agreement: Double(agree) / Double(max(count, 1)),
            maxAbsLogitDiff: dMax, meanAbsLogitDiff: dSum / Double(max(dCount, 1)), routerDecisions: decisions,
            routerChanged: decisions > 0 ? Double(changed) / Double(decisions) : 0,
            klByPosition: zip(klPos, klPosN).prefix { $0.1 > 0 }.map { $0.0 / Double($0.1) })
    }
}
