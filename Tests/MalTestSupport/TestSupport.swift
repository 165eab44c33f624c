import Foundation

/// Locations of the reference data inside the repository and helpers every test target uses.
///
/// `Tests/Fixtures` is a byte-identical copy of the project's shared fixtures (with
/// `real-configs/` from its reference notes) and `Samples/` of its sample set, so the suite runs on a
/// plain clone. `FixtureCopyTests` compares them with the originals when those are beside the
/// checkout (`MAL_SHARED` names another place).
public enum Fixtures {
    public static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
    public static let fixtures = packageRoot + "/Tests/Fixtures"
    public static let realConfigs = fixtures + "/real-configs"
    public static let samples = packageRoot + "/Samples"
    /// The original shared data, if present beside the checkout (only the copy check reads it).
    public static let sharedOriginal: String =
        ProcessInfo.processInfo.environment["MAL_SHARED"]
        ?? URL(fileURLWithPath: packageRoot).deletingLastPathComponent().appendingPathComponent("shared").path
    public static let models = ["gpt2-tiny", "llama3-tiny", "deepseek-v3-tiny", "deepseek-v3-fp8", "deepseek-v2-lite-tiny"]
    public static func model(_ name: String) -> String { fixtures + "/" + name }

    /// A fresh temporary folder, removed by the caller with `cleanup`.
    public static func tempDir() -> String {
        let p = NSTemporaryDirectory() + "maltest-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    public static func cleanup(_ p: String) { try? FileManager.default.removeItem(atPath: p) }
}

/// Runs a built executable of this package (it sits beside the test bundle). A process ended by a
/// signal reports 128 + the signal number, as a shell does, so it never passes for an exit status.
public func runTool(_ tool: String, _ args: [String], environment: [String: String] = [:]) throws -> (
    status: Int32, stdout: String, stderr: String
) {
    let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let p = Process()
    p.executableURL = dir.appendingPathComponent(tool)
    p.arguments = args
    if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let status = p.terminationReason == .uncaughtSignal ? 128 + p.terminationStatus : p.terminationStatus
    return (status, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}
