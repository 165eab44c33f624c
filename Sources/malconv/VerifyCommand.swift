import ArgumentParser
import Foundation
import MalArchitectures
import MalCommandLine
import MalCore
import MalReaders
import MalTransforms
import MalRuntime
import MalVerify
import MalWriters

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Compare two models tensor by tensor: max abs error, RMSE, relative RMSE, SNR, cosine, E4M3-bound violations.",
        discussion: """
            A and B are .mal files or HF folders of the same architecture. Tensors are matched by canonical name; \
            block-quantised tensors are dequantised (float32(q) x scale_inv) first. With --text (or --prompts) both models \
            also run through malrun on that text (tokenised once with the reference's tokenizer, windows of 256 tokens, \
            each from scratch, as the samples' README computes perplexity): perplexity of each, mean and max KL divergence \
            of the candidate's next-token distribution from the reference's, top-1 agreement, max and mean |Δlogit|, and \
            for MoE models the share of changed router decisions. Exit 1 when a threshold is crossed or tensors differ.
            """)

    @Argument(help: "Reference model (.mal or HF folder).")
    var reference: String

    @Argument(help: "Candidate model (.mal or HF folder).")
    var candidate: String

    @Option(help: "Fail when a tensor's relative RMSE exceeds this.")
    var maxRelRmse: Double?

    @Option(help: "Threads (default: all cores).")
    var threads: Int = availableCores

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Flag(help: "Show every tensor, not only the 20 worst.")
    var all = false

    @Option(help: "Evaluate both models on this text (e.g. Samples/heldout.txt).")
    var text: String?

    @Option(help: "Evaluate both models on these prompts (one per line, each its own window).")
    var prompts: String?

    @Option(help: "Window length in tokens for --text.")
    var window: Int = 256

    @Option(
        help: ArgumentHelp(
            "Precision of the candidate's forward passes in --text/--prompts (the reference runs exact): exact (float32 "
                + "activations) or fast (BF16 activations in BF16/FP8 products, what `malrun generate` runs by default).",
            valueName: "exact|fast"))
    var precision: Precision = .exact

    @Option(help: "Evaluate only the first N windows (quick checks).")
    var maxWindows: Int?

    @Option(help: "Fail when the mean KL divergence exceeds this (nats).")
    var maxKl: Double?

    @Option(help: "Fail when top-1 agreement is below this (0..1).")
    var minTop1: Double?

    @Option(name: .customLong("report"), help: "Write a self-contained HTML report (SVG charts) into this folder (index.html).")
    var reportDir: String?

    @Flag(help: "Replace an existing report (only once the new one is complete).")
    var force = false

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard window >= 2 else { throw ValidationError("--window must be at least 2 tokens") }
        if let maxWindows, maxWindows < 1 { throw ValidationError("--max-windows must be at least 1") }
        if let minTop1, !(0...1).contains(minTop1) { throw ValidationError("--min-top1 must be in 0...1") }
        if let v = maxKl, !(v >= 0) { throw ValidationError("--max-kl must be >= 0") }
        if let v = maxRelRmse, !(v >= 0) { throw ValidationError("--max-rel-rmse must be >= 0") }
        guard text == nil || prompts == nil else { throw ValidationError("give at most one of --text and --prompts") }
        guard (maxKl == nil && minTop1 == nil && maxWindows == nil) || text != nil || prompts != nil else {
            throw ValidationError("--max-kl, --min-top1 and --max-windows need --text or --prompts")
        }
    }

    struct Output: Encodable {
        var tensors: ModelComparison.Report
        var evaluation: EvaluationReport?
    }

    func run() throws {
        var tensorReport: ModelComparison.Report!
        var evaluation: EvaluationReport?
        try runReporting {
            let a = try ModelIO.open(reference).model, b = try ModelIO.open(candidate).model
            guard ArchitectureRegistry.same(a.spec, b.spec) else {
                throw MalError(.invalidArgument, "architectures differ: \(a.spec.modelType) vs \(b.spec.modelType)")
            }
            let progress = ProgressLine("verify")
            tensorReport = try ModelComparison.compare(reference: a, candidate: b, threads: threads, progress: progress.update)
            if text != nil || prompts != nil {
                let tok = try TokenizerLoader.load(reference)
                let evalProgress = ProgressLine("evaluate")
                if let text {
                    guard let data = FileManager.default.contents(atPath: text) else { throw MalError(.fileNotFound, "cannot read", file: text) }
                    let ids = tok.encode(String(decoding: data, as: UTF8.self), addSpecial: true)
                    evaluation = try ModelEvaluation.evaluate(
                        reference: a, candidate: b, ids: ids, window: window, threads: threads,
                        maxWindows: maxWindows, candidatePrecision: precision, progress: { evalProgress.update($0, $1, "") })
                } else if let prompts {
                    guard let data = FileManager.default.contents(atPath: prompts) else { throw MalError(.fileNotFound, "cannot read", file: prompts) }
                    let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").map { tok.encode(String($0), addSpecial: true) }
                    evaluation = try ModelEvaluation.evaluate(
                        reference: a, candidate: b, prompts: lines, threads: threads, candidatePrecision: precision,
                        progress: { evalProgress.update($0, $1, "") })
                }
            }
            if let reportDir {
                let html = HTMLReport.render(reference: reference, candidate: candidate, tensors: tensorReport, evaluation: evaluation)
                try writeReport(html, folder: reportDir)
                printError("wrote \(reportDir)/index.html")
            }
        }
        let report = tensorReport!
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            print(String(decoding: try enc.encode(Output(tensors: report, evaluation: evaluation)), as: UTF8.self))
        } else {
            print(render(report))
            if let e = evaluation {
                print(
                    String(
                        format: "model: %d windows of %d tokens, %d predicted | perplexity %.3f (reference) vs %.3f (candidate), %+.3f%%",
                        e.windows, e.windowLength, e.predictedTokens, e.referencePerplexity, e.candidatePerplexity,
                        (e.candidatePerplexity / e.referencePerplexity - 1) * 100))
                print(
                    String(
                        format: "       KL mean %.3g max %.3g nats | top-1 agreement %.4f | |Δlogit| max %.4g mean %.3g%@", e.meanKL, e.maxKL,
                        e.top1Agreement, e.maxAbsLogitDiff, e.meanAbsLogitDiff,
                        e.routerDecisions > 0 ? String(format: " | router decisions changed %.4f%% of %d", e.routerChanged * 100, e.routerDecisions) : ""))
            }
        }
        let failures = VerifyGates(maxRelativeRMSE: maxRelRmse, maxMeanKL: maxKl, minTop1Agreement: minTop1).failures(report, evaluation)
        for f in failures { printError("error: \(f)") }
        if !failures.isEmpty {
            throw ExitCode(1)
        }
    }

    func render(_ r: ModelComparison.Report) -> String {
        func f(_ x: Double, _ d: Int = 3) -> String { x.isInfinite ? "inf" : String(format: "%.\(d)g", x) }
        var rows = r.tensors.sorted { $0.snrDB < $1.snrDB }
        if !all { rows = Array(rows.prefix(20)) }
        var o =
            "tensor".padding(toLength: 44, withPad: " ", startingAt: 0)
            + "dtypes            max|err|    RMSE     relRMSE  SNR dB   cosine     >E4M3 bound\n"
        for m in rows + [r.total] {
            let name = m.name.count > 43 ? String(m.name.prefix(40)) + "..." : m.name
            o += name.padding(toLength: 44, withPad: " ", startingAt: 0)
            o += "\(m.referenceDType)->\(m.candidateDType)".padding(toLength: 16, withPad: " ", startingAt: 0)
            o +=
                "  "
                + [f(m.maxAbsError), f(m.rmse), f(m.relativeRMSE), f(m.snrDB, 4), f(m.cosine, 6)]
                .map { $0.padding(toLength: 9, withPad: " ", startingAt: 0) }.joined(separator: " ")
            o += "  " + (m.overE4M3Bound.map { String(format: "%.4f%%", $0 * 100) } ?? "-") + "\n"
        }
        if !all && r.tensors.count > 20 { o += "(\(r.tensors.count) tensors compared; the 20 with the lowest SNR shown; --all for every one)\n" }
        return o
    }

    /// `folder/index.html`, written atomically (created with the folder if missing; an existing
    /// report is replaced only with `--force`).
    func writeReport(_ html: String, folder: String) throws {
        if !isDirectory(folder) {
            guard (try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)) != nil else {
                throw MalError(.ioError, "cannot create the report folder", file: folder)
            }
        }
        let f = try OutputFile(path: joinPath(folder, "index.html"), replace: force)
        do {
            try f.write(Array(html.utf8))
            try f.commit()
        } catch {
            f.abandon()
            throw error
        }
    }
}
