import Foundation

/// The binary form of a `TokenizerModel` stored in `.mal` files as `aux/tokenizer.bin`
/// (`Formats/MAL.md` §7.2): loads without parsing the (large) vocabulary and merges as JSON.
///
/// Layout (little-endian): magic `MALTOK\0\x01`; u32 token count; per token u32 length
/// (0xFFFFFFFF: no entry) + bytes; u32 merge count; per merge three u32 ids (left, right, merged);
/// u32 length + JSON of the rest (added tokens, normalizer, pre-tokenizer, post-processor, flags).
public enum TokenizerBinary {
    static let magic: [UInt8] = [0x4D, 0x41, 0x4C, 0x54, 0x4F, 0x4B, 0x00, 0x01]

    struct Rest: Codable {
        var addedTokens: [TokenizerModel.AddedToken]
        var normalizer: TokenizerModel.Normalizer?
        var preTokenizer: TokenizerModel.PreTokenizer?
        var postProcessor: TokenizerModel.PostProcessor?
        var ignoreMerges: Bool
        var bosToken: String?
        var eosToken: String?
    }

    public static func encode(_ m: TokenizerModel) throws -> [UInt8] {
        var w = ByteWriter()
        w.bytes(magic)
        w.u32(UInt32(m.tokens.count))
        for i in m.tokens.indices {
            if m.tokens.missing[i] {
                w.u32(0xFFFF_FFFF)
            } else {
                let r = m.tokens.range(i)
                w.u32(UInt32(r.count))
                w.bytes(Array(m.tokens.arena[r]))
            }
        }
        w.u32(UInt32(m.merges.count))
        for (a, b, c) in m.merges { w.u32(UInt32(bitPattern: a)); w.u32(UInt32(bitPattern: b)); w.u32(UInt32(bitPattern: c)) }
        let rest = Rest(
            addedTokens: m.addedTokens, normalizer: m.normalizer, preTokenizer: m.preTokenizer, postProcessor: m.postProcessor,
            ignoreMerges: m.ignoreMerges, bosToken: m.bosToken, eosToken: m.eosToken)
        // Sorted keys: the same tokenizer gives the same bytes (JSONEncoder's key order is not
        // stable from one process to the next), so a conversion is reproducible.
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = [UInt8](try encoder.encode(rest))
        w.u32(UInt32(json.count))
        w.bytes(json)
        return w.data
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer, file: String) throws -> TokenizerModel {
        var r = ByteReader(bytes, file: file)
        guard bytes.count >= 8, Array(try r.raw(8, "magic")) == magic else {
            throw MalError(.badMagic, "not a malconv tokenizer blob", file: file, offset: 0)
        }
        let n = Int(try r.u32("token count"))
        guard n <= r.remaining / 4, n <= TokenizerModel.maxTokenId else {
            throw MalError(.corruptStructure, "token count \(n) exceeds the blob or \(TokenizerModel.maxTokenId)", file: file, offset: 8)
        }
        // Tokens: one pass over the length-prefixed entries straight into the table's buffers.
        var tokens = TokenTable()
        tokens.reserve(n, bytes: r.remaining)
        var at = r.position
        for _ in 0..<n {
            guard at + 4 <= bytes.count else {
                throw MalError(.invalidHeaderLength, "truncated: token length needs 4 bytes, \(bytes.count - at) left", file: file, offset: at)
            }
            let len = bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self).littleEndian
            at += 4
            if len == 0xFFFF_FFFF { tokens.append(nil); continue }
            guard Int(len) <= bytes.count - at else {
                throw MalError(.invalidHeaderLength, "truncated: token bytes needs \(len) bytes, \(bytes.count - at) left", file: file, offset: at)
            }
            tokens.append(UnsafeRawBufferPointer(rebasing: bytes[at..<(at + Int(len))]))
            at += Int(len)
        }
        r.position = at
        let m = Int(try r.u32("merge count"))
        guard m <= r.remaining / 12 else { throw MalError(.corruptStructure, "merge count \(m) exceeds the blob", file: file, offset: r.position) }
        var merges: [(Int32, Int32, Int32)] = []
        merges.reserveCapacity(m)
        let mergesStart = r.position
        for k in 0..<m {
            let o = mergesStart + 12 * k
            let a = Int32(bitPattern: bytes.loadUnaligned(fromByteOffset: o, as: UInt32.self).littleEndian)
            let b = Int32(bitPattern: bytes.loadUnaligned(fromByteOffset: o + 4, as: UInt32.self).littleEndian)
            let c = Int32(bitPattern: bytes.loadUnaligned(fromByteOffset: o + 8, as: UInt32.self).littleEndian)
            guard a >= 0, b >= 0, c >= 0, Int(a) < n, Int(b) < n, Int(c) < n else {
                throw MalError(.corruptStructure, "merge refers to a token outside the vocabulary", file: file, offset: o + 12)
            }
            merges.append((a, b, c))
        }
        r.position = mergesStart + 12 * m
        let jl = Int(try r.u32("json length"))
        let json = try r.raw(jl, "json")
        let rest: Rest
        do { rest = try JSONDecoder().decode(Rest.self, from: Data(json)) } catch {
            throw MalError(.corruptStructure, "tokenizer settings are not valid: \(error)", file: file, offset: r.position - jl)
        }
        if let a = rest.addedTokens.first(where: { !(0..<Int32(TokenizerModel.maxTokenId)).contains($0.id) }) {
            throw MalError(
                .corruptStructure, "added token \(a.content.debugDescription) has id \(a.id), outside 0..<\(TokenizerModel.maxTokenId)",
                file: file, offset: r.position - jl)
        }
        return TokenizerModel(
            tokens: tokens, merges: merges, addedTokens: rest.addedTokens, normalizer: rest.normalizer,
            preTokenizer: rest.preTokenizer, postProcessor: rest.postProcessor, ignoreMerges: rest.ignoreMerges,
            bosToken: rest.bosToken, eosToken: rest.eosToken)
    }
}
