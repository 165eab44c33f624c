import Foundation
import MalCore

/// Each fuzz input goes through the product's real path-based readers (mmap included), so it is
/// written to a file in a per-process scratch folder on a RAM-backed filesystem when there is one.
enum Scratch {
    static let folder: String = {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let p = base + "/malfuzz-\(getpid())"
        try? FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: Scratch.folder) }
        return p
    }()

    /// Writes `bytes` to `folder/name` and returns the path.
    static func write(_ name: String, _ bytes: UnsafeRawBufferPointer) -> String {
        let path = folder + "/" + name
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        precondition(fd >= 0, "cannot write the scratch file \(path)")
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            precondition(n > 0, "cannot write the scratch file \(path)")
            done += n
        }
        close(fd)
        return path
    }

    static func write(_ name: String, _ text: String) -> String {
        var t = text
        return t.withUTF8 { write(name, UnsafeRawBufferPointer($0)) }
    }

    /// A valid safetensors file of F32 tensors (name -> element count), for the index target's shards.
    static func safetensors(_ tensors: [(String, Int)]) -> [UInt8] {
        var header = "{", off = 0
        for (i, (name, n)) in tensors.enumerated() {
            header += (i > 0 ? "," : "") + "\"\(name)\":{\"dtype\":\"F32\",\"shape\":[\(n)],\"data_offsets\":[\(off),\(off + 4 * n)]}"
            off += 4 * n
        }
        header += "}"
        while header.utf8.count % 8 != 0 { header += " " }
        var out: [UInt8] = []
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { out += $0 }
        return out + Array(header.utf8) + [UInt8](repeating: 0, count: off)
    }
}
