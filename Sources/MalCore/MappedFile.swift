#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory map of a whole file (`mmap(PROT_READ, MAP_PRIVATE)`).
///
/// Weights are never read into anonymous memory: the page cache is the buffer, so opening a
/// 700 GB checkpoint costs nothing until bytes are touched. The mapping lives as long as this
/// object; tensor views keep a reference to it.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let size: Int
    public let bytes: UnsafeRawBufferPointer
    /// Kept open for `evict`'s page-cache advice.
    private let fd: Int32

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let e = errno
            throw MalError(
                e == ENOENT ? .fileNotFound : .ioError,
                "cannot open: \(String(cString: strerror(e)))", file: path)
        }
        var st = stat()
        if fstat(fd, &st) != 0 {
            close(fd)
            throw MalError(.ioError, "cannot stat: \(String(cString: strerror(errno)))", file: path)
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            close(fd)
            throw MalError(.ioError, "is a directory, expected a file", file: path)
        }
        self.fd = fd
        size = Int(st.st_size)
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            let e = errno
            close(fd)
            throw MalError(.ioError, "cannot map \(size) bytes: \(String(cString: strerror(e)))", file: path)
        }
        bytes = UnsafeRawBufferPointer(start: p, count: size)
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), size) }
        close(fd)
    }

    /// The whole pages inside `range`, or nil when there are none.
    private func pages(_ range: Range<Int>) -> (UnsafeMutableRawPointer, Int)? {
        guard let base = bytes.baseAddress, !range.isEmpty else { return nil }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (range.lowerBound + page - 1) / page * page
        let end = range.upperBound / page * page
        return end > start ? (UnsafeMutableRawPointer(mutating: base + start), end - start) : nil
    }

    /// Starts reading `range` from the disk in the background (`MADV_WILLNEED`), so a decoder that
    /// then walks it finds its pages arriving instead of faulting each one in turn.
    public func willNeed(_ range: Range<Int>) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let r = (range.lowerBound / page * page)..<min(size, (range.upperBound + page - 1) / page * page)
        if let (p, n) = pages(r) { _ = madvise(p, n, MADV_WILLNEED) }
    }

    /// Drops `range` from this mapping and from the page cache (`POSIX_FADV_DONTNEED`; the pages
    /// are clean, the file still holds them): once a tensor is decoded its compressed bytes need
    /// not share memory with the decoded copy.
    public func evict(_ range: Range<Int>) {
        guard let (p, n) = pages(range) else { return }
        _ = madvise(p, n, MADV_DONTNEED)
        _ = posix_fadvise(fd, off_t(p - UnsafeMutableRawPointer(mutating: bytes.baseAddress!)), off_t(n), Int32(POSIX_FADV_DONTNEED))
    }

    /// Drops this process's pages of `range` (the page cache keeps them): a streaming reader calls
    /// this after each block so its resident memory stays bounded whatever the file size.
    public func release(_ range: Range<Int>) {
        if let (p, n) = pages(range) { _ = madvise(p, n, MADV_DONTNEED) }
    }
}
