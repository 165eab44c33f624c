import CMalKernels
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Number of CPUs available to this process.
public var availableCores: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

/// Memory this process may use in bytes: the machine's physical memory, or a smaller cgroup limit
/// (a container's `memory.max`, v2, or `memory.limit_in_bytes`, v1), where exceeding it means the
/// OOM killer rather than a failed allocation.
public var physicalMemoryBytes: Int {
    let machine = Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
    let limits = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"].compactMap(firstLineNumber)
    return min(machine, limits.min() ?? machine)
}

/// The integer on the first line of a small text file (nil if absent or not a number, e.g. "max").
private func firstLineNumber(_ path: String) -> Int? {
    guard let f = fopen(path, "r") else { return nil }
    defer { fclose(f) }
    var buf = [CChar](repeating: 0, count: 64)
    guard fgets(&buf, 64, f) != nil else { return nil }
    let digits = buf.prefix { $0 != 0 && $0 != 10 && $0 != 13 && $0 != 32 }.map { UInt8(bitPattern: $0) }
    return Int(String(decoding: digits, as: UTF8.self))
}

/// "12.3 GiB".
public func gibibytes(_ n: Int) -> String { String(format: "%.1f GiB", Double(n) / Double(1 << 30)) }

/// A pointer or buffer that may cross threads: Swift cannot see that the memory outlives the
/// parallel region or that each thread writes its own part; the caller guarantees both. The one
/// wrapper for every pointer kind the parallel loops share (raw, typed, buffers).
public struct SharedPointer<Pointer>: @unchecked Sendable {
    public let pointer: Pointer
    public init(_ p: Pointer) { pointer = p }
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
            let i = next.withLock { v -> Int in
                defer { v += 1 }; return v
            }
            if i >= count || failure.withLock({ $0 != nil }) { return }
            do { try body(i) } catch { failure.withLock { if $0 == nil { $0 = error } } }
        }
    }
    if let e = failure.withLock({ $0 }) { throw e }
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

/// Reusable buffers of several sizes (each rounded up to 64 KiB), shared by the streams of one
/// transform: each weight's bands take the buffers the previous weight of its shape gave back.
/// Buffers of many sizes allocated and freed on several threads fragment the allocator's heaps,
/// and a quantiser's resident memory then grew with the number of layers.
public final class SizedBufferPool: @unchecked Sendable {
    private static let granule = 1 << 16
    private let free = LockedBox<[Int: [UnsafeMutableRawPointer]]>([:])
    public init() {}
    private static func size(_ bytes: Int) -> Int { max(1, (bytes + granule - 1) / granule) * granule }
    /// A buffer of at least `bytes` bytes, 64-byte aligned; give it back with the same `bytes`.
    public func get(_ bytes: Int) -> UnsafeMutableRawPointer {
        let n = Self.size(bytes)
        return free.withLock { $0[n]?.popLast() } ?? UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 64)
    }
    public func put(_ p: UnsafeMutableRawPointer, bytes: Int) {
        let n = Self.size(bytes)
        free.withLock { $0[n, default: []].append(p) }
    }
    deinit { for p in free.withLock({ $0.values.flatMap { $0 } }) { p.deallocate() } }
}

/// Makes glibc map every block of 128 KiB or more on its own, returned to the system when freed.
/// By default glibc raises that threshold to the size of each large mapped block freed (up to
/// 32 MiB), so once a writer's 16 MiB piece buffer was freed, every band buffer after it came from
/// the heap, whose freed holes glibc keeps: quantising Llama-3.2-1B into an HF folder grew to
/// 589 MB resident, 108 MB with the fixed threshold (Docs/PERFORMANCE.md). For the transforms
/// (`malconv`), whose large buffers are few and reused (`SizedBufferPool`).
public func useFixedMmapThreshold() { mal_fixed_mmap_threshold(128 << 10) }
