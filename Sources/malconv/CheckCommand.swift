import ArgumentParser
import Foundation
import MalCore
import MalReaders

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
    }

    func run() throws {
        var result = Result(file: file, ok: false, tensors: 0, chunks: 0, bytes: 0)
        do {
            let mal = try MalFile(path: file)
            result.tensors = mal.entries.count
            result.chunks = mal.entries.reduce(0) { $0 + $1.chunks.count }
            result.bytes = mal.mapping.size
            let progress = Progress("check")
            if let e = mal.verifyAll(threads: threads, progress: { progress.update($0, $1, "") }) {
                throw e
            }
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
            print("\(file): ok (\(result.tensors) tensors, \(result.chunks) chunks, \(result.bytes) bytes, all checksums match)")
        } else {
            printError("error: \(result.error ?? "")")
        }
        if !result.ok { throw ExitCode(1) }
    }
}
