import Foundation
import MalCore
import MalWriters

/// Summaries printed after a model is written.
enum Report {
    /// `extra`: more keys for the JSON document (a command's own facts), so that `--json` prints
    /// exactly one document.
    static func container(_ s: ContainerExport.Summary, path: String, json: Bool, extra: [String: Any] = [:]) {
        var byDType: [String: (raw: Int, stored: Int, n: Int)] = [:]
        for r in s.records where !r.name.hasPrefix("aux/") && r.codec != .alias {
            byDType[r.dtype.rawValue, default: (0, 0, 0)].raw += r.rawBytes
            byDType[r.dtype.rawValue]!.stored += r.storedBytes
            byDType[r.dtype.rawValue]!.n += 1
        }
        let raw = s.records.reduce(0) { $0 + ($1.codec == .alias ? 0 : $1.rawBytes) }
        if json {
            var doc: [String: Any] = [
                "output": path, "file_bytes": s.fileBytes, "source_bytes": s.sourceBytes, "tensor_bytes": raw,
                "seconds": s.seconds, "tensors": s.records.count,
                "by_dtype": byDType.mapValues { ["tensors": $0.n, "raw_bytes": $0.raw, "stored_bytes": $0.stored] },
                "aliases": s.records.filter { $0.codec == .alias }.map(\.name),
            ]
            doc.merge(extra) { _, new in new }
            print(String(decoding: try! JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self))
            return
        }
        print(
            "wrote \(path): \(s.records.count) tensors, \(s.fileBytes) bytes (source \(s.sourceBytes) bytes) in \(fmt(s.seconds)) s, "
                + "\(fmt(Double(s.sourceBytes) / max(s.seconds, 1e-9) / 1e6)) MB/s")
        for (d, v) in byDType.sorted(by: { $0.key < $1.key }) {
            print("  \(d): \(v.n) tensors, \(v.raw) -> \(v.stored) bytes (x\(fmt(Double(v.raw) / Double(max(v.stored, 1)))))")
        }
        let aliases = s.records.filter { $0.codec == .alias }
        if !aliases.isEmpty { print("  shared (stored once): \(aliases.map(\.name).joined(separator: ", "))") }
    }

    static func folder(_ s: HFFolderWriter.Summary, path: String, seconds: Double, json: Bool, extra: [String: Any] = [:]) {
        if json {
            var doc: [String: Any] = ["output": path, "files": s.files, "tensors": s.tensors, "tensor_bytes": s.bytes, "seconds": seconds]
            doc.merge(extra) { _, new in new }
            print(String(decoding: try! JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self))
            return
        }
        print("wrote \(path)/: \(s.tensors) tensors, \(s.bytes) bytes in \(s.files.joined(separator: ", ")) (\(fmt(seconds)) s)")
    }

    static func fmt(_ x: Double) -> String { String(format: "%.2f", x) }
}
