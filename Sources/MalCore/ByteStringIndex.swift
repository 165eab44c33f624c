/// Open-addressing hash index keyed by byte strings: the tokenizer's vocabulary (token bytes →
/// id) and `tokenizer.json`'s vocabulary keys while its merges are resolved. Swift's
/// `Dictionary` hashes `String` and `[UInt8]` keys with SipHash (and normalises strings), which
/// made loading a 128K vocabulary slow.

/// FNV-1a over the bytes: keys are short (words, tokens) and come from the text or the
/// vocabulary, not from an adversary who could aim for collisions … and a collision only costs
/// a longer probe.
@inline(__always)
public func byteHash(_ p: UnsafeBufferPointer<UInt8>) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in p { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    return h
}

/// Byte string → index over the strings of a `TokenTable` (the table holds indices only; the
/// first of equal strings wins).
public struct ByteStringIndex: Sendable {
    private var slots: [Int32]
    private let mask: Int
    /// The vocabulary's bytes (shared with the model, not copied).
    private let table: TokenTable
    /// Strings that equal an earlier one (not indexed).
    public private(set) var duplicates: [Int] = []

    public init(_ tokens: TokenTable) {
        table = tokens
        var cap = 16
        while cap < tokens.count * 2 { cap <<= 1 }
        slots = [Int32](repeating: -1, count: cap)
        mask = cap - 1
        let m = mask
        var dups: [Int] = []
        tokens.arena.withUnsafeBufferPointer { a in
            slots.withUnsafeMutableBufferPointer { slots in
                for id in tokens.indices where !tokens.missing[id] {
                    let r = tokens.range(id)
                    let key = UnsafeBufferPointer(rebasing: a[r])
                    var i = Int(truncatingIfNeeded: byteHash(key)) & m
                    // The first id of a byte string wins (as the dictionary it replaces).
                    while slots[i] >= 0 {
                        let o = tokens.range(Int(slots[i]))
                        if o.count == key.count && bytesEqual(a.baseAddress! + o.lowerBound, key.baseAddress, key.count) { break }
                        i = (i + 1) & m
                    }
                    if slots[i] < 0 { slots[i] = Int32(id) } else { dups.append(id) }
                }
            }
        }
        duplicates = dups
    }

    private func bytes(_ id: Int) -> Range<Int> { table.range(id) }

    /// The id of exactly these bytes, if the vocabulary has them.
    public func find(_ key: UnsafeBufferPointer<UInt8>) -> Int32? {
        var i = Int(truncatingIfNeeded: byteHash(key)) & mask
        return table.arena.withUnsafeBufferPointer { a in
            while true {
                let id = slots[i]
                if id < 0 { return nil }
                let r = bytes(Int(id))
                if r.count == key.count && bytesEqual(a.baseAddress! + r.lowerBound, key.baseAddress, key.count) { return id }
                i = (i + 1) & mask
            }
        }
    }

    public func find(_ key: [UInt8]) -> Int32? { key.withUnsafeBufferPointer { find($0) } }
}

@inline(__always)
public func bytesEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>?, _ n: Int) -> Bool {
    guard n > 0, let b else { return true }
    for k in 0..<n where a[k] != b[k] { return false }
    return true
}
