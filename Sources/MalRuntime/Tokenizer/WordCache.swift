import MalCore

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
                let same = keys.withUnsafeBufferPointer { k in bytesEqual(k.baseAddress! + Int(entry.keyStart), word.baseAddress, word.count) }
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
