import Foundation
import MalTestSupport
import Testing

/// The repository's copies of the reference data (`Tests/Fixtures`, `Samples`) must stay
/// byte-identical to the shared originals; this runs `Tests/Scripts/fixtures_check.sh` (the same
/// check as `make fixtures-check`) when the originals are beside the checkout.
@Suite struct FixtureCopyTests {
    static var originalsPresent: Bool {
        FileManager.default.fileExists(atPath: Fixtures.sharedOriginal + "/fixtures/README.md")
    }

    @Test("Tests/Fixtures and Samples equal the shared originals", .enabled(if: originalsPresent))
    func copiesAreIdentical() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [Fixtures.packageRoot + "/Tests/Scripts/fixtures_check.sh"]
        p.environment = ProcessInfo.processInfo.environment.merging(["MAL_SHARED": Fixtures.sharedOriginal]) { $1 }
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let msg = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "\(msg)")
    }

    @Test("every fixture the suite names is in the repository")
    func fixturesInRepository() {
        for m in Fixtures.models {
            #expect(FileManager.default.fileExists(atPath: Fixtures.model(m) + "/config.json"), "\(m)")
        }
        #expect(FileManager.default.fileExists(atPath: Fixtures.realConfigs + "/deepseek-v3/config.json"))
        #expect(FileManager.default.fileExists(atPath: Fixtures.samples + "/deepseek-v3-fortunes-fp8/config.json"))
    }
}
