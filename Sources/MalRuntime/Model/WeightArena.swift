import MalCore

/// Memory for the weights the kernels read, in 2 MiB transparent huge pages: decoding reads
/// weights faster from huge pages than from 4 KiB anonymous pages or the mapped page cache
/// (figures in `Docs/PERFORMANCE.md`).
/// Tensors are copied in once at load time (bump allocation, 64-byte aligned).
public final class WeightArena: @unchecked Sendable {
    static let chunk = 64 << 20
    private var blocks: [(UnsafeMutableRawPointer, Int)] = []
    private var used = 0
    public private(set) var bytes = 0

    public init() {}

    deinit { for (p, _) in blocks { p.deallocate() } }

    func copy(_ src: UnsafeRawBufferPointer) throws -> UnsafeRawPointer {
        let dst = try allocate(src.count)
        if let s = src.baseAddress, src.count > 0 { dst.copyMemory(from: s, byteCount: src.count) }
        return UnsafeRawPointer(dst)
    }

    /// `count` bytes, 64-byte aligned, in huge-page memory that lives as long as the arena.
    func allocate(_ count: Int) throws -> UnsafeMutableRawPointer {
        let n = (max(count, 1) + 63) / 64 * 64
        if blocks.isEmpty || used + n > blocks[blocks.count - 1].1 {
            let size = max(WeightArena.chunk, (n + (2 << 20) - 1) / (2 << 20) * (2 << 20))
            let p = try allocateLarge(size)
            blocks.append((p, size))
            used = 0
        }
        let dst = blocks[blocks.count - 1].0 + used
        used += n
        bytes += count
        return dst
    }
}
