/// Everything a byte-level BPE tokenizer needs, as read from `tokenizer.json` +
/// `tokenizer_config.json` (HF tokenizers format) or from a `.mal` file's `aux/tokenizer.bin`.
///
/// Vocabulary entries are kept as **raw bytes** (the byte-level alphabet — `Ġ` for space and so
/// on — is undone at load time), so encoding works on UTF-8 bytes directly.
public struct TokenizerModel: Sendable, Equatable {
    /// Token ids are below this (real vocabularies have at most a few hundred thousand), so every
    /// id fits an `Int32` and sizes the token table before anything is allocated; both readers
    /// (`tokenizer.json`, `aux/tokenizer.bin`) enforce it.
    public static let maxTokenId = 10_000_000

    public struct AddedToken: Codable, Sendable, Equatable {
        public var id: Int32
        public var content: String
        public var special: Bool
        public var lstrip: Bool
        public var rstrip: Bool
        public var singleWord: Bool
        public var normalized: Bool
        public init(id: Int32, content: String, special: Bool, lstrip: Bool, rstrip: Bool, singleWord: Bool, normalized: Bool) {
            self.id = id
            self.content = content
            self.special = special
            self.lstrip = lstrip
            self.rstrip = rstrip
            self.singleWord = singleWord
            self.normalized = normalized
        }
    }

    /// Normalizers used by byte-level BPE repos.
    public indirect enum Normalizer: Codable, Sendable, Equatable {
        case sequence([Normalizer])
        case nfc, nfd, nfkc, nfkd, lowercase
        case replace(pattern: String, content: String)
        case prepend(String)
        case strip(left: Bool, right: Bool)
    }

    /// How `Split` treats the pieces its pattern matches (HF `SplitDelimiterBehavior`).
    public enum SplitBehavior: String, Codable, Sendable { case removed, isolated, mergedWithPrevious, mergedWithNext, contiguous }

    public indirect enum PreTokenizer: Codable, Sendable, Equatable {
        case sequence([PreTokenizer])
        /// `useRegex`: split with the GPT-2 pattern first.
        case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
        /// `regex` true: `pattern` is a regular expression, else a literal string.
        case split(pattern: String, regex: Bool, behavior: SplitBehavior, invert: Bool)
        case digits(individual: Bool)
    }

    public enum TemplatePiece: Codable, Sendable, Equatable {
        case special([Int32])
        case sequence
    }

    public indirect enum PostProcessor: Codable, Sendable, Equatable {
        case sequence([PostProcessor])
        case byteLevel
        case template([TemplatePiece])
    }

    /// Token bytes by id (nil for ids with no vocabulary entry, e.g. added tokens).
    public var tokens: TokenTable
    /// BPE merges in rank order, as (left id, right id, merged id).
    public var merges: [(Int32, Int32, Int32)]
    public var addedTokens: [AddedToken]
    public var normalizer: Normalizer?
    public var preTokenizer: PreTokenizer?
    public var postProcessor: PostProcessor?
    /// `ignore_merges`: a whole pre-token found in the vocabulary is one token (Llama 3).
    public var ignoreMerges: Bool
    public var bosToken: String?
    public var eosToken: String?

    public init(
        tokens: TokenTable, merges: [(Int32, Int32, Int32)], addedTokens: [AddedToken], normalizer: Normalizer?,
        preTokenizer: PreTokenizer?, postProcessor: PostProcessor?, ignoreMerges: Bool, bosToken: String?, eosToken: String?
    ) {
        self.tokens = tokens
        self.merges = merges
        self.addedTokens = addedTokens
        self.normalizer = normalizer
        self.preTokenizer = preTokenizer
        self.postProcessor = postProcessor
        self.ignoreMerges = ignoreMerges
        self.bosToken = bosToken
        self.eosToken = eosToken
    }

    public static func == (a: TokenizerModel, b: TokenizerModel) -> Bool {
        a.tokens == b.tokens && a.merges.count == b.merges.count && zip(a.merges, b.merges).allSatisfy { $0 == $1 }
            && a.addedTokens == b.addedTokens && a.normalizer == b.normalizer && a.preTokenizer == b.preTokenizer
            && a.postProcessor == b.postProcessor && a.ignoreMerges == b.ignoreMerges && a.bosToken == b.bosToken && a.eosToken == b.eosToken
    }

    /// GPT-2's byte ↔ printable character table (`bytes_to_unicode` of the GPT-2 repo): printable
    /// Latin-1 bytes map to themselves, the other 68 to U+0100 onwards (space → `Ġ`, `\n` → `Ċ`).
    public static let byteToChar: [Unicode.Scalar] = {
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var chars = printable
        var n = 0
        for b in 0..<256 where !printable.contains(b) {
            printable.append(b)
            chars.append(256 + n)
            n += 1
        }
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        for (b, c) in zip(printable, chars) { table[b] = Unicode.Scalar(UInt32(c))! }
        return table
    }()

    /// The alphabet's characters are all below U+0144: a table of that size (-1 outside it).
    public static let charToByte: [Int16] = {
        var t = [Int16](repeating: -1, count: 0x144)
        for (b, c) in byteToChar.enumerated() { t[Int(c.value)] = Int16(b) }
        return t
    }()

    /// Raw bytes of a byte-level token string; nil if a character is outside the byte alphabet.
    public static func bytes(ofByteLevel token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.utf8.count)
        for u in token.unicodeScalars {
            guard u.value < 0x144, case let b = charToByte[Int(u.value)], b >= 0 else { return nil }
            out.append(UInt8(b))
        }
        return out
    }
}
