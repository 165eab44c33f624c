#if canImport(Glibc)
import Glibc
#endif
import CMalKernels
import MalCore

/// A model folder being written: a temporary folder beside the destination whose files are
/// registered with the signal-time cleanup (after the folder, so an interrupt removes the files
/// first and then the folder), swapped into place whole at the end or removed on failure.
final class TemporaryFolder {
    let path: String
    private(set) var files: [String] = []

    init(beside dir: String) throws {
        path = joinPath(parentDirectory(dir), ".\(baseName(dir)).tmp-\(getpid())")
        mal_install_cleanup_handlers()
        mal_register_temp(path)
        guard mkdir(path, 0o755) == 0 else {
            mal_unregister_temp(path)
            throw MalError(.ioError, "cannot create folder: \(String(cString: strerror(errno)))", file: path)
        }
    }

    /// The path of a new file `name` in the folder, registered for cleanup.
    func add(_ name: String) -> String {
        files.append(name)
        let p = joinPath(path, name)
        mal_register_temp(p)
        return p
    }

    /// Into place. An existing folder is swapped with the new one in one atomic step
    /// (RENAME_EXCHANGE) and only then removed, so every moment shows the old or the new folder
    /// whole; where the filesystem cannot swap, it is moved aside first. `RENAME_NOREPLACE` keeps a
    /// folder that appeared meanwhile.
    func moveIntoPlace(_ dir: String) throws {
        if isDirectory(dir) {
            try TemporaryFolder.replaceFolder(dir, with: path)
        } else {
            guard mal_rename_noreplace(path, dir) == 0 else {
                let e = errno
                throw MalError(
                    e == EEXIST ? .invalidArgument : .ioError,
                    e == EEXIST
                        ? "output appeared while writing (use --force to replace it)"
                        : "cannot rename into place: \(String(cString: strerror(e)))", file: dir)
            }
            mal_unregister_temp(path)
        }
        for f in files { mal_unregister_temp(joinPath(path, f)) }
        fsyncDirectory(parentDirectory(dir))
    }

    /// Removes what was written (a failed write leaves nothing behind).
    func remove() {
        for f in files { unlink(joinPath(path, f)) }
        for f in files { mal_unregister_temp(joinPath(path, f)) }
        rmdir(path)
        mal_unregister_temp(path)
    }

    /// Puts the finished folder `tmp` at `dir`, where a folder exists, and removes the old one.
    static func replaceFolder(_ dir: String, with tmp: String) throws {
        if mal_rename_exchange(tmp, dir) == 0 {
            // `tmp` now names the old folder (still registered for removal on an interrupt); it
            // holds files only (checked before writing).
            for f in (try? listDirectory(tmp)) ?? [] { unlink(joinPath(tmp, f)) }
            rmdir(tmp)
            mal_unregister_temp(tmp)
            return
        }
        let aside = joinPath(parentDirectory(dir), ".\(baseName(dir)).old-\(getpid())")
        guard rename(dir, aside) == 0 else {
            throw MalError(.ioError, "cannot move the existing folder aside: \(String(cString: strerror(errno)))", file: dir)
        }
        guard rename(tmp, dir) == 0 else {
            let e = errno
            rename(aside, dir)
            throw MalError(.ioError, "cannot rename into place: \(String(cString: strerror(e)))", file: dir)
        }
        mal_unregister_temp(tmp)
        for f in (try? listDirectory(aside)) ?? [] { unlink(joinPath(aside, f)) }
        rmdir(aside)
    }
}
