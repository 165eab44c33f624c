import MalCore

/// The added tokens of a tokenizer as a byte trie, so finding the ones that start at a position
/// costs one step per byte of the longest one there, whatever their number (DeepSeek-V3 has 818):
/// matching them one by one made `<｜` repeated 250,000 times take a minute.
struct AddedTokenTrie: Sendable {
    /// Per node: children by byte (sorted by byte) and the added token ending there, if any.
    private var children: [[(byte: UInt8, node: Int32)]] = [[]]
    private var ending: [Int32] = [-1]
    let tokens: [TokenizerModel.AddedToken]
    /// First bytes of the tokens: most positions are rejected with one lookup.
    private(set) var first = [Bool](repeating: false, count: 256)

    init(_ tokens: [TokenizerModel.AddedToken]) {
        self.tokens = tokens
        for (i, t) in tokens.enumerated() {
            let b = Array(t.content.utf8)
            guard let f = b.first else { continue }
            first[Int(f)] = true
            var node = 0
            for byte in b {
                if let next = child(node, byte) { node = next; continue }
                children.append([])
                ending.append(-1)
                let new = children.count - 1
                children[node].append((byte, Int32(new)))
                children[node].sort { $0.byte < $1.byte }
                node = new
            }
            if ending[node] < 0 { ending[node] = Int32(i) }  // the first of equal contents wins
        }
    }

    private func child(_ node: Int, _ byte: UInt8) -> Int? {
        let c = children[node]
        var lo = 0, hi = c.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if c[mid].byte < byte { lo = mid + 1 } else { hi = mid }
        }
        return lo < c.count && c[lo].byte == byte ? Int(c[lo].node) : nil
    }

    /// The added tokens that match `text` at `i`, longest first (as token index, byte length).
    func matches(_ text: [UInt8], at i: Int) -> [(token: Int, length: Int)] {
        guard i < text.count, first[Int(text[i])] else { return [] }
        var out: [(Int, Int)] = []
        var node = 0, k = i
        while k < text.count, let next = child(node, text[k]) {
            node = next
            k += 1
            if ending[node] >= 0 { out.append((Int(ending[node]), k - i)) }
        }
        return out.reversed()
    }
}
