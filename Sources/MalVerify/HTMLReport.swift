import Foundation
import MalCore

/// A self-contained HTML page (inline SVG charts, no scripts, no network) of a verification:
/// summary table, per-tensor SNR by layer, KL divergence by token position.
public enum HTMLReport {
    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    static func f(_ x: Double, _ digits: Int = 4) -> String { x.isInfinite ? "∞" : String(format: "%.\(digits)g", x) }

    public static func render(reference: String, candidate: String, tensors: ModelComparison.Report, evaluation e: EvaluationReport?) -> String {
        var rows: [(String, String)] = [
            ("reference", esc(reference)), ("candidate", esc(candidate)),
            ("tensors compared", "\(tensors.tensors.count)"),
            ("total SNR (dB)", f(tensors.total.snrDB)), ("total relative RMSE", f(tensors.total.relativeRMSE)),
            ("max |error|", f(tensors.total.maxAbsError)),
        ]
        if let e {
            rows += [
                ("windows × length", "\(e.windows) × \(e.windowLength) (\(e.predictedTokens) predicted tokens)"),
                ("perplexity reference / candidate", "\(f(e.referencePerplexity, 6)) / \(f(e.candidatePerplexity, 6))"),
                ("KL mean / max (nats)", "\(f(e.meanKL)) / \(f(e.maxKL))"), ("top-1 agreement", f(e.top1Agreement, 6)),
                ("|Δlogit| max / mean", "\(f(e.maxAbsLogitDiff)) / \(f(e.meanAbsLogitDiff))"),
            ]
            if e.routerDecisions > 0 { rows.append(("router decisions changed", "\(f(e.routerChanged * 100))% of \(e.routerDecisions)")) }
        }
        // Chart 1: SNR of every tensor by layer (finite values; identical tensors drawn at the top).
        let points: [(Double, Double, String)] = tensors.tensors.map { t in
            let parts = t.name.split(separator: ".")
            let layer = parts.first == "blk" && parts.count > 1 ? Double(parts[1]) ?? -1 : -1
            return (layer, t.snrDB.isInfinite ? 60 : min(t.snrDB, 60), t.name)
        }
        let snrChart = scatter(
            points: points, xLabel: "layer (−1: embeddings and head)", yLabel: "SNR dB (60 = identical or better)",
            title: "Per-tensor SNR by layer")
        let klChart = line(values: e?.klByPosition ?? [], xLabel: "position in window", yLabel: "mean KL (nats)", title: "KL divergence per token position")
        let table = rows.map { "<tr><th>\($0.0)</th><td>\($0.1)</td></tr>" }.joined(separator: "\n")
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>malconv verify</title>
            <style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
            th{background:#f4f4f4}svg.chart{border:1px solid #ddd;margin:1em 0;display:block}</style></head>
            <body><h1>malconv verify</h1>
            <table>\(table)</table>
            \(snrChart)
            \(klChart)
            </body></html>
            """
    }

    static let W = 720.0, H = 300.0, L = 60.0, B = 40.0, T = 30.0, R = 20.0

    static func frame(_ title: String, _ xLabel: String, _ yLabel: String, xr: (Double, Double), yr: (Double, Double)) -> String {
        var s = "<text x=\"\(W / 2)\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">\(esc(title))</text>"
        s +=
            "<line x1=\"\(L)\" y1=\"\(H - B)\" x2=\"\(W - R)\" y2=\"\(H - B)\" stroke=\"#333\"/>"
            + "<line x1=\"\(L)\" y1=\"\(T)\" x2=\"\(L)\" y2=\"\(H - B)\" stroke=\"#333\"/>"
        s += "<text x=\"\(W / 2)\" y=\"\(H - 6)\" text-anchor=\"middle\" font-size=\"12\">\(esc(xLabel))</text>"
        s += "<text x=\"14\" y=\"\(H / 2)\" transform=\"rotate(-90 14 \(H / 2))\" text-anchor=\"middle\" font-size=\"12\">\(esc(yLabel))</text>"
        for k in 0...4 {
            let v = yr.0 + (yr.1 - yr.0) * Double(k) / 4, y = H - B - (H - B - T) * Double(k) / 4
            s += "<text x=\"\(L - 6)\" y=\"\(y + 4)\" text-anchor=\"end\" font-size=\"10\">\(f(v, 3))</text>"
        }
        for k in 0...4 {
            let v = xr.0 + (xr.1 - xr.0) * Double(k) / 4, x = L + (W - L - R) * Double(k) / 4
            s += "<text x=\"\(x)\" y=\"\(H - B + 14)\" text-anchor=\"middle\" font-size=\"10\">\(f(v, 3))</text>"
        }
        return s
    }

    static func scatter(points: [(Double, Double, String)], xLabel: String, yLabel: String, title: String) -> String {
        let xs = points.map(\.0), ys = points.map(\.1)
        let xr = (min(xs.min() ?? 0, -1), max(xs.max() ?? 1, 1)), yr = (0.0, max(ys.max() ?? 1, 1))
        var s = "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(W))\" height=\"\(Int(H))\">"
        s += frame(title, xLabel, yLabel, xr: xr, yr: yr)
        for (x, y, name) in points {
            let px = L + (x - xr.0) / (xr.1 - xr.0) * (W - L - R), py = H - B - (y - yr.0) / (yr.1 - yr.0) * (H - B - T)
            s += "<circle cx=\"\(px)\" cy=\"\(py)\" r=\"3\" fill=\"#2a6fdb\" fill-opacity=\"0.6\"><title>\(esc(name)): \(f(y)) dB</title></circle>"
        }
        return s + "</svg>"
    }

    static func line(values: [Double], xLabel: String, yLabel: String, title: String) -> String {
        let xr = (0.0, Double(max(values.count - 1, 1))), yr = (0.0, max(values.max() ?? 1e-9, 1e-9))
        var s = "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(W))\" height=\"\(Int(H))\">"
        s += frame(title, xLabel, yLabel, xr: xr, yr: yr)
        let pts = values.enumerated().map { i, v in
            "\(L + Double(i) / (xr.1 - xr.0) * (W - L - R)),\(H - B - (v - yr.0) / (yr.1 - yr.0) * (H - B - T))"
        }.joined(separator: " ")
        if values.isEmpty {
            s += "<text x=\"\(W / 2)\" y=\"\(H / 2)\" text-anchor=\"middle\" font-size=\"12\">no model-level evaluation (run verify with --text)</text>"
        } else {
            s += "<polyline fill=\"none\" stroke=\"#d9480f\" stroke-width=\"1.5\" points=\"\(pts)\"/>"
        }
        return s + "</svg>"
    }
}
