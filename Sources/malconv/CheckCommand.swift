import ArgumentParser
import Foundation
import MalCommandLine
import MalCore
import MalReaders
import MalWriters

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate a .mal file: structure, metadata, table and every chunk checksum.",
        discussion: "Exit status 0 when the file is intact, 1 at the first problem (its tensor, chunk and byte offset are named).")

    @Argument(help: "A .mal file.")
    var file: String

    @Option(help: "Threads for decoding (default: all cores).")
    var threads: Int = availableCores

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
    }

    struct Result: Encodable {
        var file: String
        var ok: Bool
        var tensors: Int
        var chunks: Int
        var bytes: Int
        var error: String?
        var errorKind: String?
        var tensor: String?
        var offset: Int?
        /// Uncompressed tensor bytes decoded and verified, and how long it took.
        var decodedBytes: Int = 0
        var seconds: Double = 0
        var threads: Int = 1
    }

    func run() throws {
        var result = Result(file: file, ok: false, tensors: 0, chunks: 0, bytes: 0)
        do {
            let mal = try MalFile(path: file)
            result.tensors = mal.entries.count
            result.chunks = mal.entries.reduce(0) { $0 + $1.chunks.count }
            result.bytes = mal.mapping.size
            let progress = ProgressLine("check")
            let start = monotonicSeconds()
            if let e = mal.verifyAll(threads: threads, progress: { progress.update($0, $1, "") }) {
                throw e
            }
            result.seconds = monotonicSeconds() - start
            result.decodedBytes = mal.entries.filter { $0.codec != .alias }.reduce(0) { $0 + Int($1.rawLength) }
            result.threads = threads
            result.ok = true
        } catch let e as MalError {
            result.error = e.description
            result.errorKind = e.kind.rawValue
            result.tensor = e.tensor
            result.offset = e.offset
        }
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(result), as: UTF8.self))
        } else if result.ok {
            print(
                "\(file): ok (\(result.tensors) tensors, \(result.chunks) chunks, \(result.bytes) bytes, all checksums match; "
                    + "decoded \(result.decodedBytes) bytes in \(String(format: "%.3f", result.seconds)) s = "
                    + "\(String(format: "%.2f", Double(result.decodedBytes) / max(result.seconds, 1e-9) / 1e9)) GB/s on \(threads) threads)")
        } else {
            printError("error: \(result.error ?? "")")
        }
        if !result.ok { throw ExitCode(1) }
    }
}
