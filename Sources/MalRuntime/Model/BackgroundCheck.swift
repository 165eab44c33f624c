import Dispatch
import MalCore

/// A model's deferred checks (`CanonicalModel.deferredCheck`, the checksums of mapped raw
/// weights) running on a background thread while the model runs: a cached mapped model starts at
/// once, and a damaged file is still reported, by `failure` as soon as it is known and by `wait`
/// before a command reports success.
public final class BackgroundCheck: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let result = LockedBox<(finished: Bool, error: Error?)>((false, nil))

    public init(_ check: @escaping @Sendable () throws -> Void) {
        DispatchQueue.global(qos: .utility).async { [result, done] in
            var found: Error?
            do { try check() } catch { found = error }
            result.withLock { [found] in $0 = (true, found) }
            done.signal()
        }
    }

    /// The problem found so far (nil while running or when there is none).
    public var failure: Error? { result.withLock { $0.error } }

    /// Waits for the check to finish and throws what it found.
    public func wait() throws {
        if !result.withLock({ $0.finished }) {
            done.wait()
            done.signal()
        }
        if let e = failure { throw e }
    }
}
