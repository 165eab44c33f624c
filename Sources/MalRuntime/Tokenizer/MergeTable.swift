/// Open-addressing hash map from a token pair to its merge (rank, merged id): the inner loop of
/// BPE. Swift's `Dictionary` hashes with SipHash, which cost 60% of encoding time; a
/// multiplicative hash over the packed pair is enough here (keys are not adversarial: they come
/// from the vocabulary).
struct MergeTable {
    /// Key (the packed pair) and value (rank << 32 | merged id) side by side: one cache line
    /// per probe, when building and when looking up.
    private var slots: [(key: UInt64, value: UInt64)]
    private let mask: Int
    private let shift: UInt64

    static let empty = UInt64.max

    init(_ merges: [(Int32, Int32, Int32)]) {
        var cap = 16
        while cap < merges.count * 3 / 2 { cap <<= 1 }  // load factor at most 2/3
        var table = [(key: UInt64, value: UInt64)](repeating: (MergeTable.empty, 0), count: cap)
        let m = cap - 1, sh = UInt64(64 - cap.trailingZeroBitCount)
        table.withUnsafeMutableBufferPointer { t in
            for (rank, (a, b, c)) in merges.enumerated() {
                let k = MergeTable.key(a, b)
                var i = MergeTable.slot(k, sh)
                while t[i].key != MergeTable.empty && t[i].key != k { i = (i + 1) & m }
                if t[i].key == MergeTable.empty {  // the first (lowest-rank) merge of a pair wins
                    t[i] = (k, UInt64(UInt32(rank)) << 32 | UInt64(UInt32(bitPattern: c)))
                }
            }
        }
        slots = table
        mask = m
        shift = sh
    }

    @inline(__always) static func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b)) }
    @inline(__always) static func slot(_ k: UInt64, _ shift: UInt64) -> Int { Int(truncatingIfNeeded: (k &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    /// (rank, merged id) of the pair, or rank Int32.max.
    @inline(__always)
    func lookup(_ a: Int32, _ b: Int32) -> (rank: Int32, result: Int32) {
        let k = MergeTable.key(a, b)
        var i = MergeTable.slot(k, shift)
        while true {
            let s = slots[i]
            if s.key == k { return (Int32(truncatingIfNeeded: s.value >> 32), Int32(truncatingIfNeeded: s.value & 0xFFFF_FFFF)) }
            if s.key == MergeTable.empty { return (Int32.max, -1) }
            i = (i + 1) & mask
        }
    }
}

/// BPE over a word's initial symbol ids, merging the lowest-rank adjacent pair first (leftmost
/// on ties), exactly as HF tokenizers' `Word::merge_all`. Short words use a linear scan; long
/// ones (a 12 kB run of CJK letters is one GPT-2 pre-token) a heap over a linked list, O(n log n).
struct BPEMerger {
    // Reused scratch (one merger per encode call).
    var prev: [Int32] = [], next: [Int32] = [], ids: [Int32] = [], version: [UInt32] = []
    var heap = BinaryHeap<Candidate>()

    /// A possible merge of the symbol at `pos` with its right neighbour; the lowest rank first,
    /// the leftmost on ties.
    struct Candidate: Comparable {
        let rank: Int32, pos: Int32, version: UInt32
        static func < (a: Candidate, b: Candidate) -> Bool { a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos) }
        static func == (a: Candidate, b: Candidate) -> Bool { a.rank == b.rank && a.pos == b.pos }
    }

    mutating func merge(_ symbols: inout [Int32], _ table: MergeTable) {
        let n = symbols.count
        if n < 2 { return }
        if n <= 48 { linear(&symbols, table); return }
        ids = symbols
        prev = (0..<n).map { Int32($0) - 1 }
        next = (0..<n).map { $0 + 1 < n ? Int32($0 + 1) : -1 }
        version = [UInt32](repeating: 0, count: n)
        heap.removeAll()
        for i in 0..<(n - 1) { push(Int32(i), table) }
        while let top = heap.popMin() {
            let i = Int(top.pos)
            // Stale entry: the left symbol changed, or its right neighbour did.
            guard top.version == version[i], ids[i] >= 0, next[i] >= 0 else { continue }
            let j = Int(next[i])
            let m = table.lookup(ids[i], ids[j])
            guard m.rank == top.rank else { continue }
            ids[i] = m.result
            ids[j] = -1
            next[i] = next[j]
            if next[j] >= 0 { prev[Int(next[j])] = Int32(i) }
            version[i] &+= 1
            if prev[i] >= 0 { version[Int(prev[i])] &+= 1; push(prev[i], table) }
            push(Int32(i), table)
        }
        symbols.removeAll(keepingCapacity: true)
        var k = 0
        while k >= 0 && k < n { symbols.append(ids[k]); k = Int(next[k]) }
    }

    @inline(__always)
    mutating func push(_ i: Int32, _ table: MergeTable) {
        let j = next[Int(i)]
        guard j >= 0 else { return }
        let m = table.lookup(ids[Int(i)], ids[Int(j)])
        guard m.rank != Int32.max else { return }
        heap.insert(Candidate(rank: m.rank, pos: i, version: version[Int(i)]))
    }

    func linear(_ ids: inout [Int32], _ table: MergeTable) {
        while ids.count > 1 {
            var best = Int32.max, at = -1, result: Int32 = 0
            for k in 0..<(ids.count - 1) {
                let m = table.lookup(ids[k], ids[k + 1])
                if m.rank < best { best = m.rank; at = k; result = m.result }
            }
            if at < 0 { return }
            ids[at] = result
            ids.remove(at: at + 1)
        }
    }
}
