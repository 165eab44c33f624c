import Foundation
import MalCore
import MalReaders
import MalTestSupport
import MalTransforms
import MalWriters
import Testing

/// Untrusted numbers that size memory or a loop, fed at and beyond their limits to each reader: the
/// answer is an error naming the field, reached before any allocation of that size.
@Suite("Sizes at the edges") struct EdgeSizeTests {
    /// A small valid container, its bytes, and where its first table record starts.
    static func container() throws -> (bytes: [UInt8], record: Int) {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let canon = try HFCanonicalModel(model: try HFModel(path: Fixtures.model("llama3-tiny")))
        _ = try ContainerExport.write(canon, to: dir + "/m.mal", options: MalWriter.Options(), command: "test", optionValues: [:])
        let b = [UInt8](FileManager.default.contents(atPath: dir + "/m.mal")!)
        return (b, Int(u64(b, 40)) + 8)
    }

    static func u64(_ b: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) } }
    static func put(_ b: inout [UInt8], _ at: Int, _ v: UInt64, width: Int) {
        for i in 0..<width { b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
    }

    /// Recomputes the metadata, table and header checksums, so only the edited value is wrong.
    static func resealed(_ b: [UInt8]) -> [UInt8] {
        var b = b
        let mo = Int(u64(b, 24)), ml = Int(u64(b, 32)), to = Int(u64(b, 40)), tl = Int(u64(b, 48))
        put(&b, 56, xxh64(Array(b[mo..<(mo + ml)])), width: 8)
        put(&b, 64, xxh64(Array(b[to..<(to + tl)])), width: 8)
        put(&b, 88, xxh64(Array(b[0..<88])), width: 8)
        return b
    }

    /// (what, offset from the first record or nil for the table's count, width, value, message).
    static let tableEdges: [(String, Int?, Int, UInt64, String)] = [
        ("tensor count 2^32-1", nil, 4, UInt64(UInt32.max), "room for at most"),
        ("name length 0", 0, 2, 0, "name length"),
        ("name length 65535", 0, 2, 65535, "name length"),
        ("chunk size 0", 8, 4, 0, "chunk size"),
        ("chunk size 2^32-1", 8, 4, UInt64(UInt32.max), "chunk size"),
        ("raw length 2^64-1", 16, 8, UInt64.max, ""),
        ("chunk count 2^32-1", 32, 4, UInt64(UInt32.max), ""),
        ("first dimension 2^48", 40, 8, 1 << 48, ""),
        ("first dimension 2^64-1", 40, 8, UInt64.max, ""),
        ("nibble planes on a tensor that is not F8_E4M3", 3, 1, 4, "nibble planes are for F8_E4M3 only"),
    ]

    @Test("table counts and lengths at their limits", arguments: 0..<tableEdges.count)
    func tableEdge(_ i: Int) throws {
        let (what, field, width, value, phrase) = EdgeSizeTests.tableEdges[i]
        var (b, record) = try EdgeSizeTests.container()
        EdgeSizeTests.put(&b, field.map { record + $0 } ?? Int(EdgeSizeTests.u64(b, 40)), value, width: width)
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        FileManager.default.createFile(atPath: dir + "/e.mal", contents: Data(EdgeSizeTests.resealed(b)))
        let e = try #require(throws: MalError.self, "\(what)") { _ = try MalFile(path: dir + "/e.mal") }
        #expect(e.file == dir + "/e.mal" && e.offset != nil, "\(what): \(e)")
        #expect(phrase.isEmpty || e.description.contains(phrase), "\(what): \(e)")
    }

    @Test("header offsets and lengths near 2^64")
    func headerEdges() throws {
        let (base, _) = try EdgeSizeTests.container()
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        for field in [24, 32, 40, 48] {
            for value in [UInt64.max, UInt64.max - 95, UInt64(Int64.max), UInt64(base.count) + 1] {
                var b = base
                EdgeSizeTests.put(&b, field, value, width: 8)
                EdgeSizeTests.put(&b, 88, xxh64(Array(b[0..<88])), width: 8)
                FileManager.default.createFile(atPath: dir + "/h.mal", contents: Data(b))
                let e = try #require(throws: MalError.self) { _ = try MalFile(path: dir + "/h.mal") }
                #expect(e.kind == .corruptStructure && e.offset == 24, "field \(field) = \(value): \(e)")
            }
        }
    }

    static func tokenizerFolder(_ edit: (inout [String: Any]) -> Void) throws -> String {
        let src = Fixtures.fixtures + "/tokenizers/gpt2-bpe-2k"
        var t = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: src + "/tokenizer.json"))) as! [String: Any]
        edit(&t)
        let dir = Fixtures.tempDir()
        try JSONSerialization.data(withJSONObject: t).write(to: URL(fileURLWithPath: dir + "/tokenizer.json"))
        try FileManager.default.copyItem(atPath: src + "/tokenizer_config.json", toPath: dir + "/tokenizer_config.json")
        return dir
    }

    @Test("token ids at the tokenizer reader's limit")
    func tokenIds() throws {
        let limit = TokenizerJSONReader.maxTokenId
        for (id, ok) in [(limit - 1, true), (limit, false), (Int(Int32.max) + 1, false), (Int.max, false), (-1, false)] {
            let dir = try EdgeSizeTests.tokenizerFolder { t in
                t["added_tokens"] = [["id": id, "content": "<edge>", "special": true]]
            }
            defer { Fixtures.cleanup(dir) }
            if ok {
                // Accepted, with a sparse table of `limit` entries (bounded by the limit itself).
                #expect(try TokenizerJSONReader.read(folder: dir).tokens.count == limit)
            } else {
                let e = try #require(throws: MalError.self, "id \(id)") { _ = try TokenizerJSONReader.read(folder: dir) }
                #expect(e.kind == .invalidField && e.file?.hasSuffix("tokenizer.json") == true, "id \(id): \(e)")
            }
        }
        for id in [limit, Int(Int32.max) + 1, Int.max] {
            let dir = try EdgeSizeTests.tokenizerFolder { t in
                var m = t["model"] as! [String: Any]
                var v = m["vocab"] as! [String: Any]
                v["!"] = id
                m["vocab"] = v
                t["model"] = m
            }
            defer { Fixtures.cleanup(dir) }
            #expect(throws: MalError.self, "vocab id \(id)") { _ = try TokenizerJSONReader.read(folder: dir) }
        }
    }

    @Test("a shard index of 200,000 names naming a missing shard fails fast")
    func largeIndex() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        var map: [String: String] = [:]
        for i in 0..<200_000 { map["t\(i)"] = "model-\(i % 7).safetensors" }
        try JSONSerialization.data(withJSONObject: ["weight_map": map]).write(to: URL(fileURLWithPath: dir + "/model.safetensors.index.json"))
        let start = Date()
        let e = try #require(throws: MalError.self) { _ = try SafetensorsCheckpoint(indexPath: dir + "/model.safetensors.index.json") }
        #expect(e.kind == .indexMissingShard, "\(e)")
        #expect(Date().timeIntervalSince(start) < 20)
    }

    @Test("MoE layers × experts beyond the bound are refused before anything is listed")
    func expertInstances() throws {
        var cfg =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.model("deepseek-v3-tiny") + "/config.json")))
            as! [String: Any]
        cfg["num_hidden_layers"] = 65535
        cfg["n_routed_experts"] = 65536
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: dir + "/config.json"))
        let e = try #require(throws: MalError.self) { _ = try HFConfigReader.read(path: dir + "/config.json") }
        #expect(e.kind == .invalidField && e.description.contains("experts in all"), "\(e)")
    }
}
