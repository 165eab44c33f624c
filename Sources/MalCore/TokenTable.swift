/// The vocabulary's token bytes by id, in one buffer: a 128K vocabulary is two arrays rather
/// than 128K small ones, so it loads (from `aux/tokenizer.bin`) and frees without an allocation
/// per token, and the runtime's lookup table indexes the same buffer.
public struct TokenTable: Sendable, Equatable, RandomAccessCollection {
    /// Every token's bytes, concatenated.
    public private(set) var arena: [UInt8] = []
    /// Token i is `arena[ends[i - 1] ..< ends[i]]` (from 0 for i = 0).
    public private(set) var ends: [UInt32] = []
    /// Ids with no vocabulary entry (e.g. added tokens only) have a flag here.
    public private(set) var missing: [Bool] = []

    public init() {}

    public init(_ tokens: [[UInt8]?]) {
        reserve(tokens.count, bytes: tokens.reduce(0) { $0 + ($1?.count ?? 0) })
        for t in tokens { append(t) }
    }

    public mutating func reserve(_ count: Int, bytes: Int) {
        arena.reserveCapacity(bytes)
        ends.reserveCapacity(count)
        missing.reserveCapacity(count)
    }

    public mutating func append(_ t: [UInt8]?) {
        if let t { arena += t }
        ends.append(UInt32(arena.count))
        missing.append(t == nil)
    }

    /// Appends token bytes straight from a buffer (the binary reader).
    public mutating func append(_ t: UnsafeRawBufferPointer) {
        arena.append(contentsOf: t.bindMemory(to: UInt8.self))
        ends.append(UInt32(arena.count))
        missing.append(false)
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { ends.count }

    /// The byte range of token i in `arena` (empty for a missing one).
    @inline(__always)
    public func range(_ i: Int) -> Range<Int> { (i == 0 ? 0 : Int(ends[i - 1]))..<Int(ends[i]) }

    public subscript(i: Int) -> [UInt8]? { missing[i] ? nil : Array(arena[range(i)]) }

    public static func += (a: inout TokenTable, b: [[UInt8]?]) { for t in b { a.append(t) } }
}
