/// Constants and binary records of the `.mal` container, version 1 (`Formats/MAL.md`).
///
/// All integers are little-endian. A file is: a 96-byte header, the data region (tensor chunks),
/// the metadata JSON, the tensor table. The header points at the metadata and the table and holds
/// their XXH64 checksums and its own.
public enum MalFormat {
    public static let magic: [UInt8] = [0x89, 0x4D, 0x41, 0x4C, 0x0D, 0x0A, 0x1A, 0x0A]  // \x89 M A L \r \n \x1a \n
    public static let versionMajor: UInt16 = 1
    public static let versionMinor: UInt16 = 0
    public static let headerSize = 96
    /// Raw (uncompressed) tensors start on this boundary so they can be mapped without copying.
    public static let rawAlignment = 64
    public static let defaultChunkSize = 1 << 20
    public static let minChunkSize = 1 << 12
    public static let maxChunkSize = 1 << 26
    public static let maxRank = 8
    /// Auxiliary files (tokenizer.json, config.json, ...) are stored as U8 tensors under `aux/`.
    public static let auxPrefix = "aux/"
    /// The tokenizer in its fast-loading binary form (`Formats/MAL.md`, `aux/tokenizer.bin`).
    public static let tokenizerBinaryName = "tokenizer.bin"
    public static let maxNameLength = 1024
    /// Largest stored (compressed) size of a chunk of `n` bytes: zstd's worst case for one frame
    /// (`ZSTD_COMPRESSBOUND`: n + n/256 + margin) plus 1 KiB for the per-plane frame headers.
    public static func maxStoredChunk(_ n: Int) -> Int {
        n + (n >> 8) + (n < (128 << 10) ? ((128 << 10) - n) >> 11 : 0) + 1024
    }

    /// `link` value meaning "no linked tensor".
    public static let noLink: UInt32 = 0xFFFF_FFFF

    /// Stable on-disk dtype codes (never reuse a number).
    public static let dtypeCodes: [DType: UInt8] = [
        .bool: 1, .u8: 2, .i8: 3, .u16: 4, .i16: 5, .u32: 6, .i32: 7, .u64: 8, .i64: 9,
        .f16: 10, .bf16: 11, .f32: 12, .f64: 13, .f8e4m3: 14, .f8e5m2: 15, .f8e8m0: 16,
        .f8e4m3fnuz: 17, .f8e5m2fnuz: 18, .c64: 19, .f4: 20, .f6e2m3: 21, .f6e3m2: 22,
    ]
    public static let dtypeByCode: [UInt8: DType] = Dictionary(uniqueKeysWithValues: dtypeCodes.map { ($1, $0) })

    /// How a tensor's bytes are stored.
    public enum Codec: UInt8, Sendable, Codable, CustomStringConvertible {
        /// Uncompressed, contiguous, starting on a 64-byte boundary.
        case raw = 0
        /// Each chunk is one zstd frame of the chunk's bytes.
        case zstd = 1
        /// Each chunk's elements are split into byte planes (`Formats/MAL.md` §Byte planes), then zstd.
        case zstdBytePlanes = 2
        /// No data: the tensor is the tensor named by `link` (tied or shared weights).
        case alias = 3
        /// FP8 E4M3 only: each chunk's bytes split into an exponent and a sign-mantissa nibble
        /// plane (`Formats/MAL.md` §6), one zstd frame each.
        case zstdNibbles = 4

        public var description: String {
            switch self {
            case .raw: return "raw"
            case .zstd: return "zstd"
            case .zstdBytePlanes: return "zstd+planes"
            case .alias: return "alias"
            case .zstdNibbles: return "zstd+nibbles"
            }
        }
    }

    /// Tensor flags (bit set): the tensor is an FP8/INT block-quantised weight whose `link` is its scale.
    public static let flagQuantized: UInt8 = 1
    public static let knownFlags: UInt8 = 1

    public struct Header: Equatable, Sendable {
        public var versionMajor: UInt16 = MalFormat.versionMajor
        public var versionMinor: UInt16 = MalFormat.versionMinor
        public var flags: UInt32 = 0
        public var fileLength: UInt64 = 0
        public var metadataOffset: UInt64 = 0
        public var metadataLength: UInt64 = 0
        public var tableOffset: UInt64 = 0
        public var tableLength: UInt64 = 0
        public var metadataHash: UInt64 = 0
        public var tableHash: UInt64 = 0

        public init() {}

        /// 96 bytes; the last 8 are XXH64 of the first 88.
        public func encoded() -> [UInt8] {
            var w = ByteWriter()
            w.bytes(MalFormat.magic)
            w.u16(versionMajor); w.u16(versionMinor); w.u32(flags)
            w.u64(fileLength); w.u64(metadataOffset); w.u64(metadataLength); w.u64(tableOffset); w.u64(tableLength)
            w.u64(metadataHash); w.u64(tableHash)
            w.bytes([UInt8](repeating: 0, count: 16))
            w.u64(xxh64(w.data))
            return w.data
        }
    }

    /// One chunk of a tensor: where its stored bytes are and the XXH64 of its uncompressed bytes.
    public struct Chunk: Equatable, Sendable {
        public var offset: UInt64
        public var storedLength: UInt32
        public var hash: UInt64
        public init(offset: UInt64, storedLength: UInt32, hash: UInt64) {
            self.offset = offset
            self.storedLength = storedLength
            self.hash = hash
        }
    }

    /// One tensor-table record.
    public struct Entry: Equatable, Sendable {
        public var name: String
        public var dtype: DType
        public var codec: Codec
        public var flags: UInt8
        public var shape: [Int]
        public var chunkSize: UInt32
        public var link: UInt32
        public var rawLength: UInt64
        /// XXH64 over the little-endian chunk hashes: a checksum of the uncompressed bytes.
        public var hash: UInt64
        public var chunks: [Chunk]

        public init(
            name: String, dtype: DType, codec: Codec, flags: UInt8 = 0, shape: [Int], chunkSize: UInt32,
            link: UInt32 = MalFormat.noLink, rawLength: UInt64, hash: UInt64, chunks: [Chunk]
        ) {
            self.name = name
            self.dtype = dtype
            self.codec = codec
            self.flags = flags
            self.shape = shape
            self.chunkSize = chunkSize
            self.link = link
            self.rawLength = rawLength
            self.hash = hash
            self.chunks = chunks
        }

        /// Bytes of the fixed part of a record (before dims, name and chunks).
        public static let fixedSize = 40
        public static let chunkRecordSize = 24

        public func encode(into w: inout ByteWriter) {
            let nameBytes = Array(name.utf8)
            w.u16(UInt16(nameBytes.count))
            w.u8(MalFormat.dtypeCodes[dtype]!)
            w.u8(codec.rawValue)
            w.u8(UInt8(shape.count))
            w.u8(flags)
            w.u16(0)
            w.u32(chunkSize)
            w.u32(link)
            w.u64(rawLength)
            w.u64(hash)
            w.u32(UInt32(chunks.count))
            w.u32(0)
            for d in shape { w.u64(UInt64(d)) }
            w.bytes(nameBytes)
            for c in chunks { w.u64(c.offset); w.u32(c.storedLength); w.u32(0); w.u64(c.hash) }
        }
    }

    /// The tensor checksum: XXH64 of the concatenated little-endian chunk hashes.
    public static func tensorHash(_ chunkHashes: [UInt64]) -> UInt64 {
        var s = XXH64Stream()
        for h in chunkHashes { s.update(h) }
        return s.digest
    }
}

/// Little-endian byte building.
public struct ByteWriter {
    public var data: [UInt8] = []
    public init() {}
    public mutating func u8(_ v: UInt8) { data.append(v) }
    public mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    public mutating func bytes(_ b: [UInt8]) { data.append(contentsOf: b) }
}

/// Bounds-checked little-endian reading; every read past the end throws.
public struct ByteReader {
    public let bytes: UnsafeRawBufferPointer
    public var position: Int
    let file: String
    /// File offset of `bytes[0]` (for error messages).
    let base: Int

    public init(_ bytes: UnsafeRawBufferPointer, file: String, base: Int = 0) {
        self.bytes = bytes
        self.position = 0
        self.file = file
        self.base = base
    }

    public var remaining: Int { bytes.count - position }

    mutating func need(_ n: Int, _ what: String) throws {
        if n < 0 || n > remaining {
            throw MalError(
                .invalidHeaderLength, "truncated: \(what) needs \(n) bytes, \(remaining) left", file: file,
                offset: base + position)
        }
    }

    public mutating func u8(_ what: String) throws -> UInt8 {
        try need(1, what); defer { position += 1 }
        return bytes[position]
    }
    public mutating func u16(_ what: String) throws -> UInt16 {
        try need(2, what); defer { position += 2 }
        return UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: UInt16.self))
    }
    public mutating func u32(_ what: String) throws -> UInt32 {
        try need(4, what); defer { position += 4 }
        return UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: UInt32.self))
    }
    public mutating func u64(_ what: String) throws -> UInt64 {
        try need(8, what); defer { position += 8 }
        return UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: UInt64.self))
    }
    public mutating func raw(_ n: Int, _ what: String) throws -> UnsafeRawBufferPointer {
        try need(n, what); defer { position += n }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + n)])
    }
}
