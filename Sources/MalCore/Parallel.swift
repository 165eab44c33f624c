import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Number of CPUs available to this process.
public var availableCores: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

/// Physical memory of this machine in bytes.
public var physicalMemoryBytes: Int { Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE))) }

/// "12.3 GiB".
public func gibibytes(_ n: Int) -> String { String(format: "%.1f GiB", Double(n) / Double(1 << 30)) }

/// A raw pointer that may cross threads. Callers guarantee disjoint writes.
public struct SendableRawPointer: @unchecked Sendable {
    public let pointer: UnsafeMutableRawPointer
    public init(_ p: UnsafeMutableRawPointer) { pointer = p }
}

/// A mutex-protected box for results gathered from parallel workers.
public final class LockedBox<T>: @unchecked Sendable {
    private var value: T
    private var mutex = pthread_mutex_t()
    public init(_ v: T) { value = v; pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    public func withLock<R>(_ body: (inout T) -> R) -> R {
        pthread_mutex_lock(&mutex); defer { pthread_mutex_unlock(&mutex) }
        return body(&value)
    }
}

/// Runs `body(i)` for i in 0..<count on up to `threads` threads; rethrows the first error.
public func parallelFor(_ count: Int, threads: Int = availableCores, _ body: @Sendable (Int) throws -> Void) throws {
    if count == 0 { return }
    let workers = max(1, min(threads, count))
    if workers == 1 {
        for i in 0..<count { try body(i) }
        return
    }
    let next = LockedBox(0)
    let failure = LockedBox<Error?>(nil)
    DispatchQueue.concurrentPerform(iterations: workers) { _ in
        while true {
            let i = next.withLock { v -> Int in defer { v += 1 }; return v }
            if i >= count || failure.withLock({ $0 != nil }) { return }
            do { try body(i) } catch { failure.withLock { if $0 == nil { $0 = error } } }
        }
    }
    if let e = failure.withLock({ $0 }) { throw e }
}

/// Read-only bytes that may cross threads (a file mapping or an immutable buffer).
public struct SendableBytes: @unchecked Sendable {
    public let buffer: UnsafeRawBufferPointer
    public init(_ b: UnsafeRawBufferPointer) { buffer = b }
}

/// Reusable equal-sized buffers shared by parallel workers (fresh multi-MB allocations would
/// page-fault on every use).
public final class BufferPool: @unchecked Sendable {
    public let size: Int
    private let free = LockedBox<[UnsafeMutableRawPointer]>([])
    public init(size: Int) { self.size = size }
    public func get() -> UnsafeMutableRawPointer {
        free.withLock { $0.popLast() } ?? UnsafeMutableRawPointer.allocate(byteCount: max(size, 1), alignment: 64)
    }
    public func put(_ p: UnsafeMutableRawPointer) { free.withLock { $0.append(p) } }
    deinit { for p in free.withLock({ $0 }) { p.deallocate() } }
}
