#if canImport(Glibc)
import Glibc
#endif

/// Where a tensor's bytes live, and who keeps them alive.
public final class TensorStorage: @unchecked Sendable {
    public let bytes: UnsafeRawBufferPointer
    private let owner: AnyObject?
    private let owned: Bool

    /// Borrowed bytes (a slice of a mapped file); `owner` keeps the mapping alive.
    public init(borrowing bytes: UnsafeRawBufferPointer, owner: AnyObject) {
        self.bytes = bytes
        self.owner = owner
        self.owned = false
    }

    /// A fresh, 64-byte aligned copy of `bytes`.
    public init(copying bytes: UnsafeRawBufferPointer) {
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
        if let src = bytes.baseAddress, bytes.count > 0 { p.copyMemory(from: src, byteCount: bytes.count) }
        self.bytes = UnsafeRawBufferPointer(start: p, count: bytes.count)
        self.owner = nil
        self.owned = true
    }

    /// Uninitialised memory for `count` bytes (`allocateLarge`).
    public static func allocate(count: Int) throws -> TensorStorage {
        TensorStorage(adopting: try allocateLarge(count), count: count)
    }

    /// Takes ownership of memory allocated with `UnsafeMutableRawPointer.allocate`.
    public init(adopting p: UnsafeMutableRawPointer, count: Int) {
        self.bytes = UnsafeRawBufferPointer(start: p, count: count)
        self.owner = nil
        self.owned = true
    }

    deinit {
        if owned, let p = bytes.baseAddress { UnsafeMutableRawPointer(mutating: p).deallocate() }
    }

    /// True when the bytes are a view into a file mapping rather than a copy.
    public var isZeroCopy: Bool { !owned }
}

/// A named tensor: the unit that flows from readers through transformers to writers.
public struct Tensor: Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var storage: TensorStorage

    public init(name: String, dtype: DType, shape: [Int], storage: TensorStorage) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.storage = storage
    }

    /// The bytes; valid only while this tensor (its storage) is alive: use `withBytes` or keep
    /// the tensor in a variable that is used after the pointer.
    public var bytes: UnsafeRawBufferPointer { storage.bytes }

    /// Calls `body` with the bytes, keeping the storage alive for the call.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(storage) { try body(storage.bytes) }
    }

    /// A copy of the bytes.
    public var byteArray: [UInt8] { withBytes { Array($0) } }
    public var elementCount: Int { MalCore.elementCount(shape) ?? 0 }
}

/// What a reader knows about a tensor before touching its bytes.
public struct TensorInfo: Sendable, Equatable, Codable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    /// Byte length of the data.
    public var byteCount: Int
    /// Absolute byte offset of the data in `file`.
    public var fileOffset: Int
    /// The file holding the data (a shard name for sharded checkpoints).
    public var file: String

    public init(name: String, dtype: DType, shape: [Int], byteCount: Int, fileOffset: Int, file: String) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.byteCount = byteCount
        self.fileOffset = fileOffset
        self.file = file
    }

    public var elementCount: Int { MalCore.elementCount(shape) ?? 0 }
}

/// `count` bytes, 64-byte aligned; from 2 MiB up, 2 MiB aligned and advised into transparent huge
/// pages (fewer page faults when filled, faster streaming reads). Free with `deallocate()` (which is
/// `free` on Linux, as for `posix_memalign`). A request the system refuses (a tensor that claims more
/// bytes than the machine has, as a decompression bomb does) is an error, not a crash.
public func allocateLarge(_ count: Int) throws -> UnsafeMutableRawPointer {
    let huge = 2 << 20
    var p: UnsafeMutableRawPointer?
    guard count >= 0, posix_memalign(&p, count >= huge ? huge : 64, max(count, 1)) == 0, let p else {
        throw MalError(
            .outOfMemory,
            "cannot allocate \(count) bytes (\(gibibytes(count))); this process may use \(gibibytes(physicalMemoryBytes)) (physical memory or its cgroup limit)"
        )
    }
    if count >= huge { _ = madvise(p, count, MADV_HUGEPAGE) }
    return p
}
