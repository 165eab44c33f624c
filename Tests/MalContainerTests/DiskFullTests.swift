import Foundation
import MalCore
import MalTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Running out of space while writing: a file-size limit (RLIMIT_FSIZE, which works for any user)
/// and, where this user may mount one, a full 256 KiB tmpfs. Both must end in a clear error naming
/// the output, exit status 1, and no output or temporary file left.
@Suite("Full disk", .serialized) struct DiskFullTests {
    static func tool(_ name: String) -> String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name).path
    }

    /// Runs a shell command line; returns status and standard error.
    static func shell(_ line: String) throws -> (status: Int32, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-c", line]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, e)
    }

    static let commands: [(String, String)] = [
        ("convert", "convert \(Fixtures.model("deepseek-v3-tiny")) -o OUT.mal"),
        ("convert to HF", "convert \(Fixtures.model("deepseek-v3-tiny")) -o OUT"),
        ("export", "export IN.mal -o OUT"),
    ]

    static func expectCleanFailure(_ r: (status: Int32, stderr: String), in dir: String, _ what: String) {
        #expect(r.status == 1, "\(what): status \(r.status): \(r.stderr)")
        #expect(r.stderr.contains("error:") && r.stderr.contains(dir), "\(what): \(r.stderr)")
        let left = (try? listDirectory(dir))?.filter { $0 != "IN.mal" } ?? []
        #expect(left.isEmpty, "\(what): left \(left)")
    }

    @Test("a file-size limit stops convert and export cleanly")
    func fileSizeLimit() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        #expect(try DiskFullTests.shell("\(DiskFullTests.tool("malconv")) convert \(Fixtures.model("deepseek-v3-tiny")) -o \(dir)/IN.mal").status == 0)
        for (name, cmd) in DiskFullTests.commands {
            let line = cmd.replacingOccurrences(of: "OUT", with: dir + "/out").replacingOccurrences(of: "IN.mal", with: dir + "/IN.mal")
            // bash counts `ulimit -f` in KiB: 200 KiB, less than each output.
            let r = try DiskFullTests.shell("ulimit -f 200; exec \(DiskFullTests.tool("malconv")) \(line)")
            DiskFullTests.expectCleanFailure(r, in: dir, name)
            #expect(r.stderr.contains("File too large"), "\(name): \(r.stderr)")
        }
    }

    @Test("a full tmpfs stops convert and export cleanly (where mounting is permitted)")
    func fullFilesystem() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let mnt = dir + "/small"
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        guard try DiskFullTests.shell("mount -t tmpfs -o size=256k tmpfs \(mnt)").status == 0 else { return }
        defer { _ = try? DiskFullTests.shell("umount \(mnt)") }
        let input = dir + "/IN.mal"
        #expect(try DiskFullTests.shell("\(DiskFullTests.tool("malconv")) convert \(Fixtures.model("deepseek-v3-tiny")) -o \(input)").status == 0)
        for (name, cmd) in DiskFullTests.commands {
            let line = cmd.replacingOccurrences(of: "OUT", with: mnt + "/out").replacingOccurrences(of: "IN.mal", with: input)
            let r = try DiskFullTests.shell("exec \(DiskFullTests.tool("malconv")) \(line)")
            DiskFullTests.expectCleanFailure(r, in: mnt, name)
            #expect(r.stderr.contains("No space left on device"), "\(name): \(r.stderr)")
        }
    }
}
