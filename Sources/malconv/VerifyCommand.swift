import ArgumentParser
import Foundation
import MalCore
import MalReaders
import MalTransforms
import MalVerify

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Compare two models tensor by tensor: max abs error, RMSE, relative RMSE, SNR, cosine, E4M3-bound violations.",
        discussion: """
        A and B are .mal files or HF folders of the same architecture. Tensors are matched by canonical name; \
        block-quantised tensors are dequantised (float32(q) x scale_inv) first. Exit 1 when --max-rel-rmse is \
        exceeded by any tensor or tensors are missing on either side.
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

    func run() throws {
        var report: ModelComparison.Report!
        try runReporting {
            let a = try ModelIO.open(reference).model, b = try ModelIO.open(candidate).model
            guard a.spec.architecture == b.spec.architecture else {
                throw MalError(.invalidArgument, "architectures differ: \(a.spec.architecture.rawValue) vs \(b.spec.architecture.rawValue)")
            }
            let progress = Progress("verify")
            report = try ModelComparison.compare(reference: a, candidate: b, threads: threads, progress: progress.update)
        }
        let failed = report.tensors.filter { maxRelRmse != nil && $0.relativeRMSE > maxRelRmse! }
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            print(String(decoding: try enc.encode(report), as: UTF8.self))
        } else {
            print(render(report))
        }
        if !failed.isEmpty {
            printError("error: \(failed.count) tensors exceed --max-rel-rmse \(maxRelRmse!): \(failed.prefix(5).map(\.name).joined(separator: ", "))")
        }
        if !report.onlyInReference.isEmpty || !report.onlyInCandidate.isEmpty || !report.shapeMismatches.isEmpty {
            printError("error: tensors differ: \(report.onlyInReference.count) only in the reference, \(report.onlyInCandidate.count) only in the candidate, \(report.shapeMismatches.count) with other shapes")
        }
        if !failed.isEmpty || !report.onlyInReference.isEmpty || !report.onlyInCandidate.isEmpty || !report.shapeMismatches.isEmpty {
            throw ExitCode(1)
        }
    }

    func render(_ r: ModelComparison.Report) -> String {
        func f(_ x: Double, _ d: Int = 3) -> String { x.isInfinite ? "inf" : String(format: "%.\(d)g", x) }
        var rows = r.tensors.sorted { $0.snrDB < $1.snrDB }
        if !all { rows = Array(rows.prefix(20)) }
        var o = "tensor".padding(toLength: 44, withPad: " ", startingAt: 0)
            + "dtypes            max|err|    RMSE     relRMSE  SNR dB   cosine     >E4M3 bound\n"
        for m in rows + [r.total] {
            let name = m.name.count > 43 ? String(m.name.prefix(40)) + "..." : m.name
            o += name.padding(toLength: 44, withPad: " ", startingAt: 0)
            o += "\(m.referenceDType)->\(m.candidateDType)".padding(toLength: 16, withPad: " ", startingAt: 0)
            o += "  " + [f(m.maxAbsError), f(m.rmse), f(m.relativeRMSE), f(m.snrDB, 4), f(m.cosine, 6)]
                .map { $0.padding(toLength: 9, withPad: " ", startingAt: 0) }.joined(separator: " ")
            o += "  " + (m.overE4M3Bound.map { String(format: "%.4f%%", $0 * 100) } ?? "-") + "\n"
        }
        if !all && r.tensors.count > 20 { o += "(\(r.tensors.count) tensors compared; the 20 with the lowest SNR shown; --all for every one)\n" }
        return o
    }
}
