/// Open-addressing hash tables keyed by byte strings, for the tokenizer's two lookups by bytes:
/// the vocabulary (token bytes → id) and the per-call word cache (a pre-token's bytes → its ids).
/// Swift's `Dictionary<[UInt8], _>` hashes with SipHash and needs an array per key, which made
/// loading a 128K vocabulary and looking up whole words (Llama 3's `ignore_merges`) slow.

/// FNV-1a over the bytes: keys are short (words, tokens) and come from the text or the
/// vocabulary, not from an adversary who could aim for collisions … and a collision only costs
/// a longer probe.
@inline(__always)
func byteHash(_ p: UnsafeBufferPointer<UInt8>) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in p { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    return h
}

/// Token bytes → id over the vocabulary's own byte arrays (the table holds ids only).
struct VocabularyLookup {
    private var slots: [Int32]
    private let mask: Int
    /// Every token's bytes, concatenated, with `starts[id]..<starts[id + 1]` its range.
    private let arena: [UInt8]
    private let starts: [Int]

    init(_ tokens: [[UInt8]?]) {
        var arena: [UInt8] = [], starts = [0]
        arena.reserveCapacity(tokens.count * 8)
        starts.reserveCapacity(tokens.count + 1)
        for t in tokens {
            if let t { arena += t }
            starts.append(arena.count)
        }
        var cap = 16
        while cap < tokens.count * 2 { cap <<= 1 }
        slots = [Int32](repeating: -1, count: cap)
        mask = cap - 1
        self.arena = arena
        self.starts = starts
        let m = mask
        arena.withUnsafeBufferPointer { a in
            slots.withUnsafeMutableBufferPointer { table in
                for (id, t) in tokens.enumerated() where t != nil {
                    let key = UnsafeBufferPointer(rebasing: a[starts[id]..<starts[id + 1]])
                    var i = Int(truncatingIfNeeded: byteHash(key)) & m
                    // The first id of a byte string wins (as the dictionary it replaces).
                    while table[i] >= 0 {
                        let o = Int(table[i])
                        if starts[o + 1] - starts[o] == key.count && memcmpEqual(a.baseAddress! + starts[o], key.baseAddress, key.count) { break }
                        i = (i + 1) & m
                    }
                    if table[i] < 0 { table[i] = Int32(id) }
                }
            }
        }
    }

    private func bytes(_ id: Int) -> Range<Int> { starts[id]..<starts[id + 1] }

    /// The id of exactly these bytes, if the vocabulary has them.
    func find(_ key: UnsafeBufferPointer<UInt8>) -> Int32? {
        var i = Int(truncatingIfNeeded: byteHash(key)) & mask
        return arena.withUnsafeBufferPointer { a in
            while true {
                let id = slots[i]
                if id < 0 { return nil }
                let r = bytes(Int(id))
                if r.count == key.count && memcmpEqual(a.baseAddress! + r.lowerBound, key.baseAddress, key.count) { return id }
                i = (i + 1) & mask
            }
        }
    }

    func find(_ key: [UInt8]) -> Int32? { key.withUnsafeBufferPointer { find($0) } }
}

@inline(__always)
private func memcmpEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>?, _ n: Int) -> Bool {
    guard n > 0, let b else { return true }
    for k in 0..<n where a[k] != b[k] { return false }
    return true
}

/// A pre-token's bytes → its ids, for one `encode` call: words repeat in real text, and BPE of a
/// word is a pure function of its bytes, so a hit gives exactly the ids BPE would. Cleared when
/// full (a bounded memory, not an LRU: one call over megabytes of text still mostly hits).
struct WordCache {
    static let capacity = 1 << 15
    static let maxWordBytes = 48
    private var slots = [Int32](repeating: -1, count: capacity * 2)
    /// Per entry: its key's range in `keys` and its ids' range in `ids`.
    private var entries: [(keyStart: Int32, keyCount: Int32, idStart: Int32, idCount: Int32)] = []
    private var keys: [UInt8] = []
    private var ids: [Int32] = []

    init() {
        entries.reserveCapacity(WordCache.capacity)
    }

    /// Appends the cached ids of `word` to `out`; false on a miss.
    mutating func lookup(_ word: UnsafeBufferPointer<UInt8>, hash: UInt64, into out: inout [Int32]) -> Bool {
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: hash) & mask
        while true {
            let e = slots[i]
            if e < 0 { return false }
            let entry = entries[Int(e)]
            if Int(entry.keyCount) == word.count {
                let same = keys.withUnsafeBufferPointer { k in memcmpEqual(k.baseAddress! + Int(entry.keyStart), word.baseAddress, word.count) }
                if same {
                    out.append(contentsOf: ids[Int(entry.idStart)..<Int(entry.idStart + entry.idCount)])
                    return true
                }
            }
            i = (i + 1) & mask
        }
    }

    mutating func insert(_ word: UnsafeBufferPointer<UInt8>, hash: UInt64, ids result: ArraySlice<Int32>) {
        if entries.count >= WordCache.capacity {
            for k in slots.indices { slots[k] = -1 }
            entries.removeAll(keepingCapacity: true)
            keys.removeAll(keepingCapacity: true)
            ids.removeAll(keepingCapacity: true)
        }
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: hash) & mask
        while slots[i] >= 0 { i = (i + 1) & mask }
        slots[i] = Int32(entries.count)
        entries.append((Int32(keys.count), Int32(word.count), Int32(ids.count), Int32(result.count)))
        keys.append(contentsOf: word)
        ids.append(contentsOf: result)
    }
}
