import Foundation
import MalCore

/// Byte-level BPE tokenizer (GPT-2, Llama 3, DeepSeek V2/V3), exact against HF tokenizers.
///
/// encode: added tokens are matched in the raw text first (leftmost-longest, with their
/// lstrip/rstrip/single_word flags); the rest is normalised, pre-tokenised (fast scanners for the
/// known patterns, a general regex otherwise) and each piece is BPE-merged on its UTF-8 bytes
/// (lowest merge rank first, leftmost on ties); the post-processor adds BOS/EOS when asked.
public final class Tokenizer: @unchecked Sendable {
    public let model: TokenizerModel
    /// Vocabulary lookup: token bytes → id.
    private var vocab: ByteStringIndex
    /// Merge table keyed by (left, right): rank and merged id.
    private var mergeTable: MergeTable
    private var byteIds = [Int32](repeating: -1, count: 256)
    private let steps: [Step]
    private let added: [TokenizerModel.AddedToken]
    private var addedById: [Int32: TokenizerModel.AddedToken] = [:]
    /// Added tokens grouped by first UTF-8 byte, longest first.
    private var addedTrie = AddedTokenTrie([])

    /// One pre-tokenisation step over pieces.
    enum Step {
        case split(Splitter, TokenizerModel.SplitBehavior, invert: Bool)
        case digits(individual: Bool)
    }

    enum Splitter {
        case scanner(PatternScanner)
        case regex(Regex<AnyRegexOutput>)
        case literal([UInt32])
    }

    public init(model: TokenizerModel) throws {
        self.model = model
        // The two tables are independent and each a few milliseconds for a 128K vocabulary:
        // built side by side, loading is bound by the slower one.
        (vocab, mergeTable) = Tokenizer.buildTables(model)
        for b in 0..<256 { byteIds[b] = vocab.find([UInt8(b)]) ?? -1 }
        added = model.addedTokens
        for a in added { addedById[a.id] = a }
        addedTrie = AddedTokenTrie(added)
        var s: [Step] = []
        func compile(_ p: TokenizerModel.PreTokenizer) throws {
            switch p {
            case let .sequence(list): for x in list { try compile(x) }
            case let .byteLevel(addPrefixSpace, useRegex):
                if addPrefixSpace {
                    throw MalError(.unsupported, "ByteLevel pre-tokenizer with add_prefix_space is not supported")
                }
                if useRegex { s.append(.split(.scanner(.gpt2), .isolated, invert: false)) }
            case let .split(pattern, regex, behavior, invert):
                if !regex {
                    s.append(.split(.literal(pattern.unicodeScalars.map(\.value)), behavior, invert: invert))
                } else if let sc = PatternScanner(pattern: pattern) {
                    s.append(.split(.scanner(sc), behavior, invert: invert))
                } else {
                    do {
                        let r = try Regex(pattern).matchingSemantics(.unicodeScalar)
                        s.append(.split(.regex(r), behavior, invert: invert))
                    } catch {
                        throw MalError(.unsupported, "Split pattern \(pattern.debugDescription) cannot be compiled: \(error)")
                    }
                }
            case let .digits(individual): s.append(.digits(individual: individual))
            }
        }
        if let p = model.preTokenizer { try compile(p) }
        steps = s
    }

    static func buildTables(_ model: TokenizerModel) -> (ByteStringIndex, MergeTable) {
        final class Slot<T>: @unchecked Sendable { var value: T?; init() {} }
        let v = Slot<ByteStringIndex>(), m = Slot<MergeTable>()
        DispatchQueue.concurrentPerform(iterations: 2) { k in
            if k == 0 { v.value = ByteStringIndex(model.tokens) } else { m.value = MergeTable(model.merges) }
        }
        return (v.value!, m.value!)
    }

    /// Forces the general regex path for the known patterns (tests compare both paths).
    public init(model: TokenizerModel, generalRegexOnly: Bool) throws {
        let t = try Tokenizer(model: model)
        self.model = model
        vocab = t.vocab
        mergeTable = t.mergeTable
        byteIds = t.byteIds
        added = t.added
        addedById = t.addedById
        addedTrie = t.addedTrie
        steps = try t.steps.map { step in
            guard generalRegexOnly, case let .split(.scanner(sc), b, inv) = step else { return step }
            let pattern: String
            switch sc {
            case .gpt2: pattern = PatternScanner.gpt2Pattern
            case .llama3: pattern = PatternScanner.llama3Pattern
            case .deepseekDigits: pattern = PatternScanner.deepseekDigitsPattern
            case .deepseekCJK: pattern = PatternScanner.deepseekCJKPattern
            case .deepseekMain: pattern = PatternScanner.deepseekMainPattern
            }
            return .split(.regex(try Regex(pattern).matchingSemantics(.unicodeScalar)), b, invert: inv)
        }
    }

    // MARK: encoding

    /// Token ids of `text`; `addSpecial` applies the post-processor (e.g. BOS). With `threads` > 1
    /// a long text's pre-tokens are BPE-encoded on that many threads: pre-tokens are independent,
    /// so the ids are those of one thread.
    public func encode(_ text: String, addSpecial: Bool = false, threads: Int = 1) -> [Int32] {
        var out: [Int32] = []
        let bytes = Array(text.utf8)
        var segStart = 0
        var i = 0
        var merger = BPEMerger()
        // Long texts repeat their words: BPE each distinct word once.
        var cache: WordCache? = bytes.count > 4096 ? WordCache() : nil
        // Added tokens are found in the raw text, leftmost-longest.
        while i < bytes.count {
            if addedTrie.first[Int(bytes[i])], let m = matchAdded(bytes, i) {
                var s = i, e = i + m.length
                if m.token.lstrip { while s > segStart, isSpaceByte(bytes[s - 1]) { s -= 1 } }
                if m.token.rstrip { while e < bytes.count, isSpaceByte(bytes[e]) { e += 1 } }
                encodeSegment(bytes, segStart, s, merger: &merger, cache: &cache, threads: threads, into: &out)
                out.append(m.token.id)
                segStart = e
                i = e
                continue
            }
            i += 1
        }
        encodeSegment(bytes, segStart, bytes.count, merger: &merger, cache: &cache, threads: threads, into: &out)
        return addSpecial ? postProcess(out) : out
    }

    /// The pre-tokenizer's pieces of `text` as scalar offsets (no added tokens, no normalizer):
    /// what HF's `pre_tokenizer.pre_tokenize_str` returns, for tests and debugging.
    public func preTokenize(_ text: String) -> [Range<Int>] {
        let scalars = text.unicodeScalars.map(\.value)
        let t = ScalarText(scalars: scalars, classes: scalars.map { UnicodeClass.of($0) })
        var pieces = [(0, scalars.count)]
        for step in steps { pieces = apply(step, t, pieces) }
        return pieces.filter { $0.1 > $0.0 }.map { $0.0..<$0.1 }
    }

    func isSpaceByte(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D || b == 0x0B || b == 0x0C }

    /// The longest added token at `i` that may stand there (`single_word` ones not inside a word).
    func matchAdded(_ text: [UInt8], _ i: Int) -> (length: Int, token: TokenizerModel.AddedToken)? {
        for (index, length) in addedTrie.matches(text, at: i) {
            let token = addedTrie.tokens[index]
            if token.singleWord {
                // Not inside a word: the neighbouring characters must not be word characters.
                let before = i > 0 ? lastScalar(text, i) : nil, after = firstScalar(text, i + length)
                if let b = before, isWordChar(b) { continue }
                if let a = after, isWordChar(a) { continue }
            }
            return (length, token)
        }
        return nil
    }

    func isWordChar(_ u: Unicode.Scalar) -> Bool { u.properties.isAlphabetic || u.properties.numericType != nil || u == "_" }
    func firstScalar(_ b: [UInt8], _ i: Int) -> Unicode.Scalar? {
        guard i < b.count else { return nil }
        return String(decoding: b[i..<min(b.count, i + 4)], as: UTF8.self).unicodeScalars.first
    }
    func lastScalar(_ b: [UInt8], _ i: Int) -> Unicode.Scalar? {
        var s = i - 1
        while s > 0 && b[s] & 0xC0 == 0x80 { s -= 1 }
        return String(decoding: b[s..<i], as: UTF8.self).unicodeScalars.last
    }

    func postProcess(_ ids: [Int32]) -> [Int32] {
        func apply(_ p: TokenizerModel.PostProcessor, _ x: [Int32]) -> [Int32] {
            switch p {
            case .byteLevel: return x
            case let .sequence(list): return list.reduce(x) { apply($1, $0) }
            case let .template(pieces):
                var out: [Int32] = []
                for piece in pieces {
                    switch piece {
                    case let .special(ids): out += ids
                    case .sequence: out += x
                    }
                }
                return out
            }
        }
        return model.postProcessor.map { apply($0, ids) } ?? ids
    }

    /// Normalises, pre-tokenises and BPE-encodes bytes [from, to) of the text.
    func encodeSegment(
        _ bytes: [UInt8], _ from: Int, _ to: Int, merger: inout BPEMerger, cache: inout WordCache?, threads: Int = 1,
        into out: inout [Int32]
    ) {
        guard to > from else { return }
        var segment = Array(bytes[from..<to])
        if let n = model.normalizer {
            segment = Array(Tokenizer.normalize(String(decoding: segment, as: UTF8.self), n).utf8)
        }
        // Scalars, their classes and UTF-8 offsets.
        var scalars: [UInt32] = []
        scalars.reserveCapacity(segment.count)
        var offsets: [Int] = []
        offsets.reserveCapacity(segment.count + 1)
        var i = 0
        while i < segment.count {
            offsets.append(i)
            let b0 = segment[i]
            var v: UInt32, len: Int
            if b0 < 0x80 {
                v = UInt32(b0); len = 1
            } else if b0 >= 0xF0 {
                v = UInt32(b0 & 0x07); len = 4
            } else if b0 >= 0xE0 {
                v = UInt32(b0 & 0x0F); len = 3
            } else {
                v = UInt32(b0 & 0x1F); len = 2
            }
            for k in 1..<len where i + k < segment.count { v = v << 6 | UInt32(segment[i + k] & 0x3F) }
            scalars.append(v)
            i += len
        }
        offsets.append(segment.count)
        let text = ScalarText(scalars: scalars, classes: scalars.map { UnicodeClass.of($0) })
        var pieces = [(0, scalars.count)]
        for step in steps { pieces = apply(step, text, pieces) }
        if threads > 1 && segment.count >= Tokenizer.parallelSegmentBytes {
            out += parallelBPE(segment, offsets, pieces.filter { $0.1 > $0.0 }, threads: threads)
            return
        }
        var symbols: [Int32] = []
        for (s, e) in pieces where e > s {
            bpe(segment, offsets[s], offsets[e], symbols: &symbols, merger: &merger, cache: &cache, into: &out)
        }
    }

    /// Segments at least this long are split across threads.
    static let parallelSegmentBytes = 1 << 16

    /// BPE of the pieces in contiguous runs, one per thread (each with its own merger and word
    /// cache), concatenated in order.
    func parallelBPE(_ segment: [UInt8], _ offsets: [Int], _ pieces: [(Int, Int)], threads: Int) -> [Int32] {
        final class Runs: @unchecked Sendable {
            private var ids: [[Int32]]
            private let lock = NSLock()
            init(_ n: Int) { ids = Array(repeating: [], count: n) }
            func set(_ k: Int, _ v: [Int32]) { lock.withLock { ids[k] = v } }
            var all: [Int32] { lock.withLock { ids.flatMap { $0 } } }
        }
        let n = min(threads, max(1, pieces.count / 64))
        let runs = Runs(n)
        DispatchQueue.concurrentPerform(iterations: n) { k in
            var merger = BPEMerger(), cache: WordCache? = WordCache(), symbols: [Int32] = [], mine: [Int32] = []
            for (s, e) in pieces[(pieces.count * k / n)..<(pieces.count * (k + 1) / n)] {
                bpe(segment, offsets[s], offsets[e], symbols: &symbols, merger: &merger, cache: &cache, into: &mine)
            }
            runs.set(k, mine)
        }
        return runs.all
    }

    // MARK: BPE

    /// BPE on the bytes [from, to) of `text`: start from single bytes, repeatedly merge the
    /// adjacent pair with the lowest rank (leftmost first).
    func bpe(
        _ text: [UInt8], _ from: Int, _ to: Int, symbols: inout [Int32], merger: inout BPEMerger, cache: inout WordCache?,
        into out: inout [Int32]
    ) {
        text.withUnsafeBufferPointer { all in
            let word = UnsafeBufferPointer(rebasing: all[from..<to])
            if model.ignoreMerges, let id = vocab.find(word) { out.append(id); return }
            let cached = cache != nil && word.count <= WordCache.maxWordBytes
            let hash = cached ? byteHash(word) : 0
            if cached && cache!.lookup(word, hash: hash, into: &out) { return }
            symbols.removeAll(keepingCapacity: true)
            for b in word { symbols.append(byteIds[Int(b)]) }
            merger.merge(&symbols, mergeTable)
            if cached { cache!.insert(word, hash: hash, ids: symbols[...]) }
            out += symbols
        }
    }

    // MARK: decoding

    /// Bytes of one token: vocabulary bytes, or an added token's text.
    public func tokenBytes(_ id: Int32) -> [UInt8] {
        if let a = addedById[id] { return Array(a.content.utf8) }
        if id >= 0, Int(id) < model.tokens.count, !model.tokens.missing[Int(id)] { return Array(model.tokens.arena[model.tokens.range(Int(id))]) }
        return []
    }

    /// Text of `ids` (invalid UTF-8 becomes U+FFFD, like HF's lossy decoding).
    public func decode(_ ids: [Int32]) -> String {
        var bytes: [UInt8] = []
        for id in ids { bytes += tokenBytes(id) }
        return String(decoding: bytes, as: UTF8.self)
    }

    public var vocabularySize: Int { max(model.tokens.count, (added.map { Int($0.id) }.max() ?? -1) + 1) }

    public func id(of token: String) -> Int32? {
        if let a = added.first(where: { $0.content == token }) { return a.id }
        return vocab.find(Array(token.utf8))
    }

    /// Ids that end generation: the EOS of tokenizer_config.json and the usual end-of-turn tokens.
    public var endTokenIds: Set<Int32> {
        var s = Set<Int32>()
        if let e = model.eosToken, let id = id(of: e) { s.insert(id) }
        for name in ["<|endoftext|>", "<|end_of_text|>", "<|eot_id|>", "<|eom_id|>", "<｜end▁of▁sentence｜>"] {
            if let a = added.first(where: { $0.content == name }) { s.insert(a.id) }
        }
        return s
    }
}
