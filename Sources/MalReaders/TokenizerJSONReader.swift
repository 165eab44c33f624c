import Dispatch
import Foundation
import MalCore

/// Reads `tokenizer.json` (+ `tokenizer_config.json`) into a `TokenizerModel`.
///
/// Supported: BPE models over the byte-level alphabet; merges as `"a b"` strings or `[a, b]`
/// pairs; `ignore_merges`; added tokens with all their flags; normalizers `Sequence`, `NFC`, `NFD`,
/// `NFKC`, `NFKD`, `Lowercase`, `Replace`, `Prepend`, `Strip`; pre-tokenizers `Sequence`,
/// `ByteLevel`, `Split` (any behaviour, regex or string), `Digits`; post-processors `Sequence`,
/// `ByteLevel`, `TemplateProcessing`; the `ByteLevel` decoder. Anything else is an error naming
/// the component, never a silently different tokenisation.
public enum TokenizerJSONReader {
    /// Reads the tokenizer files of a folder.
    public static let maxTokenId = TokenizerModel.maxTokenId

    public static func read(folder: String) throws -> TokenizerModel {
        let path = joinPath(folder, "tokenizer.json")
        let configPath = joinPath(folder, "tokenizer_config.json")
        let config = fileExists(configPath) ? try parseFile(configPath) : nil
        let m = try MappedFile(path: path)
        return try withExtendedLifetime(m) {
            // The vocabulary and merges by hand, the rest as a JSON tree; the generic way for
            // anything the fast path does not take (it then reports what is wrong).
            if let fast = TokenizerJSONFastPath.split(m.bytes) {
                let rest = try fast.rest.withUnsafeBytes { try JSONValue.parse($0, file: path) }
                return try parse(rest, config: config, file: path, vocab: fast.vocab, merges: fast.merges)
            }
            return try parse(try JSONValue.parse(m.bytes, file: path), config: config, file: path)
        }
    }

    static func parseFile(_ path: String) throws -> JSONValue {
        let m = try MappedFile(path: path)
        return try withExtendedLifetime(m) { try JSONValue.parse(m.bytes, file: path) }
    }

    static func fail(_ what: String, _ file: String) -> MalError {
        MalError(.unsupported, what, file: file)
    }

    public static func parse(_ json: JSONValue, config: JSONValue?, file: String) throws -> TokenizerModel {
        try parse(json, config: config, file: file, vocab: nil, merges: nil)
    }

    /// - Parameters: vocab, merges: `model.vocab` and `model.merges` when the fast path read
    ///   them (the tree then holds `{}` and `[]` there).
    static func parse(
        _ json: JSONValue, config: JSONValue?, file: String, vocab fastVocab: [(String, Int)]?,
        merges fastMerges: MergeList?
    ) throws -> TokenizerModel {
        guard let model = json["model"] else { throw MalError(.missingField, "tokenizer.json has no 'model'", file: file) }
        let type = model["type"]?.stringValue ?? "BPE"
        guard type == "BPE" else { throw fail("tokenizer model '\(type)' is not supported (supported: BPE)", file) }
        if model["byte_fallback"]?.boolValue == true { throw fail("BPE byte_fallback is not supported (byte-level BPE only)", file) }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let s = model[key]?.stringValue, !s.isEmpty { throw fail("BPE \(key) '\(s)' is not supported", file) }
        }
        guard let treeVocab = model["vocab"]?.objectPairs else { throw MalError(.missingField, "model.vocab is missing", file: file) }
        let vocab =
            try fastVocab
            ?? treeVocab.map { tok, v in
                guard let id = v.intValue, id >= 0 else { throw MalError(.invalidField, "vocab entry '\(tok)' has no valid id", file: file) }
                return (tok, id)
            }
        var maxId = -1
        for (_, v) in vocab { maxId = max(maxId, v) }
        let added = try addedTokens(json, file: file)
        for a in added { maxId = max(maxId, Int(a.id)) }
        guard maxId < TokenizerJSONReader.maxTokenId else { throw MalError(.invalidField, "token id \(maxId) is implausibly large", file: file) }
        var tokens = [[UInt8]?](repeating: nil, count: maxId + 1)
        let addedContents = Set(added.map(\.content))
        // The vocabulary's keys as written (byte-level text), indexed by their UTF-8 bytes: the
        // merges name tokens by these keys.
        var keys = TokenTable(), keyIds: [Int32] = []
        keys.reserve(vocab.count, bytes: vocab.count * 8)
        keyIds.reserveCapacity(vocab.count)
        for (tok, id) in vocab {
            keys.append(Array(tok.utf8))
            keyIds.append(Int32(id))
            if addedContents.contains(tok) { continue }  // special tokens may sit in the vocab too
            guard let b = TokenizerModel.bytes(ofByteLevel: tok) else {
                throw fail("vocab entry '\(tok)' is not in the byte-level alphabet (only byte-level BPE is supported)", file)
            }
            tokens[id] = b
        }
        let index = ByteStringIndex(keys)
        if let d = index.duplicates.first {
            throw MalError(.invalidField, "model.vocab has the key '\(vocab[d].0)' more than once", file: file)
        }
        let list = try fastMerges ?? mergeList(model["merges"]?.arrayValue ?? [], file: file)
        let merges = try resolve(list, index, keyIds, file: file)
        func tokenString(_ v: JSONValue?) -> String? { v?.stringValue ?? v?["content"]?.stringValue }
        let bos = tokenString(config?["bos_token"]), eos = tokenString(config?["eos_token"])
        let fromJSON = try json["post_processor"].flatMap { $0.isNull ? nil : try postProcessor($0, file: file) }
        let post = try config.flatMap { try llamaPostProcessor($0, added: added, bos: bos, eos: eos, file: file) } ?? fromJSON
        if let d = json["decoder"], !d.isNull { try checkDecoder(d, file: file) }
        return TokenizerModel(
            tokens: TokenTable(tokens), merges: merges, addedTokens: added,
            normalizer: try json["normalizer"].flatMap { $0.isNull ? nil : try normalizer($0, file: file) },
            preTokenizer: try json["pre_tokenizer"].flatMap { $0.isNull ? nil : try preTokenizer($0, file: file) },
            postProcessor: post, ignoreMerges: model["ignore_merges"]?.boolValue ?? false, bosToken: bos, eosToken: eos)
    }

    /// `added_tokens`, each with an id in range.
    static func addedTokens(_ json: JSONValue, file: String) throws -> [TokenizerModel.AddedToken] {
        try (json["added_tokens"]?.arrayValue ?? []).map { a -> TokenizerModel.AddedToken in
            guard let id = a["id"]?.intValue, let content = a["content"]?.stringValue else {
                throw MalError(.invalidField, "added token without id or content: \(a.serialized)", file: file)
            }
            guard (0..<TokenizerJSONReader.maxTokenId).contains(id) else {
                throw MalError(
                    .invalidField, "added token \(content.debugDescription) has id \(id), outside 0..<\(TokenizerJSONReader.maxTokenId)",
                    file: file)
            }
            return .init(
                id: Int32(id), content: content, special: a["special"]?.boolValue ?? false, lstrip: a["lstrip"]?.boolValue ?? false,
                rstrip: a["rstrip"]?.boolValue ?? false, singleWord: a["single_word"]?.boolValue ?? false,
                normalized: a["normalized"]?.boolValue ?? false)
        }
    }

    /// LlamaTokenizerFast's `add_bos_token` / `add_eos_token` of `tokenizer_config.json`, which
    /// transformers turns into the post-processor (overriding tokenizer.json's); nil for other
    /// tokenizer classes.
    static func llamaPostProcessor(
        _ config: JSONValue, added: [TokenizerModel.AddedToken], bos: String?, eos: String?,
        file: String
    ) throws -> TokenizerModel.PostProcessor? {
        guard (config["tokenizer_class"]?.stringValue ?? "").hasPrefix("LlamaTokenizer") else { return nil }
        let addBos = config["add_bos_token"]?.boolValue ?? true, addEos = config["add_eos_token"]?.boolValue ?? false
        func id(_ s: String?) throws -> Int32 {
            guard let s, let a = added.first(where: { $0.content == s }) else {
                throw MalError(.invalidField, "special token \(s ?? "nil") of tokenizer_config.json is not an added token", file: file)
            }
            return a.id
        }
        var pieces: [TokenizerModel.TemplatePiece] = []
        if addBos { pieces.append(.special([try id(bos)])) }
        pieces.append(.sequence)
        if addEos { pieces.append(.special([try id(eos)])) }
        return .template(pieces)
    }

    /// The merges' ids (left, right, merged), in two halves side by side (three lookups each, a
    /// few hundred thousand merges).
    static func resolve(_ list: MergeList, _ index: ByteStringIndex, _ keyIds: [Int32], file: String) throws -> [(Int32, Int32, Int32)] {
        final class Halves: @unchecked Sendable {
            var ids: [[(Int32, Int32, Int32)]] = [[], []]
            var bad: [Int?] = [nil, nil]
            let lock = NSLock()
        }
        let n = list.pairs.count, half = n / 2, split = n > 4096
        let out = Halves()
        DispatchQueue.concurrentPerform(iterations: split ? 2 : 1) { k in
            let range = split ? (k == 0 ? 0..<half : half..<n) : 0..<n
            var mine: [(Int32, Int32, Int32)] = []
            mine.reserveCapacity(range.count)
            var joined: [UInt8] = []
            func idOf(_ key: UnsafeBufferPointer<UInt8>) -> Int32? { index.find(key).map { keyIds[Int($0)] } }
            list.bytes.withUnsafeBufferPointer { all in
                for i in range {
                    let (l, r) = list.pairs[i]
                    let left = UnsafeBufferPointer(rebasing: all[l]), right = UnsafeBufferPointer(rebasing: all[r])
                    joined.removeAll(keepingCapacity: true)
                    joined.append(contentsOf: left)
                    joined.append(contentsOf: right)
                    guard let a = idOf(left), let b = idOf(right), let c = joined.withUnsafeBufferPointer(idOf) else {
                        out.lock.withLock { out.bad[k] = i }
                        return
                    }
                    mine.append((a, b, c))
                }
            }
            out.lock.withLock { out.ids[k] = mine }
        }
        if let i = out.bad.compactMap({ $0 }).min() {
            let (l, r) = list.pairs[i]
            throw MalError(
                .invalidField,
                "merge \(i) (\(String(decoding: list.bytes[l], as: UTF8.self)), \(String(decoding: list.bytes[r], as: UTF8.self))) "
                    + "uses tokens missing from the vocabulary", file: file)
        }
        return out.ids[0] + out.ids[1]
    }

    /// `model.merges` from the JSON tree: `"a b"` strings or `[a, b]` pairs.
    static func mergeList(_ list: [JSONValue], file: String) throws -> MergeList {
        var out = MergeList()
        for (i, m) in list.enumerated() {
            if let s = m.stringValue {
                let parts = s.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw MalError(.invalidField, "merge \(i) '\(s)' is not 'a b'", file: file) }
                out.append(Array(parts[0].utf8), Array(parts[1].utf8))
            } else if let a = m.arrayValue, a.count == 2, let x = a[0].stringValue, let y = a[1].stringValue {
                out.append(Array(x.utf8), Array(y.utf8))
            } else {
                throw MalError(.invalidField, "merge \(i) is neither 'a b' nor [a, b]: \(m.serialized)", file: file)
            }
        }
        return out
    }

    static func normalizer(_ j: JSONValue, file: String) throws -> TokenizerModel.Normalizer {
        let t = j["type"]?.stringValue ?? ""
        switch t {
        case "Sequence": return .sequence(try (j["normalizers"]?.arrayValue ?? []).map { try normalizer($0, file: file) })
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "Lowercase": return .lowercase
        case "Prepend": return .prepend(j["prepend"]?.stringValue ?? "")
        case "Strip": return .strip(left: j["strip_left"]?.boolValue ?? true, right: j["strip_right"]?.boolValue ?? true)
        case "Replace":
            guard let p = j["pattern"]?["String"]?.stringValue else { throw fail("normalizer Replace with a Regex pattern is not supported", file) }
            return .replace(pattern: p, content: j["content"]?.stringValue ?? "")
        default: throw fail("normalizer '\(t)' is not supported", file)
        }
    }

    static func preTokenizer(_ j: JSONValue, file: String) throws -> TokenizerModel.PreTokenizer {
        let t = j["type"]?.stringValue ?? ""
        switch t {
        case "Sequence": return .sequence(try (j["pretokenizers"]?.arrayValue ?? []).map { try preTokenizer($0, file: file) })
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: j["add_prefix_space"]?.boolValue ?? false, useRegex: j["use_regex"]?.boolValue ?? true)
        case "Digits": return .digits(individual: j["individual_digits"]?.boolValue ?? false)
        case "Split":
            let pattern: String, regex: Bool
            if let r = j["pattern"]?["Regex"]?.stringValue {
                pattern = r; regex = true
            } else if let s = j["pattern"]?["String"]?.stringValue {
                pattern = s; regex = false
            } else {
                throw MalError(.invalidField, "Split pre-tokenizer without a pattern", file: file)
            }
            let names: [String: TokenizerModel.SplitBehavior] = [
                "Removed": .removed, "Isolated": .isolated, "MergedWithPrevious": .mergedWithPrevious,
                "MergedWithNext": .mergedWithNext, "Contiguous": .contiguous,
            ]
            let b = j["behavior"]?.stringValue ?? "Isolated"
            guard let behavior = names[b] else { throw fail("Split behavior '\(b)' is not supported", file) }
            return .split(pattern: pattern, regex: regex, behavior: behavior, invert: j["invert"]?.boolValue ?? false)
        default: throw fail("pre-tokenizer '\(t)' is not supported (supported: Sequence, ByteLevel, Split, Digits)", file)
        }
    }

    static func postProcessor(_ j: JSONValue, file: String) throws -> TokenizerModel.PostProcessor {
        let t = j["type"]?.stringValue ?? ""
        switch t {
        case "Sequence": return .sequence(try (j["processors"]?.arrayValue ?? []).map { try postProcessor($0, file: file) })
        case "ByteLevel": return .byteLevel
        case "TemplateProcessing":
            let specials = j["special_tokens"]
            return .template(
                try (j["single"]?.arrayValue ?? []).map { p in
                    if let s = p["SpecialToken"] {
                        guard let key = s["id"]?.stringValue, let ids = specials?[key]?["ids"]?.arrayValue?.compactMap(\.intValue) else {
                            throw MalError(.invalidField, "TemplateProcessing names unknown special token \(s.serialized)", file: file)
                        }
                        return .special(ids.map { Int32($0) })
                    }
                    if p["Sequence"] != nil { return .sequence }
                    throw MalError(.invalidField, "TemplateProcessing piece \(p.serialized) is not understood", file: file)
                })
        default: throw fail("post-processor '\(t)' is not supported (supported: Sequence, ByteLevel, TemplateProcessing)", file)
        }
    }

    static func checkDecoder(_ j: JSONValue, file: String) throws {
        let t = j["type"]?.stringValue ?? ""
        if t == "ByteLevel" { return }
        if t == "Sequence" { for d in j["decoders"]?.arrayValue ?? [] { try checkDecoder(d, file: file) }; return }
        throw fail("decoder '\(t)' is not supported (supported: ByteLevel)", file)
    }
}
