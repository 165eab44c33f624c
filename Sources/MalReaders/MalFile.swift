import CMalKernels
import CZstd
import Foundation
import MalArchitectures
import MalCore

/// A `.mal` container opened for reading (`Formats/MAL.md`).
///
/// Opening validates the whole structure: header checksum, version, metadata and table
/// checksums, every table record (counts and lengths bounded by the file size before anything is
/// allocated), and the data layout (chunks inside the data region, no overlaps, only zero padding
/// between them). Tensor bytes are decoded lazily, chunk by chunk in parallel, and every chunk is
/// checked against its XXH64 before it is returned.
public final class MalFile: @unchecked Sendable {
    public let path: String
    public let mapping: MappedFile
    public let header: MalFormat.Header
    public let metadata: MalMetadata
    public let entries: [MalFormat.Entry]
    private let byName: [String: Int]
    /// Whether decoding a tensor drops its compressed bytes from memory: when the file and its
    /// decoded tensors would not both fit in three quarters of memory, keeping the file's pages
    /// cached only pushes out the decoded copy (each load then re-read the disk).
    let evictsDecoded: Bool
    /// Reads the next tensors' stored bytes while one decodes (`decode(_:into:threads:verify:)`).
    let readAhead: ReadAhead
    /// Raw tensors are handed out unchecked and checked by `deferredCheck` instead (`--mmap`).
    public let defersRawChecks: Bool

    public var spec: ModelSpec { metadata.spec }

    /// Whether `path` should be read as a container: named `.mal` (so a damaged one reports the
    /// container's error) or starting with the magic bytes whatever its name. The one rule every
    /// command and the runtime use to tell a container from an HF checkpoint.
    public static func isContainer(_ path: String) -> Bool { path.hasSuffix(".mal") || hasMagic(path) }

    /// Whether `path` is a regular file starting with the `.mal` magic bytes, so commands can tell
    /// a container from a safetensors file before parsing either.
    public static func hasMagic(_ path: String) -> Bool {
        guard let f = fopen(path, "rb") else { return false }
        defer { fclose(f) }
        var b = [UInt8](repeating: 0, count: 8)
        return fread(&b, 1, 8, f) == 8 && b == MalFormat.magic
    }

    /// Opens and validates `path`; with `defersRawChecks` its raw tensors' checksums are left to
    /// `deferredCheck` (a mapped model then loads without reading every byte first).
    public init(path: String, defersRawChecks: Bool = false) throws {
        self.path = path
        self.defersRawChecks = defersRawChecks
        mapping = try MappedFile(path: path)
        readAhead = ReadAhead(mapping)
        let b = mapping.bytes
        let file = path
        func corrupt(_ msg: String, tensor: String? = nil, at off: Int?) -> MalError {
            MalError(.corruptStructure, msg, file: file, tensor: tensor, offset: off)
        }
        let h = try MalFile.readHeader(b, file: file)
        header = h
        let metaBytes = UnsafeRawBufferPointer(rebasing: b[Int(h.metadataOffset)..<Int(h.tableOffset)])
        if xxh64(metaBytes) != h.metadataHash {
            throw MalError(.checksumMismatch, "metadata checksum mismatch", file: file, offset: Int(h.metadataOffset))
        }
        let tableBytes = UnsafeRawBufferPointer(rebasing: b[Int(h.tableOffset)..<b.count])
        if xxh64(tableBytes) != h.tableHash {
            throw MalError(.checksumMismatch, "tensor table checksum mismatch", file: file, offset: Int(h.tableOffset))
        }
        do {
            metadata = try JSONDecoder().decode(MalMetadata.self, from: Data(metaBytes))
        } catch {
            throw corrupt("metadata is not a valid metadata document: \(error)", at: Int(h.metadataOffset))
        }
        try MalFile.checkMetadata(metadata, file: file, offset: Int(h.metadataOffset))
        entries = try MalFile.parseTable(tableBytes, base: Int(h.tableOffset), dataEnd: Int(h.metadataOffset), file: file)
        var map: [String: Int] = [:]
        for (i, e) in entries.enumerated() {
            if map[e.name] != nil { throw corrupt("tensor name appears twice in the table", tensor: e.name, at: Int(h.tableOffset)) }
            map[e.name] = i
        }
        byName = map
        evictsDecoded = mapping.size + entries.reduce(0) { $0 + Int($1.rawLength) } > physicalMemoryBytes / 4 * 3
        try MalFile.checkLinks(entries, file: file, tableOffset: Int(h.tableOffset))
        try MalFile.checkScaleGrids(entries, metadata: metadata, file: file, tableOffset: Int(h.tableOffset))
        try MalFile.checkLayout(entries, bytes: b, dataEnd: Int(h.metadataOffset), file: file)
    }

    /// The header (`Formats/MAL.md` §3), checked: size, magic, checksum, version, flags, reserved
    /// bytes, the file length and the layout of §2 (metadata then table, ending the file).
    static func readHeader(_ b: UnsafeRawBufferPointer, file: String) throws -> MalFormat.Header {
        func corrupt(_ msg: String, tensor: String? = nil, at off: Int?) -> MalError {
            MalError(.corruptStructure, msg, file: file, tensor: tensor, offset: off)
        }
        guard b.count >= MalFormat.headerSize else {
            throw MalError(
                .headerTooSmall, "file is \(b.count) bytes, smaller than the \(MalFormat.headerSize)-byte header",
                file: file, offset: 0)
        }
        guard Array(b[0..<8]) == MalFormat.magic else {
            throw MalError(.badMagic, "not a .mal file (bad magic bytes)", file: file, offset: 0)
        }
        var r = ByteReader(UnsafeRawBufferPointer(rebasing: b[0..<MalFormat.headerSize]), file: file)
        _ = try r.raw(8, "magic")
        var h = MalFormat.Header()
        h.versionMajor = try r.u16("version")
        h.versionMinor = try r.u16("version")
        h.flags = try r.u32("flags")
        h.fileLength = try r.u64("file length")
        h.metadataOffset = try r.u64("metadata offset")
        h.metadataLength = try r.u64("metadata length")
        h.tableOffset = try r.u64("table offset")
        h.tableLength = try r.u64("table length")
        h.metadataHash = try r.u64("metadata hash")
        h.tableHash = try r.u64("table hash")
        let reserved = try r.raw(16, "reserved")
        let headerHash = try r.u64("header hash")
        if headerHash != xxh64(UnsafeRawBufferPointer(rebasing: b[0..<88])) {
            throw MalError(.checksumMismatch, "header checksum mismatch: the header is corrupt", file: file, offset: 88)
        }
        if h.versionMajor != MalFormat.versionMajor {
            throw MalError(
                .unsupportedVersion,
                "format version \(h.versionMajor).\(h.versionMinor) is not supported (this reader reads \(MalFormat.versionMajor).x)",
                file: file, offset: 8)
        }
        if h.flags != 0 { throw MalError(.unsupportedVersion, "unknown header flags 0x\(String(h.flags, radix: 16))", file: file, offset: 12) }
        if reserved.contains(where: { $0 != 0 }) { throw corrupt("reserved header bytes are not zero", at: 72) }
        guard h.fileLength == UInt64(b.count) else {
            throw MalError(
                .invalidHeaderLength, "header says the file has \(h.fileLength) bytes but it has \(b.count) (truncated or extended)",
                file: file, offset: 16)
        }
        // Layout: header | data | metadata | table, table ending at the end of the file.
        let size = UInt64(b.count)
        guard h.metadataOffset >= UInt64(MalFormat.headerSize), h.metadataLength <= size, h.tableLength <= size,
            h.metadataOffset <= size - h.metadataLength, h.metadataOffset + h.metadataLength == h.tableOffset,
            h.tableOffset <= size - h.tableLength, h.tableOffset + h.tableLength == size
        else {
            throw corrupt(
                "metadata [\(h.metadataOffset), +\(h.metadataLength)) and table [\(h.tableOffset), +\(h.tableLength)) do not tile the end of the file",
                at: 24)
        }
        return h
    }

    public func entry(_ name: String) -> MalFormat.Entry? { byName[name].map { entries[$0] } }
    public func index(of name: String) -> Int? { byName[name] }

    /// The entry holding the data of `e` (itself, or an alias's target).
    public func resolved(_ e: MalFormat.Entry) -> MalFormat.Entry { e.codec == .alias ? entries[Int(e.link)] : e }

    /// Decodes a tensor by name. Raw tensors are zero-copy views of the mapping; compressed ones
    /// are decoded chunk by chunk on `threads` threads into a 64-byte aligned buffer. Every chunk's
    /// XXH64 is checked unless `verify` is false.
    public func tensor(named name: String, verify: Bool = true, threads: Int = availableCores) throws -> Tensor {
        guard let i = byName[name] else { throw MalError(.notFound, "no such tensor in the container", file: path, tensor: name) }
        return try tensor(at: i, verify: verify, threads: threads)
    }

    public func tensor(at index: Int, verify: Bool = true, threads: Int = availableCores) throws -> Tensor {
        let asked = entries[index]
        let e = resolved(asked)
        let storage = try decode(e, verify: verify, threads: threads)
        return Tensor(name: asked.name, dtype: e.dtype, shape: e.shape, storage: storage)
    }

    func decode(_ e: MalFormat.Entry, verify: Bool, threads: Int) throws -> TensorStorage {
        let total = Int(e.rawLength)
        if e.codec == .raw {
            let start = Int(e.chunks.first?.offset ?? UInt64(MalFormat.headerSize))
            let view = UnsafeRawBufferPointer(rebasing: mapping.bytes[start..<(start + total)])
            if verify && !defersRawChecks {
                mapping.willNeed(start..<(start + total))
                readAhead.consumer(at: start + total)
                try parallelFor(e.chunks.count, threads: threads) { i in try self.checkStoredChunk(e, i) }
            }
            return TensorStorage(borrowing: view, owner: mapping)
        }
        let storage: TensorStorage
        do { storage = try TensorStorage.allocate(count: total) } catch let err as MalError {
            throw MalError(err.kind, "decodes to \(total) bytes: " + err.message, file: path, tensor: e.name)
        }
        try decode(e, into: UnsafeMutableRawPointer(mutating: storage.bytes.baseAddress!), threads: threads, verify: verify)
        return storage
    }

    /// Decodes a compressed entry into `target` (its raw length), its chunks on `threads`: the
    /// stored bytes are read ahead first, the file beyond them on a background queue (a loader
    /// decodes tensors in file order), and, when `evictsDecoded`, dropped from memory after.
    func decode(_ e: MalFormat.Entry, into target: UnsafeMutableRawPointer, threads: Int, verify: Bool) throws {
        let dst = SharedPointer(target)
        let pool = BufferPool(size: Int(e.chunkSize))
        var stored = 0..<0
        if let first = e.chunks.first, let last = e.chunks.last { stored = Int(first.offset)..<(Int(last.offset) + Int(last.storedLength)) }
        mapping.willNeed(stored)
        readAhead.consumer(at: stored.upperBound)
        try parallelFor(e.chunks.count, threads: threads) { i in
            try self.decodeChunk(e, i, into: dst.pointer + i * Int(e.chunkSize), pool: pool, verify: verify)
        }
        if evictsDecoded { mapping.evict(stored) }
    }

    /// Checks chunk `i`'s stored bytes against its XXH64 where they lie (a raw chunk's stored
    /// bytes are its raw bytes).
    func checkStoredChunk(_ e: MalFormat.Entry, _ i: Int) throws {
        let c = e.chunks[i], s = Int(c.offset)
        if xxh64(UnsafeRawBufferPointer(rebasing: mapping.bytes[s..<(s + Int(c.storedLength))])) != c.hash {
            throw MalError(.checksumMismatch, "chunk \(i) checksum mismatch", file: path, tensor: e.name, offset: s)
        }
    }

    /// Decodes chunk `i` of a compressed tensor into `target` (room for the chunk's raw bytes)
    /// and checks its XXH64.
    /// `streaming`: the caller reads the tensor once, piece after piece (a transform), so the
    /// chunk's pages are dropped once it is copied out, raw ones too, reaching back
    /// `TensorStream.releaseReach` for what the kernel's fault-around mapped of the chunk before.
    func decodeChunk(
        _ e: MalFormat.Entry, _ i: Int, into target: UnsafeMutableRawPointer, pool: BufferPool, verify: Bool, streaming: Bool = false
    ) throws {
        let c = e.chunks[i]
        let chunkSize = Int(e.chunkSize)
        let want = min(chunkSize, Int(e.rawLength) - i * chunkSize)
        let src = mapping.bytes.baseAddress! + Int(c.offset)
        let stored = Int(c.offset)..<(Int(c.offset) + Int(c.storedLength))
        defer { if streaming { mapping.release(max(0, stored.lowerBound - TensorStream.releaseReach)..<stored.upperBound) } }
        if e.codec == .raw {
            // Verified in place; copied only for the caller.
            if verify { try checkStoredChunk(e, i) }
            target.copyMemory(from: src, byteCount: want)
            return
        } else {
            let planes = e.codec == .zstdBytePlanes ? (e.dtype.byteSize ?? 1) : 0, nibbles = e.codec == .zstdNibbles
            var scratch: UnsafeMutableRawPointer?
            defer { if let scratch { pool.put(scratch) } }
            var into = target
            if planes > 0 || nibbles {
                scratch = pool.get()
                into = scratch!
            }
            // Nibble planes are two of ceil(want / 2) bytes (want + 1 for an odd last chunk; the
            // pool's buffers hold a whole even chunk).
            let decoded = nibbles ? 2 * ((want + 1) / 2) : want
            let n = ZSTD_decompress(into, decoded, src, Int(c.storedLength))
            if ZSTD_isError(n) != 0 || n != decoded {
                let why = ZSTD_isError(n) != 0 ? String(cString: ZSTD_getErrorName(n)) : "\(n) bytes instead of \(decoded)"
                throw MalError(.decompressionFailed, "chunk \(i) does not decompress: \(why)", file: path, tensor: e.name, offset: Int(c.offset))
            }
            if planes > 0 {
                mal_unshuffle(target.assumingMemoryBound(to: UInt8.self), into.assumingMemoryBound(to: UInt8.self), want / planes, planes)
            } else if nibbles {
                mal_e4m3_join(target.assumingMemoryBound(to: UInt8.self), into.assumingMemoryBound(to: UInt8.self), want)
            }
            // The compressed bytes are done with: drop their pages from this process (the page
            // cache keeps them), so loading a model peaks near its decoded size, not that plus the file.
            if !streaming { mapping.release(stored) }
        }
        if verify && xxh64(UnsafeRawBufferPointer(start: target, count: want)) != c.hash {
            throw MalError(.checksumMismatch, "chunk \(i) checksum mismatch", file: path, tensor: e.name, offset: Int(c.offset))
        }
    }

    /// Verifies every chunk of every tensor (all chunks in parallel, decoded into reused buffers);
    /// returns the first problem in file order (tensor, chunk, offset) or nil.
    public func verifyAll(threads: Int = availableCores, progress: ((Int, Int) -> Void)? = nil) -> MalError? {
        var work: [(entry: Int, chunk: Int)] = []
        for (ei, e) in entries.enumerated() where e.codec != .alias { for ci in e.chunks.indices { work.append((ei, ci)) } }
        let maxChunk = entries.map { Int($0.chunkSize) }.max() ?? 0
        let pool = BufferPool(size: maxChunk), targets = BufferPool(size: maxChunk)
        let errors = LockedBox<[(Int, MalError)]>([])
        let items = work
        do {
            try parallelFor(items.count, threads: threads) { w in
                let (ei, ci) = items[w]
                let t = targets.get()
                defer { targets.put(t) }
                do {
                    try self.decodeChunk(self.entries[ei], ci, into: t, pool: pool, verify: true)
                } catch let e as MalError {
                    errors.withLock { $0.append((w, e)) }
                }
            }
        } catch {}
        progress?(work.count, work.count)
        return errors.withLock { $0.min { $0.0 < $1.0 }?.1 }
    }

    /// Auxiliary files (tokenizer.json, config.json, ...) stored as U8 tensors under `aux/`.
    public static let auxPrefix = MalFormat.auxPrefix

    public var auxNames: [String] {
        entries.filter { $0.name.hasPrefix(MalFile.auxPrefix) }.map { String($0.name.dropFirst(MalFile.auxPrefix.count)) }
    }

    public func aux(_ name: String) throws -> [UInt8]? {
        guard byName[MalFile.auxPrefix + name] != nil else { return nil }
        let t = try tensor(named: MalFile.auxPrefix + name)
        return Array(t.bytes)
    }

    /// Model tensors (everything but `aux/` blobs).
    public var modelEntries: [MalFormat.Entry] { entries.filter { !$0.name.hasPrefix(MalFile.auxPrefix) } }
}
