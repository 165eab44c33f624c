import Foundation

/// Locations of the shared reference data (`../shared` beside the package; `MAL_SHARED` overrides).
enum Fixtures {
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
    static let shared: String = ProcessInfo.processInfo.environment["MAL_SHARED"]
        ?? URL(fileURLWithPath: packageRoot).deletingLastPathComponent().appendingPathComponent("shared").path
    static let fixtures = shared + "/fixtures"
    static let models = ["gpt2-tiny", "llama3-tiny", "deepseek-v3-tiny", "deepseek-v3-fp8", "deepseek-v2-lite-tiny"]
    static func model(_ name: String) -> String { fixtures + "/" + name }
    static func tempDir() -> String {
        let p = NSTemporaryDirectory() + "maltest-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }
    static func cleanup(_ p: String) { try? FileManager.default.removeItem(atPath: p) }
}
