import MalCore

/// Turns a stream of token ids into text without ever printing a broken character: bytes of a
/// character split across tokens are held back until it is complete.
public struct StreamingDecoder {
    let tokenizer: Tokenizer
    var pending: [UInt8] = []

    public init(tokenizer: Tokenizer) { self.tokenizer = tokenizer }

    /// Text that can be printed after `id`.
    public mutating func push(_ id: Int32) -> String {
        pending += tokenizer.tokenBytes(id)
        // Keep an incomplete trailing UTF-8 sequence (at most 3 bytes) for the next token.
        var cut = pending.count
        var k = pending.count - 1
        var seen = 0
        while k >= 0 && seen < 4 {
            let b = pending[k]
            if b & 0xC0 == 0x80 { seen += 1; k -= 1; continue }
            let need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1
            if need > seen + 1 && b >= 0xC0 { cut = k }
            break
        }
        let ready = Array(pending[0..<cut])
        pending.removeFirst(cut)
        return String(decoding: ready, as: UTF8.self)
    }

    /// Whatever is left (an incomplete character becomes U+FFFD).
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }
}
