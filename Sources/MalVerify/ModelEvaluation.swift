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
    /// of the sample models' README, so perplexities are comparable with transformers'.
    public static func evaluate(reference: CanonicalModel, candidate: CanonicalModel, ids: [Int32], window: Int = 256,
                                threads: Int = availableCores, maxWindows: Int? = nil,
                                progress: ((Int, Int) -> Void)? = nil) throws -> EvaluationReport {
        let ref = try Transformer(model: reference, contextLength: window, threads: threads)
        let cand = try Transformer(model: candidate, contextLength: window, threads: threads)
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
            for i in 0..<(win.count - 1) {
                let target = Int(win[i + 1])
                let ra = a[(i * V)..<((i + 1) * V)], rb = b[(i * V)..<((i + 1) * V)]
                let (la, ma) = logSumExp(ra), (lb, mb) = logSumExp(rb)
                nllRef += la - Double(ra[ra.startIndex + target])
                nllCand += lb - Double(rb[rb.startIndex + target])
                var kl = 0.0
                var ia = ra.startIndex, ib = rb.startIndex
                for _ in 0..<V {
                    let lpa = Double(ra[ia]) - la, lpb = Double(rb[ib]) - lb
                    kl += exp(lpa) * (lpa - lpb)
                    let d = abs(Double(ra[ia]) - Double(rb[ib]))
                    dMax = max(dMax, d); dSum += d
                    ia += 1; ib += 1
                }
                kl = max(kl, 0)
                dCount += V
                klSum += kl; klMax = max(klMax, kl)
                klPos[i] += kl; klPosN[i] += 1
                if ma == mb { agree += 1 }
                count += 1
            }
            for (k, e) in routesRef {
                decisions += 1
                if routesCand[k] != e { changed += 1 }
            }
        }
        progress?(windows.count, windows.count)
        return EvaluationReport(windows: windows.count, windowLength: window, predictedTokens: count,
                                referencePerplexity: exp(nllRef / Double(max(count, 1))), candidatePerplexity: exp(nllCand / Double(max(count, 1))),
                                meanKL: klSum / Double(max(count, 1)), maxKL: klMax, top1Agreement: Double(agree) / Double(max(count, 1)),
                                maxAbsLogitDiff: dMax, meanAbsLogitDiff: dSum / Double(max(dCount, 1)), routerDecisions: decisions,
                                routerChanged: decisions > 0 ? Double(changed) / Double(decisions) : 0,
                                klByPosition: zip(klPos, klPosN).prefix { $0.1 > 0 }.map { $0.0 / Double($0.1) })
    }

    /// log Σ exp(x) in double precision, and the index of the maximum (first on ties).
    static func logSumExp(_ x: ArraySlice<Float>) -> (Double, Int) {
        var m = -Float.infinity, arg = 0
        for (k, v) in x.enumerated() where v > m { m = v; arg = k }
        var s = 0.0
        for v in x { s += exp(Double(v - m)) }
        return (Double(m) + log(s), arg)
    }
}
