import ArgumentParser
import MalCore

/// The one error style of `malconv` and `malrun`: an error about the user's input (a `MalError`
/// naming the file, tensor and offset, or a chat template's error naming its line) is one line
/// `error: …` on standard error and exit status 1; a wrong flag is ArgumentParser's message with
/// the usage and exit status 64 (`EX_USAGE`); anything else is a bug and propagates.
@discardableResult
public func runReporting<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let e as any ReportedError {
        printError("error: \(e)")
        throw ExitCode(1)
    }
}

/// `runReporting` for async commands (`serve`).
public func runReporting(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let e as any ReportedError {
        printError("error: \(e)")
        throw ExitCode(1)
    }
}
