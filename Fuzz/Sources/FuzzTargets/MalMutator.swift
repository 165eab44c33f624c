import MalCore

@_silgen_name("LLVMFuzzerMutate")
func LLVMFuzzerMutate(_ data: UnsafeMutablePointer<UInt8>, _ size: Int, _ maxSize: Int) -> Int

/// A structure-aware mutator for `.mal` files (`Formats/MAL.md`): it mutates one part of a
/// container (a metadata value, a table record field, a header field, raw chunk bytes) and then
/// recomputes the checksums that cover it, so most mutants get past the checksum checks and reach
/// the validation behind them. Every few calls it mutates plain bytes, checksums left broken.
public enum MalMutator {
    /// libFuzzer's `LLVMFuzzerCustomMutator`: mutates `data[0..<size]` in place (room for `maxSize`)
    /// and returns the new size.
    public static func mutate(_ data: UnsafeMutablePointer<UInt8>, _ size: Int, _ maxSize: Int, _ seed: UInt32) -> Int {
        var rng = SplitMix(seed: UInt64(seed))
        var file = Array(UnsafeBufferPointer(start: data, count: size))
        guard size >= 96, Array(file[0..<8]) == MalFormat.magic, let layout = Layout(file), rng.next(8) != 0 else {
            return LLVMFuzzerMutate(data, size, maxSize)
        }
        switch rng.next(5) {
        case 0: file = spliced(file, layout.metadata, maxSize: maxSize, rng: &rng)
        case 1: file = spliced(file, layout.table, maxSize: maxSize, rng: &rng)
        case 2: mutateRecordField(&file, layout, rng: &rng)
        case 3: mutateRawChunk(&file, layout, rng: &rng)
        default: setField(&file, at: [12, 16, 24, 32, 40, 48][rng.next(6)], width: rng.next(2) == 0 ? 8 : 4, rng: &rng)
        }
        guard file.count <= maxSize else { return LLVMFuzzerMutate(data, size, maxSize) }
        if let l = Layout(file) { reseal(&file, l) }
        file.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: $0.count) }
        return file.count
    }

    /// Where the metadata and the table lie, as the header says (nil if the header is unusable).
    struct Layout {
        var metadata: Range<Int>
        var table: Range<Int>
        init?(_ f: [UInt8]) {
            let mo = Int(truncatingIfNeeded: u64(f, 24)), ml = Int(truncatingIfNeeded: u64(f, 32))
            let to = Int(truncatingIfNeeded: u64(f, 40)), tl = Int(truncatingIfNeeded: u64(f, 48))
            guard mo >= 96, ml >= 0, to >= 0, tl >= 0, mo <= f.count, ml <= f.count - mo, to <= f.count, tl <= f.count - to else { return nil }
            metadata = mo..<(mo + ml)
            table = to..<(to + tl)
        }
    }

    /// Replaces `part` by a libFuzzer mutation of it, moving what follows and fixing the header's
    /// offsets and lengths so the layout still tiles.
    static func spliced(_ f: [UInt8], _ part: Range<Int>, maxSize: Int, rng: inout SplitMix) -> [UInt8] {
        let room = max(part.count * 2 + 64, 64)
        var buf = Array(f[part]) + [UInt8](repeating: 0, count: room - part.count)
        let n = buf.withUnsafeMutableBufferPointer { LLVMFuzzerMutate($0.baseAddress!, part.count, room) }
        var out = Array(f[..<part.lowerBound]) + buf[..<n] + f[part.upperBound...]
        let delta = n - part.count
        guard out.count >= 96 else { return f }
        let mo = u64(out, 24), to = u64(out, 40)
        if UInt64(part.lowerBound) == mo {
            put64(&out, 32, UInt64(n))
            put64(&out, 40, to &+ UInt64(bitPattern: Int64(delta)))
        } else {
            put64(&out, 48, UInt64(n))
        }
        put64(&out, 16, UInt64(out.count))
        return out
    }

    /// The offsets of the table's records, walked as a reader would (stops at the first that does not fit).
    static func records(_ f: [UInt8], _ l: Layout) -> [Int] {
        var out: [Int] = [], at = l.table.lowerBound + 8
        guard l.table.count >= 8 else { return [] }
        let count = Int(u32(f, l.table.lowerBound))
        while out.count < count, at + 40 <= l.table.upperBound {
            out.append(at)
            let rank = Int(f[at + 4]), nameLength = Int(u16(f, at)), chunks = Int(u32(f, at + 32))
            at += 40 + 8 * rank + nameLength + 24 * chunks
        }
        return out
    }

    /// Sets one field of one table record (or of one of its dims or chunk records) to an edge value.
    static func mutateRecordField(_ f: inout [UInt8], _ l: Layout, rng: inout SplitMix) {
        let recs = records(f, l)
        guard !recs.isEmpty else { return }
        let r = recs[rng.next(recs.count)]
        let fields: [(Int, Int)] = [(0, 2), (2, 1), (3, 1), (4, 1), (5, 1), (6, 2), (8, 4), (12, 4), (16, 8), (24, 8), (32, 4), (36, 4)]
        let rank = Int(f[r + 4]), nameLength = Int(u16(f, r)), chunks = Int(u32(f, r + 32))
        var choices = fields.map { (r + $0.0, $0.1) }
        for d in 0..<rank { choices.append((r + 40 + 8 * d, 8)) }
        let firstChunk = r + 40 + 8 * rank + nameLength
        for c in 0..<min(chunks, 4) { for (o, w) in [(0, 8), (8, 4), (12, 4)] { choices.append((firstChunk + 24 * c + o, w)) } }
        let (at, width) = choices[rng.next(choices.count)]
        guard at + width <= min(l.table.upperBound, f.count) else { return }
        setField(&f, at: at, width: width, rng: &rng)
    }

    /// Flips bytes inside a raw-codec chunk and recomputes its chunk checksum and the tensor
    /// checksum, so the mutant is a valid file with other values (NaN weights, say).
    static func mutateRawChunk(_ f: inout [UInt8], _ l: Layout, rng: inout SplitMix) {
        let raw = records(f, l).filter { f[$0 + 3] == 0 && u32(f, $0 + 32) > 0 }
        guard !raw.isEmpty else { return }
        let r = raw[rng.next(raw.count)]
        let rank = Int(f[r + 4]), nameLength = Int(u16(f, r)), chunks = Int(u32(f, r + 32))
        let first = r + 40 + 8 * rank + nameLength
        guard first + 24 * chunks <= l.table.upperBound else { return }
        var hashes: [UInt64] = []
        for c in 0..<chunks {
            let rec = first + 24 * c
            let off = Int(truncatingIfNeeded: u64(f, rec)), len = Int(u32(f, rec + 8))
            guard off >= 96, len > 0, off <= l.metadata.lowerBound - len else { return }
            if c == 0 || rng.next(4) == 0 {
                for _ in 0..<(1 + rng.next(4)) { f[off + rng.next(len)] = UInt8(truncatingIfNeeded: rng.next(256)) }
            }
            let h = f.withUnsafeBytes { xxh64(UnsafeRawBufferPointer(rebasing: $0[off..<(off + len)])) }
            put64(&f, rec + 16, h)
            hashes.append(h)
        }
        var s = XXH64Stream()
        for h in hashes { s.update(h) }
        put64(&f, r + 24, s.digest)
    }

    static func setField(_ f: inout [UInt8], at: Int, width: Int, rng: inout SplitMix) {
        guard at >= 0, at + width <= f.count else { return }
        var old: UInt64 = 0
        for i in 0..<width { old |= UInt64(f[at + i]) << (8 * UInt64(i)) }
        let edges: [UInt64] = [
            0, 1, 2, 7, 8, 63, 64, 255, 4095, 4096, 65535, 65536, 1 << 20, 1 << 26, 1 << 31, (1 << 32) - 1, 1 << 32,
            1 << 47, 1 << 48, UInt64(f.count), UInt64(f.count) - 1, UInt64(f.count) + 1, UInt64.max, UInt64.max - 1,
        ]
        let v: UInt64
        switch rng.next(3) {
        case 0: v = edges[rng.next(edges.count)]
        case 1: v = old &+ UInt64(bitPattern: Int64(rng.next(17)) - 8)
        default: v = old ^ (1 << UInt64(rng.next(width * 8)))
        }
        for i in 0..<width { f[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
    }

    /// Recomputes the metadata, table and header checksums for the header's layout.
    static func reseal(_ f: inout [UInt8], _ l: Layout) {
        let (mh, th) = f.withUnsafeBytes { b in
            (xxh64(UnsafeRawBufferPointer(rebasing: b[l.metadata])), xxh64(UnsafeRawBufferPointer(rebasing: b[l.table])))
        }
        put64(&f, 56, mh)
        put64(&f, 64, th)
        let hh = f.withUnsafeBytes { xxh64(UnsafeRawBufferPointer(rebasing: $0[0..<88])) }
        put64(&f, 88, hh)
    }

    static func u16(_ f: [UInt8], _ at: Int) -> UInt16 { UInt16(f[at]) | UInt16(f[at + 1]) << 8 }
    static func u32(_ f: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(f[at + $1]) << (8 * UInt32($1)) } }
    static func u64(_ f: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(f[at + $1]) << (8 * UInt64($1)) } }
    static func put64(_ f: inout [UInt8], _ at: Int, _ v: UInt64) { for i in 0..<8 { f[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) } }
}

/// libFuzzer's seed as a reproducible stream of choices.
struct SplitMix {
    var stream: SplitMix64
    init(seed: UInt64) { stream = SplitMix64(seed: seed) }
    mutating func next(_ bound: Int) -> Int { Int(stream.next() % UInt64(max(bound, 1))) }
}
