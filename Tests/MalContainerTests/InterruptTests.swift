import Foundation
import MalCore
import MalReaders
import MalTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Every command that writes is killed at a dozen moments of its run, alternately with SIGINT and
/// SIGKILL, with and without an existing output it replaces (`--force`). Afterwards the destination
/// holds nothing, or (when one existed, or the command finished) a complete output that the readers
/// accept; after SIGINT no temporary file or folder is left beside it.
@Suite("Interrupted writes", .serialized) struct InterruptTests {
    /// A writing command: its tool and arguments for output `out`, and how to check a complete output.
    struct Writer: CustomStringConvertible, Sendable {
        var name: String
        var tool: String
        var args: @Sendable (_ out: String, _ prepared: String) -> [String]
        var output: String
        var check: @Sendable (_ path: String) throws -> Void
        var description: String { name }
    }

    static func mal(_ p: String) throws {
        let m = try MalFile(path: p)
        if let e = m.verifyAll(threads: 1) { throw e }
    }

    static func folder(_ p: String) throws {
        _ = try SafetensorsCheckpoint(path: p)
        guard fileExists(p + "/config.json") else { throw MalError(.fileNotFound, "no config.json", file: p) }
    }

    static let writers: [Writer] = [
        Writer(
            name: "convert to .mal", tool: "malconv", args: { out, _ in ["convert", Fixtures.model("deepseek-v3-tiny"), "-o", out] },
            output: "out.mal", check: mal),
        Writer(
            name: "convert to HF shards", tool: "malconv",
            args: { out, _ in ["convert", Fixtures.model("llama3-tiny"), "-o", out, "--max-shard-size", "100KB"] }, output: "out", check: folder),
        Writer(
            name: "quantize", tool: "malconv", args: { out, _ in ["quantize", Fixtures.model("deepseek-v3-tiny"), "-o", out] },
            output: "out.mal", check: mal),
        Writer(
            name: "dequantize", tool: "malconv", args: { out, _ in ["dequantize", Fixtures.model("deepseek-v3-fp8"), "-o", out] },
            output: "out", check: folder),
        Writer(name: "absorb-mla", tool: "malconv", args: { ["absorb-mla", $1, "-o", $0] }, output: "out.mal", check: mal),
        Writer(name: "export", tool: "malconv", args: { ["export", $1, "-o", $0] }, output: "out", check: folder),
        Writer(
            name: "logits", tool: "malrun", args: { ["logits", $1, "--ids", "1,2,3,4,5,6,7,8", "-o", $0] },
            output: "out.safetensors",
            check: { p in
                guard try SafetensorsFile(path: p).info("logits") != nil else { throw MalError(.notFound, "no logits", file: p) }
            }),
        Writer(
            name: "verify --report", tool: "malconv", args: { ["verify", Fixtures.model("deepseek-v3-tiny"), $1, "--report", $0] },
            output: "report",
            check: { p in
                // The report folder itself is made at the start; what must be whole is its page.
                guard let html = try? String(contentsOfFile: p + "/index.html", encoding: .utf8) else { return }
                guard html.hasSuffix("</html>\n") || html.hasSuffix("</html>") else {
                    throw MalError(.corruptStructure, "partial report", file: p)
                }
            }),
    ]

    /// Starts `tool args`, waits `delay` seconds, sends `signal` (unless it already ended) and returns
    /// the exit status and whether the signal was sent before it ended.
    static func run(_ tool: String, _ args: [String], killAfter delay: Double?, signal: Int32) throws -> (status: Int32, killed: Bool) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(tool)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        var killed = false
        if let delay {
            usleep(UInt32(delay * 1e6))
            if p.isRunning { killed = kill(p.processIdentifier, signal) == 0 }
        }
        p.waitUntilExit()
        return (p.terminationStatus, killed)
    }

    static func leftovers(_ dir: String) -> [String] {
        ((try? listDirectory(dir)) ?? []).filter { $0.contains(".tmp-") || $0.contains(".old-") }
    }

    @Test("a dozen interruptions leave nothing partial", arguments: writers)
    func interrupted(_ w: Writer) throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        // The input of the commands that read a container.
        let prepared = dir + "/in.mal"
        #expect(try InterruptTests.run("malconv", ["convert", Fixtures.model("deepseek-v3-tiny"), "-o", prepared], killAfter: nil, signal: 0).status == 0)
        let out = dir + "/" + w.output
        // How long an uninterrupted run takes: the moments are spread over it.
        let start = Date()
        let full = try InterruptTests.run(w.tool, w.args(out, prepared), killAfter: nil, signal: 0)
        let seconds = Date().timeIntervalSince(start)
        #expect(full.status == 0, "\(w.name) failed uninterrupted")
        try w.check(out)
        for k in 1...12 {
            let signal = k % 2 == 0 ? SIGINT : SIGKILL
            let replacing = (k / 2) % 2 == 1
            if !replacing { try? FileManager.default.removeItem(atPath: out) }
            if replacing && !FileManager.default.fileExists(atPath: out) {
                _ = try InterruptTests.run(w.tool, w.args(out, prepared), killAfter: nil, signal: 0)
            }
            let args = w.args(out, prepared) + (replacing ? ["--force"] : [])
            let r = try InterruptTests.run(w.tool, args, killAfter: seconds * Double(k) / 13, signal: signal)
            let moment = "\(w.name), moment \(k)/12, \(signal == SIGINT ? "SIGINT" : "SIGKILL"), replacing \(replacing): status \(r.status)"
            if FileManager.default.fileExists(atPath: out) {
                #expect(throws: Never.self, "\(moment): partial output") { try w.check(out) }
            } else {
                #expect(!replacing, "\(moment): the existing output is gone")
            }
            if !r.killed { #expect(r.status == 0, "\(moment): finished but failed") }
            if signal == SIGINT {
                let left = InterruptTests.leftovers(dir) + (w.output == "report" ? InterruptTests.leftovers(out) : [])
                #expect(left.isEmpty, "\(moment): left \(left)")
            }
            for f in InterruptTests.leftovers(dir) { try? FileManager.default.removeItem(atPath: dir + "/" + f) }
            if w.output == "report" { for f in InterruptTests.leftovers(out) { try? FileManager.default.removeItem(atPath: out + "/" + f) } }
        }
    }

    /// `--force` replaces a model folder, never a tree, and leaves nothing beside it.
    @Test func forceReplacesModelFoldersOnly() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let out = dir + "/out"
        try FileManager.default.createDirectory(atPath: out + "/keep", withIntermediateDirectories: true)
        let refused = try runTool("malconv", ["convert", Fixtures.model("gpt2-tiny"), "-o", out, "--force"])
        #expect(refused.status == 1 && refused.stderr.contains("holds the folder 'keep'"), "\(refused.stderr)")
        #expect(isDirectory(out + "/keep"))
        try FileManager.default.removeItem(atPath: out + "/keep")
        #expect(try runTool("malconv", ["convert", Fixtures.model("gpt2-tiny"), "-o", out]).status == 0)
        let again = try runTool("malconv", ["convert", Fixtures.model("gpt2-tiny"), "-o", out])
        #expect(again.status == 1 && again.stderr.contains("--force"), "\(again.stderr)")
        #expect(try runTool("malconv", ["convert", Fixtures.model("llama3-tiny"), "-o", out, "--force"]).status == 0)
        #expect(try HFConfigReader.read(path: out + "/config.json").modelType == "llama")
        #expect(InterruptTests.leftovers(dir).isEmpty)
    }
}
