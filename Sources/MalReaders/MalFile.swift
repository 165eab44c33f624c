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

    public var spec: ModelSpec { metadata.spec }

    /// Whether `path` should be read as a container: named `.mal` (so a damaged one reports the
    /// container's error) or starting with the magic bytes whatever its name.
    public static func isContainer(_ path: String) -> Bool { path.hasSuffix(".mal") || hasMagic(path) }

    /// Whether `path` is a regular file starting with the `.mal` magic bytes, so commands can tell
    /// a container from a safetensors file before parsing either.
    public static func hasMagic(_ path: String) -> Bool {
        guard let f = fopen(path, "rb") else { return false }
        defer { fclose(f) }
        var b = [UInt8](repeating: 0, count: 8)
        return fread(&b, 1, 8, f) == 8 && b == MalFormat.magic
    }

    public init(path: String) throws {
        self.path = path
        mapping = try MappedFile(path: path)
        let b = mapping.bytes
        let file = path
        func corrupt(_ msg: String, tensor: String? = nil, at off: Int?) -> MalError {
            MalError(.corruptStructure, msg, file: file, tensor: tensor, offset: off)
        }
        guard b.count >= MalFormat.headerSize else {
            throw MalError(.headerTooSmall, "file is \(b.count) bytes, smaller than the \(MalFormat.headerSize)-byte header",
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
            throw MalError(.unsupportedVersion,
                           "format version \(h.versionMajor).\(h.versionMinor) is not supported (this reader reads \(MalFormat.versionMajor).x)",
                           file: file, offset: 8)
        }
        if h.flags != 0 { throw MalError(.unsupportedVersion, "unknown header flags 0x\(String(h.flags, radix: 16))", file: file, offset: 12) }
        if reserved.contains(where: { $0 != 0 }) { throw corrupt("reserved header bytes are not zero", at: 72) }
        guard h.fileLength == UInt64(b.count) else {
            throw MalError(.invalidHeaderLength, "header says the file has \(h.fileLength) bytes but it has \(b.count) (truncated or extended)",
                           file: file, offset: 16)
        }
        // Layout: header | data | metadata | table, table ending at the end of the file.
        let size = UInt64(b.count)
        guard h.metadataOffset >= UInt64(MalFormat.headerSize), h.metadataLength <= size, h.tableLength <= size,
              h.metadataOffset <= size - h.metadataLength, h.metadataOffset + h.metadataLength == h.tableOffset,
              h.tableOffset <= size - h.tableLength, h.tableOffset + h.tableLength == size else {
            throw corrupt("metadata [\(h.metadataOffset), +\(h.metadataLength)) and table [\(h.tableOffset), +\(h.tableLength)) do not tile the end of the file",
                          at: 24)
        }
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
        try MalFile.checkLinks(entries, file: file, tableOffset: Int(h.tableOffset))
        try MalFile.checkScaleGrids(entries, metadata: metadata, file: file, tableOffset: Int(h.tableOffset))
        try MalFile.checkLayout(entries, bytes: b, dataEnd: Int(h.metadataOffset), file: file)
    }

    /// Checksums prove integrity, not sense: the spec's values (`ModelSpec.firstProblem`), its
    /// architecture and the recorded blocks must hold before anything is built from them.
    static func checkMetadata(_ m: MalMetadata, file: String, offset: Int) throws {
        if let problem = m.spec.firstProblem ?? m.firstBlockProblem {
            throw MalError(.corruptStructure, "metadata spec: \(problem)", file: file, offset: offset)
        }
        if ArchitectureRegistry.architecture(modelType: m.spec.modelType) == nil {
            throw MalError(.unknownArchitecture, "metadata spec: unknown architecture '\(m.spec.modelType)' (supported: "
                           + "\(ArchitectureRegistry.modelTypes.joined(separator: ", ")))", file: file, offset: offset)
        }
    }

    /// A quantised weight is 2-D and its scale grid has the shape its block gives
    /// (`Formats/MAL.md` §8), so the runtime, `export` and `verify` read every file `check` accepts.
    public static func checkScaleGrids(_ entries: [MalFormat.Entry], metadata: MalMetadata, file: String, tableOffset: Int) throws {
        for e in entries where e.flags & MalFormat.flagQuantized != 0 {
            let grid = entries[Int(e.link)].shape, block = metadata.block(of: e.name)
            guard e.shape.count == 2, grid == block.scaleShape(e.shape) else {
                throw MalError(.corruptStructure, "quantised weight of shape \(e.shape) has a scale grid \(grid), not the "
                               + "\(e.shape.count == 2 ? "\(block.scaleShape(e.shape))" : "2-D grid") its \(block) blocks give",
                               file: file, tensor: e.name, offset: tableOffset)
            }
        }
    }

    static func parseTable(_ t: UnsafeRawBufferPointer, base: Int, dataEnd: Int, file: String) throws -> [MalFormat.Entry] {
        var r = ByteReader(t, file: file, base: base)
        let count = Int(try r.u32("tensor count"))
        _ = try r.u32("reserved")
        // Every record takes at least `fixedSize` bytes: bound the count before allocating.
        guard count <= r.remaining / MalFormat.Entry.fixedSize else {
            throw MalError(.corruptStructure, "table claims \(count) tensors but has room for at most \(r.remaining / MalFormat.Entry.fixedSize)",
                           file: file, offset: base)
        }
        var out: [MalFormat.Entry] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            let at = base + r.position
            func bad(_ m: String, _ name: String? = nil) -> MalError { MalError(.corruptStructure, m, file: file, tensor: name, offset: at) }
            let nameLength = Int(try r.u16("name length"))
            let dcode = try r.u8("dtype")
            let ccode = try r.u8("codec")
            let rank = Int(try r.u8("rank"))
            let flags = try r.u8("flags")
            let reserved = try r.u16("reserved")
            let chunkSize = try r.u32("chunk size")
            let link = try r.u32("link")
            let rawLength = try r.u64("raw length")
            let hash = try r.u64("tensor hash")
            let chunkCount = Int(try r.u32("chunk count"))
            let reserved2 = try r.u32("reserved")
            guard rank <= MalFormat.maxRank else { throw bad("rank \(rank) exceeds \(MalFormat.maxRank)") }
            var shape: [Int] = []
            for _ in 0..<rank {
                let d = try r.u64("dimension")
                guard d < UInt64(1) << 48 else { throw bad("dimension \(d) is too large") }
                shape.append(Int(d))
            }
            guard nameLength > 0, nameLength <= MalFormat.maxNameLength else { throw bad("name length \(nameLength) out of range") }
            guard let name = String(validating: try r.raw(nameLength, "name"), as: UTF8.self) else {
                throw bad("tensor name is not valid UTF-8")
            }
            guard let dtype = MalFormat.dtypeByCode[dcode] else {
                throw MalError(.unknownDType, "unknown dtype code \(dcode)", file: file, tensor: name, offset: at + 2)
            }
            guard let codec = MalFormat.Codec(rawValue: ccode) else {
                throw MalError(.unsupported, "unknown codec \(ccode) (this reader knows raw, zstd, zstd+planes, alias)",
                               file: file, tensor: name, offset: at + 3)
            }
            guard flags & ~MalFormat.knownFlags == 0 else { throw bad("unknown tensor flags 0x\(String(flags, radix: 16))", name) }
            guard reserved == 0, reserved2 == 0 else { throw bad("reserved fields are not zero", name) }
            guard let elements = elementCount(shape), let bytes = dtype.byteCount(elements: elements), UInt64(bytes) == rawLength else {
                throw bad("raw length \(rawLength) does not match shape \(shape) of \(dtype.rawValue)", name)
            }
            guard chunkCount <= r.remaining / MalFormat.Entry.chunkRecordSize else {
                throw bad("\(chunkCount) chunks do not fit in the rest of the table", name)
            }
            var chunks: [MalFormat.Chunk] = []
            chunks.reserveCapacity(chunkCount)
            for _ in 0..<chunkCount {
                let off = try r.u64("chunk offset")
                let len = try r.u32("chunk length")
                let res = try r.u32("reserved")
                let h = try r.u64("chunk hash")
                guard res == 0 else { throw bad("reserved chunk field is not zero", name) }
                chunks.append(MalFormat.Chunk(offset: off, storedLength: len, hash: h))
            }
            if codec == .alias {
                guard chunkCount == 0 else { throw bad("an alias has no chunks", name) }
            } else {
                let cs = Int(chunkSize)
                guard cs >= MalFormat.minChunkSize, cs <= MalFormat.maxChunkSize, cs % 8 == 0 else {
                    throw bad("chunk size \(chunkSize) out of range", name)
                }
                let expected = (bytes + cs - 1) / cs
                guard chunkCount == expected else { throw bad("\(chunkCount) chunks for \(bytes) bytes in \(cs)-byte chunks (expected \(expected))", name) }
                if codec == .zstdBytePlanes && (dtype.byteSize ?? 0) < 2 {
                    throw bad("byte planes need an element of 2 or more bytes, not \(dtype.rawValue)", name)
                }
                for (i, c) in chunks.enumerated() {
                    let want = min(cs, bytes - i * cs)
                    let maxStored = codec == .raw ? want : MalFormat.maxStoredChunk(want)
                    guard c.storedLength > 0, Int(c.storedLength) <= maxStored, c.offset >= UInt64(MalFormat.headerSize),
                          c.offset <= UInt64(dataEnd), UInt64(c.storedLength) <= UInt64(dataEnd) - c.offset else {
                        throw MalError(.corruptStructure, "chunk \(i) [\(c.offset), +\(c.storedLength)) lies outside the data region or is too long",
                                       file: file, tensor: name, offset: at)
                    }
                    if codec == .raw {
                        guard Int(c.storedLength) == want, c.offset == chunks[0].offset + UInt64(i * cs) else {
                            throw bad("raw chunks must be contiguous", name)
                        }
                    }
                }
                if codec == .raw, let first = chunks.first, first.offset % UInt64(MalFormat.rawAlignment) != 0 {
                    throw bad("raw data is not \(MalFormat.rawAlignment)-byte aligned", name)
                }
                var hs = [UInt64](); hs.reserveCapacity(chunks.count)
                for c in chunks { hs.append(c.hash) }
                guard MalFormat.tensorHash(hs) == hash else {
                    throw MalError(.checksumMismatch, "tensor checksum does not match its chunk checksums", file: file, tensor: name, offset: at)
                }
            }
            out.append(MalFormat.Entry(name: name, dtype: dtype, codec: codec, flags: flags, shape: shape, chunkSize: chunkSize,
                                       link: link, rawLength: rawLength, hash: hash, chunks: chunks))
        }
        guard r.remaining == 0 else {
            throw MalError(.corruptStructure, "\(r.remaining) unexpected bytes after the last table record", file: file, offset: base + r.position)
        }
        return out
    }

    static func checkLinks(_ entries: [MalFormat.Entry], file: String, tableOffset: Int) throws {
        for e in entries {
            let needsLink = e.codec == .alias || e.flags & MalFormat.flagQuantized != 0
            if !needsLink {
                guard e.link == MalFormat.noLink else {
                    throw MalError(.corruptStructure, "unexpected link \(e.link)", file: file, tensor: e.name, offset: tableOffset)
                }
                continue
            }
            guard Int(e.link) < entries.count else {
                throw MalError(.corruptStructure, "link \(e.link) is not a tensor index", file: file, tensor: e.name, offset: tableOffset)
            }
            let t = entries[Int(e.link)]
            if e.codec == .alias {
                guard t.codec != .alias, t.dtype == e.dtype, t.shape == e.shape, t.hash == e.hash else {
                    throw MalError(.corruptStructure, "alias target '\(t.name)' differs in dtype, shape or checksum",
                                   file: file, tensor: e.name, offset: tableOffset)
                }
            } else {
                guard t.codec != .alias, t.dtype.isFloatingPoint, !t.dtype.isFP8 else {
                    throw MalError(.corruptStructure, "scale tensor '\(t.name)' is not a float tensor", file: file, tensor: e.name,
                                   offset: tableOffset)
                }
            }
        }
    }

    /// Chunks must not overlap, and every byte of the data region that no chunk covers must be
    /// zero alignment padding (at most 63 bytes at a time), so that no byte of the file escapes a check.
    static func checkLayout(_ entries: [MalFormat.Entry], bytes: UnsafeRawBufferPointer, dataEnd: Int, file: String) throws {
        var regions: [(start: Int, end: Int, tensor: Int)] = []
        for (ti, e) in entries.enumerated() { for c in e.chunks { regions.append((Int(c.offset), Int(c.offset) + Int(c.storedLength), ti)) } }
        regions.sort { $0.start < $1.start }
        var pos = MalFormat.headerSize
        func checkGap(_ from: Int, _ to: Int, before: String?) throws {
            guard to - from < MalFormat.rawAlignment else {
                throw MalError(.corruptStructure, "\(to - from) bytes at [\(from), \(to)) belong to no tensor", file: file, tensor: before, offset: from)
            }
            for i in from..<to where bytes[i] != 0 {
                throw MalError(.checksumMismatch, "padding byte is not zero (corrupt)", file: file, tensor: before, offset: i)
            }
        }
        for r in regions {
            if r.start < pos {
                throw MalError(.corruptStructure, "chunk overlaps the previous one", file: file, tensor: entries[r.tensor].name, offset: r.start)
            }
            try checkGap(pos, r.start, before: entries[r.tensor].name)
            pos = r.end
        }
        try checkGap(pos, dataEnd, before: nil)
    }

    // MARK: access

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
        let sb = SendableBytes(mapping.bytes)
        let b = mapping.bytes
        let file = path
        if e.codec == .raw {
            let start = Int(e.chunks.first?.offset ?? UInt64(MalFormat.headerSize))
            let view = UnsafeRawBufferPointer(rebasing: b[start..<(start + total)])
            if verify {
                let chunks = e.chunks
                try parallelFor(chunks.count, threads: threads) { i in
                    let c = chunks[i]
                    let s = Int(c.offset)
                    if xxh64(UnsafeRawBufferPointer(rebasing: sb.buffer[s..<(s + Int(c.storedLength))])) != c.hash {
                        throw MalError(.checksumMismatch, "chunk \(i) checksum mismatch", file: file, tensor: e.name, offset: s)
                    }
                }
            }
            return TensorStorage(borrowing: view, owner: mapping)
        }
        let storage: TensorStorage
        do { storage = try TensorStorage.allocate(count: total) } catch let err as MalError {
            throw MalError(err.kind, "decodes to \(total) bytes: " + err.message, file: path, tensor: e.name)
        }
        let dst = SendableRawPointer(UnsafeMutableRawPointer(mutating: storage.bytes.baseAddress!))
        let pool = BufferPool(size: Int(e.chunkSize))
        try parallelFor(e.chunks.count, threads: threads) { i in
            try self.decodeChunk(e, i, into: dst.pointer + i * Int(e.chunkSize), pool: pool, verify: verify)
        }
        return storage
    }

    /// Decodes chunk `i` of a compressed tensor into `target` (room for the chunk's raw bytes)
    /// and checks its XXH64.
    func decodeChunk(_ e: MalFormat.Entry, _ i: Int, into target: UnsafeMutableRawPointer, pool: BufferPool, verify: Bool) throws {
        let c = e.chunks[i]
        let chunkSize = Int(e.chunkSize)
        let want = min(chunkSize, Int(e.rawLength) - i * chunkSize)
        let src = mapping.bytes.baseAddress! + Int(c.offset)
        if e.codec == .raw {
            // Verified in place; copied only for the caller.
            if verify && xxh64(UnsafeRawBufferPointer(start: src, count: want)) != c.hash {
                throw MalError(.checksumMismatch, "chunk \(i) checksum mismatch", file: path, tensor: e.name, offset: Int(c.offset))
            }
            target.copyMemory(from: src, byteCount: want)
            return
        } else {
            let planes = e.codec == .zstdBytePlanes ? (e.dtype.byteSize ?? 1) : 0
            var scratch: UnsafeMutableRawPointer?
            defer { if let scratch { pool.put(scratch) } }
            var into = target
            if planes > 0 {
                scratch = pool.get()
                into = scratch!
            }
            let n = ZSTD_decompress(into, want, src, Int(c.storedLength))
            if ZSTD_isError(n) != 0 || n != want {
                let why = ZSTD_isError(n) != 0 ? String(cString: ZSTD_getErrorName(n)) : "\(n) bytes instead of \(want)"
                throw MalError(.decompressionFailed, "chunk \(i) does not decompress: \(why)", file: path, tensor: e.name, offset: Int(c.offset))
            }
            if planes > 0 {
                mal_unshuffle(target.assumingMemoryBound(to: UInt8.self), into.assumingMemoryBound(to: UInt8.self), want / planes, planes)
            }
            // The compressed bytes are done with: drop their pages from this process (the page
            // cache keeps them), so loading a model peaks near its decoded size, not that plus the file.
            mapping.release(Int(c.offset)..<(Int(c.offset) + Int(c.storedLength)))
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
