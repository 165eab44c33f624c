import Foundation
import MalArchitectures
import MalCore

/// The checks a `.mal` file passes at open, after its checksums (`Formats/MAL.md` §5–§8, §10):
/// checksums prove a file intact, these that it makes sense, before anything is allocated or
/// built from it.
extension MalFile {
    /// Checksums prove integrity, not sense: the spec's values (`ModelSpec.firstProblem`), its
    /// architecture and the recorded blocks must hold before anything is built from them.
    static func checkMetadata(_ m: MalMetadata, file: String, offset: Int) throws {
        if let problem = m.spec.firstProblem ?? m.firstBlockProblem {
            throw MalError(.corruptStructure, "metadata spec: \(problem)", file: file, offset: offset)
        }
        if ArchitectureRegistry.architecture(modelType: m.spec.modelType) == nil {
            throw MalError(
                .unknownArchitecture,
                "metadata spec: unknown architecture '\(m.spec.modelType)' (supported: "
                    + "\(ArchitectureRegistry.modelTypes.joined(separator: ", ")))", file: file, offset: offset)
        }
    }

    /// A quantised weight is 2-D and its scale grid has the shape its block gives
    /// (`Formats/MAL.md` §8), so the runtime, `export` and `verify` read every file `check` accepts.
    public static func checkScaleGrids(_ entries: [MalFormat.Entry], metadata: MalMetadata, file: String, tableOffset: Int) throws {
        for e in entries where e.flags & MalFormat.flagQuantized != 0 {
            let grid = entries[Int(e.link)].shape, block = metadata.block(of: e.name)
            guard e.shape.count == 2, grid == block.scaleShape(e.shape) else {
                throw MalError(
                    .corruptStructure,
                    "quantised weight of shape \(e.shape) has a scale grid \(grid), not the "
                        + "\(e.shape.count == 2 ? "\(block.scaleShape(e.shape))" : "2-D grid") its \(block) blocks give",
                    file: file, tensor: e.name, offset: tableOffset)
            }
        }
    }

    /// The tensor table (§5). Long because it checks a record's fields in the order §5 lists
    /// them, each bound before anything is allocated from it, with the record's offset in errors.
    static func parseTable(_ t: UnsafeRawBufferPointer, base: Int, dataEnd: Int, file: String) throws -> [MalFormat.Entry] {
        var r = ByteReader(t, file: file, base: base)
        let count = Int(try r.u32("tensor count"))
        _ = try r.u32("reserved")
        // Every record takes at least `fixedSize` bytes: bound the count before allocating.
        guard count <= r.remaining / MalFormat.Entry.fixedSize else {
            throw MalError(
                .corruptStructure, "table claims \(count) tensors but has room for at most \(r.remaining / MalFormat.Entry.fixedSize)",
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
                throw MalError(
                    .unsupported, "unknown codec \(ccode) (this reader knows raw, zstd, zstd+planes, alias)",
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
                if codec == .zstdNibbles && dtype != .f8e4m3 {
                    throw bad("nibble planes are for F8_E4M3 only, not \(dtype.rawValue)", name)
                }
                for (i, c) in chunks.enumerated() {
                    let want = min(cs, bytes - i * cs)
                    let maxStored = codec == .raw ? want : MalFormat.maxStoredChunk(want)
                    guard c.storedLength > 0, Int(c.storedLength) <= maxStored, c.offset >= UInt64(MalFormat.headerSize),
                        c.offset <= UInt64(dataEnd), UInt64(c.storedLength) <= UInt64(dataEnd) - c.offset
                    else {
                        throw MalError(
                            .corruptStructure, "chunk \(i) [\(c.offset), +\(c.storedLength)) lies outside the data region or is too long",
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
            out.append(
                MalFormat.Entry(
                    name: name, dtype: dtype, codec: codec, flags: flags, shape: shape, chunkSize: chunkSize,
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
                    throw MalError(
                        .corruptStructure, "alias target '\(t.name)' differs in dtype, shape or checksum",
                        file: file, tensor: e.name, offset: tableOffset)
                }
            } else {
                guard t.codec != .alias, t.dtype.isFloatingPoint, !t.dtype.isFP8 else {
                    throw MalError(
                        .corruptStructure, "scale tensor '\(t.name)' is not a float tensor", file: file, tensor: e.name,
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
}
