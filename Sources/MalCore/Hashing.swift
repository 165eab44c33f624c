import CMalKernels

/// XXH64 of a byte range (the checksum of the `.mal` format, `Formats/MAL.md` §Checksums).
public func xxh64(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
    guard let p = bytes.baseAddress, bytes.count > 0 else { return mal_xxh64(nil, 0, seed) }
    return mal_xxh64(p, bytes.count, seed)
}

public func xxh64(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
    bytes.withUnsafeBytes { xxh64($0, seed: seed) }
}

/// Streaming XXH64 (same result as hashing the concatenation).
public struct XXH64Stream {
    private var state = mal_xxh64_state()
    public init(seed: UInt64 = 0) { mal_xxh64_reset(&state, seed) }
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let p = bytes.baseAddress, bytes.count > 0 else { return }
        mal_xxh64_update(&state, p, bytes.count)
    }
    public mutating func update(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { update($0) }
    }
    public var digest: UInt64 { withUnsafePointer(to: state) { mal_xxh64_digest($0) } }
}
