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
        let json = try parseFile(path)
        let configPath = joinPath(folder, "tokenizer_config.json")
        let config = fileExists(configPath) ? try parseFile(configPath) : nil
        return try parse(json, config: config, file: path)
    }

    static func parseFile(_ path: String) throws -> JSONValue {
        let m = try MappedFile(path: path)
        return try withExtendedLifetime(m) { try JSONValue.parse(m.bytes, file: path) }
    }

    static func fail(_ what: String, _ file: String) -> MalError {
        MalError(.unsupported, what, file: file)
    }

    public static func parse(_ json: JSONValue, config: JSONValue?, file: String) throws -> TokenizerModel {
        guard let model = json["model"] else { throw MalError(.missingField, "tokenizer.json has no 'model'", file: file) }
        let type = model["type"]?.stringValue ?? "BPE"
        guard type == "BPE" else { throw fail("tokenizer model '\(type)' is not supported (supported: BPE)", file) }
        if model["byte_fallback"]?.boolValue == true { throw fail("BPE byte_fallback is not supported (byte-level BPE only)", file) }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let s = model[key]?.stringValue, !s.isEmpty { throw fail("BPE \(key) '\(s)' is not supported", file) }
        }
        guard let vocab = model["vocab"]?.objectPairs else { throw MalError(.missingField, "model.vocab is missing", file: file) }
        var maxId = -1
        for (_, v) in vocab { maxId = max(maxId, v.intValue ?? -1) }
        let added = try (json["added_tokens"]?.arrayValue ?? []).map { a -> TokenizerModel.AddedToken in
            guard let id = a["id"]?.intValue, let content = a["content"]?.stringValue else {
                throw MalError(.invalidField, "added token without id or content: \(a.serialized)", file: file)
            }
            guard (0..<TokenizerJSONReader.maxTokenId).contains(id) else {
                throw MalError(.invalidField, "added token \(content.debugDescription) has id \(id), outside 0..<\(TokenizerJSONReader.maxTokenId)", file: file)
            }
            return .init(id: Int32(id), content: content, special: a["special"]?.boolValue ?? false, lstrip: a["lstrip"]?.boolValue ?? false,
                         rstrip: a["rstrip"]?.boolValue ?? false, singleWord: a["single_word"]?.boolValue ?? false,
                         normalized: a["normalized"]?.boolValue ?? false)
        }
        for a in added { maxId = max(maxId, Int(a.id)) }
        guard maxId < TokenizerJSONReader.maxTokenId else { throw MalError(.invalidField, "token id \(maxId) is implausibly large", file: file) }
        var tokens = [[UInt8]?](repeating: nil, count: maxId + 1)
        let addedContents = Set(added.map(\.content))
        var idOf: [String: Int32] = [:]
        idOf.reserveCapacity(vocab.count)
        for (tok, v) in vocab {
            guard let id = v.intValue, id >= 0 else { throw MalError(.invalidField, "vocab entry '\(tok)' has no valid id", file: file) }
            idOf[tok] = Int32(id)
            if addedContents.contains(tok) { continue }     // special tokens may sit in the vocab too
            guard let b = TokenizerModel.bytes(ofByteLevel: tok) else {
                throw fail("vocab entry '\(tok)' is not in the byte-level alphabet (only byte-level BPE is supported)", file)
            }
            tokens[id] = b
        }
        var merges: [(Int32, Int32, Int32)] = []
        let mlist = model["merges"]?.arrayValue ?? []
        merges.reserveCapacity(mlist.count)
        for (i, m) in mlist.enumerated() {
            let pair: (String, String)
            if let s = m.stringValue {
                let parts = s.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw MalError(.invalidField, "merge \(i) '\(s)' is not 'a b'", file: file) }
                pair = (String(parts[0]), String(parts[1]))
            } else if let a = m.arrayValue, a.count == 2, let x = a[0].stringValue, let y = a[1].stringValue {
                pair = (x, y)
            } else {
                throw MalError(.invalidField, "merge \(i) is neither 'a b' nor [a, b]: \(m.serialized)", file: file)
            }
            guard let a = idOf[pair.0], let b = idOf[pair.1], let c = idOf[pair.0 + pair.1] else {
                throw MalError(.invalidField, "merge \(i) (\(pair.0), \(pair.1)) uses tokens missing from the vocabulary", file: file)
            }
            merges.append((a, b, c))
        }
        // tokenizer_config.json: bos/eos, and LlamaTokenizerFast's add_bos_token/add_eos_token,
        // which transformers turns into the post-processor (overriding tokenizer.json's).
        func tokenString(_ v: JSONValue?) -> String? { v?.stringValue ?? v?["content"]?.stringValue }
        let bos = tokenString(config?["bos_token"]), eos = tokenString(config?["eos_token"])
        var post = try json["post_processor"].flatMap { $0.isNull ? nil : try postProcessor($0, file: file) }
        let cls = config?["tokenizer_class"]?.stringValue ?? ""
        if cls.hasPrefix("LlamaTokenizer"), let config {
            let addBos = config["add_bos_token"]?.boolValue ?? true, addEos = config["add_eos_token"]?.boolValue ?? false
            var pieces: [TokenizerModel.TemplatePiece] = []
            func id(_ s: String?) throws -> Int32 {
                guard let s, let a = added.first(where: { $0.content == s }) else {
                    throw MalError(.invalidField, "special token \(s ?? "nil") of tokenizer_config.json is not an added token", file: file)
                }
                return a.id
            }
            if addBos { pieces.append(.special([try id(bos)])) }
            pieces.append(.sequence)
            if addEos { pieces.append(.special([try id(eos)])) }
            post = .template(pieces)
        }
        if let d = json["decoder"], !d.isNull { try checkDecoder(d, file: file) }
        return TokenizerModel(tokens: tokens, merges: merges, addedTokens: added,
                              normalizer: try json["normalizer"].flatMap { $0.isNull ? nil : try normalizer($0, file: file) },
                              preTokenizer: try json["pre_tokenizer"].flatMap { $0.isNull ? nil : try preTokenizer($0, file: file) },
                              postProcessor: post, ignoreMerges: model["ignore_merges"]?.boolValue ?? false, bosToken: bos, eosToken: eos)
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
            if let r = j["pattern"]?["Regex"]?.stringValue { pattern = r; regex = true } else if let s = j["pattern"]?["String"]?.stringValue {
                pattern = s; regex = false
            } else { throw MalError(.invalidField, "Split pre-tokenizer without a pattern", file: file) }
            let names: [String: TokenizerModel.SplitBehavior] = ["Removed": .removed, "Isolated": .isolated, "MergedWithPrevious": .mergedWithPrevious,
                                                                 "MergedWithNext": .mergedWithNext, "Contiguous": .contiguous]
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
            return .template(try (j["single"]?.arrayValue ?? []).map { p in
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
