import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Keeps a window of a mapped file being read from the disk ahead of a consumer that walks it in
/// order (a loader decoding a container's tensors, which lie in load order): the reads of the
/// next tensors overlap the decoding of this one instead of starting when it is done.
///
/// The advice (`MappedFile.willNeed`, `MADV_WILLNEED`) is given on a background queue in steps of
/// `step` bytes, because the kernel blocks the caller once the device's request queue is full,
/// and a decoder must not wait on reads it will only need later. Positions behind the consumer
/// are skipped; the window bounds how much the read-ahead can hold in the page cache.
public final class ReadAhead: @unchecked Sendable {
    public let window: Int
    let step: Int
    private let file: MappedFile
    private let queue = DispatchQueue(label: "malcore.readahead")
    /// `issued`: advised up to here; `consumer`: where the consumer reads now.
    private let state = LockedBox((issued: 0, consumer: 0))

    /// The window a loader uses: 256 MiB, or `MAL_READAHEAD_MB` MiB from the environment (0 turns
    /// the read-ahead off, for comparisons).
    public static var defaultWindow: Int {
        guard let v = getenv("MAL_READAHEAD_MB"), let mb = Int(String(cString: v)), mb >= 0 else { return 256 << 20 }
        return mb << 20
    }

    public init(_ file: MappedFile, window: Int = ReadAhead.defaultWindow, step: Int = 8 << 20) {
        self.file = file
        self.window = window
        self.step = max(step, 1)
    }

    /// The consumer now reads at `offset`: advise the disk up to `offset + window`.
    public func consumer(at offset: Int) {
        state.withLock { $0.consumer = max($0.consumer, offset) }
        queue.async { self.issue() }
    }

    /// Advises step after step until the window ahead of the consumer is covered.
    private func issue() {
        while true {
            let next: Range<Int>? = state.withLock { s in
                let from = max(s.issued, s.consumer)
                let end = min(file.size, s.consumer + window)
                guard from < end else { return nil }
                let to = min(end, from + step)
                s.issued = to
                return from..<to
            }
            guard let next else { return }
            file.willNeed(next)
        }
    }
}
