import CMalKernels
import MalCore
#if canImport(Glibc)
import Glibc
#endif

/// A file written under a temporary name in the destination's folder and renamed into place by
/// `commit()`. Until then it is registered for removal on failure and on SIGINT/SIGTERM, so an
/// interrupted command never leaves a partial output; after SIGKILL or a power loss the
/// destination holds the old file or the complete new one (rename(2) is atomic), never a part.
///
/// An existing destination is replaced only with `replace` (the commands' `--force`), and only by
/// the final rename; without it the open fails at once and the final rename refuses to clobber a
/// file that appeared meanwhile (`RENAME_NOREPLACE`).
public final class OutputFile: @unchecked Sendable {
    public let finalPath: String
    public let tempPath: String
    public let replace: Bool
    private var fd: Int32
    public private(set) var position: Int = 0

    public init(path: String, replace: Bool = false) throws {
        finalPath = path
        self.replace = replace
        if !replace && fileExists(path) {
            throw MalError(.invalidArgument, "output exists (use --force to replace it)", file: path)
        }
        let dir = parentDirectory(path)
        tempPath = joinPath(dir, ".\(baseName(path)).tmp-\(getpid())")
        mal_install_cleanup_handlers()
        mal_register_temp(tempPath)
        fd = open(tempPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 {
            let e = errno
            mal_unregister_temp(tempPath)
            throw MalError(.ioError, "cannot create output: \(String(cString: strerror(e)))", file: path)
        }
    }

    deinit { if fd >= 0 { abandon() } }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw MalError(.ioError, "write failed: \(String(cString: strerror(errno)))", file: finalPath, offset: position + done)
            }
            done += n
        }
        position += bytes.count
    }

    public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    public func writeZeros(_ n: Int) throws { if n > 0 { try write([UInt8](repeating: 0, count: n)) } }

    public func pwrite(_ bytes: [UInt8], at offset: Int) throws {
        let n = bytes.withUnsafeBytes { Glibc.pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
        if n != bytes.count { throw MalError(.ioError, "write failed: \(String(cString: strerror(errno)))", file: finalPath, offset: offset) }
    }

    /// Flushes to disk and renames the temporary file to the final path.
    public func commit() throws {
        if fsync(fd) != 0 { throw MalError(.ioError, "fsync failed: \(String(cString: strerror(errno)))", file: finalPath) }
        if close(fd) != 0 {
            fd = -1
            throw MalError(.ioError, "close failed: \(String(cString: strerror(errno)))", file: finalPath)
        }
        fd = -1
        if (replace ? rename(tempPath, finalPath) : mal_rename_noreplace(tempPath, finalPath)) != 0 {
            let e = errno
            unlink(tempPath)
            mal_unregister_temp(tempPath)
            if e == EEXIST { throw MalError(.invalidArgument, "output appeared while writing (use --force to replace it)", file: finalPath) }
            throw MalError(.ioError, "cannot rename into place: \(String(cString: strerror(e)))", file: finalPath)
        }
        fsyncDirectory(parentDirectory(finalPath))
        mal_unregister_temp(tempPath)
    }

    /// Removes the temporary file.
    public func abandon() {
        if fd >= 0 { close(fd); fd = -1 }
        unlink(tempPath)
        mal_unregister_temp(tempPath)
    }
}

/// Makes a rename inside `dir` durable (best effort: some filesystems refuse fsync on folders).
func fsyncDirectory(_ dir: String) {
    let d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if d >= 0 { _ = fsync(d); close(d) }
}

/// Refuses to write `output` when that would overwrite or delete one of `inputs`: the same path, a
/// file of an input folder, or a folder that contains an input (an output folder is replaced).
public func refuseOverwritingInput(output: String, inputs: [String]) throws {
    func real(_ p: String) -> String? {
        guard let r = realpath(p, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }
    // A new path resolves through its existing parent.
    guard let out = real(output) ?? real(parentDirectory(output)).map({ joinPath($0, baseName(output)) }) else { return }
    for i in inputs {
        guard let inp = real(i) else { continue }
        let inside = inp.hasPrefix(out.hasSuffix("/") ? out : out + "/")
        let clobbersFile = isDirectory(inp) && parentDirectory(out) == inp && fileExists(out)
        if out == inp || inside || clobbersFile {
            throw MalError(.invalidArgument, "refusing to overwrite the input \(i)", file: output)
        }
    }
}
