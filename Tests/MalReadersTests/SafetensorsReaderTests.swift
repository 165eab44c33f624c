import Foundation
import MalTestSupport
import Testing
import MalCore
@testable import MalReaders

@Suite("Safetensors reader and tensor inventory")
struct SafetensorsReaderTests {
    @Test("every fixture: both configs, zero missing/unexpected/mis-shaped tensors", arguments: Fixtures.models)
    func fixtureInventory(model: String) throws {
        let m = try HFModel(path: Fixtures.model(model))
        for config in ["config.json", "config.hub-legacy.json"] {
            let spec = try HFConfigReader.read(path: Fixtures.model(model) + "/" + config)
            let inv = TensorInventory.check(spec: spec, tensors: m.tensors)
            #expect(inv.missing.isEmpty, "\(model)/\(config) missing: \(inv.missing)")
            #expect(inv.unexpected.isEmpty, "\(model)/\(config) unexpected: \(inv.unexpected)")
            #expect(inv.misshaped.isEmpty, "\(model)/\(config) mis-shaped: \(inv.misshaped)")
        }
    }

    @Test(
        "tensor names, dtypes, shapes and parameter count agree with an independent JSON parse",
        arguments: Fixtures.models)
    func headerAgreesWithOracle(model: String) throws {
        let m = try HFModel(path: Fixtures.model(model))
        var oracle: [String: (dtype: String, shape: [Int])] = [:]
        for f in m.checkpoint.files { oracle.merge(try Fixtures.headerOracle(f.path)) { a, _ in a } }
        #expect(oracle.count == m.tensors.count)
        for t in m.tensors {
            let o = try #require(oracle[t.name])
            #expect(o.dtype == t.dtype.rawValue && o.shape == t.shape, "\(t.name)")
        }
        let total = oracle.values.reduce(0) { $0 + $1.shape.reduce(1, *) }
        let summary = ModelSummary(model: m)
        #expect(summary.parameters + summary.scaleElements == total)
        #expect(summary.parameters == summary.specParameters)
    }

    @Test func fp8FixtureScalesMatched() throws {
        let m = try HFModel(path: Fixtures.model("deepseek-v3-fp8"))
        let inv = m.inventory()
        #expect(inv.scaleTensors == 72)
        let info = try #require(m.checkpoint.info("model.layers.0.self_attn.q_b_proj.weight_scale_inv"))
        #expect(info.shape == [2, 1] && info.dtype == .f32)
    }

    @Test func shardedCheckpointReadsBothShards() throws {
        let c = try SafetensorsCheckpoint(path: Fixtures.model("llama3-tiny"))
        #expect(c.files.count == 2 && c.indexPath != nil)
        let t = try c.tensor(named: "model.norm.weight")
        #expect(t.dtype == .bf16 && t.shape == [64] && t.bytes.count == 128)
        // Index file given directly gives the same checkpoint.
        let d = try SafetensorsCheckpoint(path: Fixtures.model("llama3-tiny") + "/model.safetensors.index.json")
        #expect(d.tensors == c.tensors)
    }

    @Test func dataIsReadExactly() throws {
        // A tensor's bytes are the bytes at its offset in the file.
        let path = Fixtures.model("gpt2-tiny") + "/model.safetensors"
        let f = try SafetensorsFile(path: path)
        let raw = try Data(contentsOf: URL(fileURLWithPath: path))
        for info in f.tensors {
            let t = f.tensor(info)
            #expect(t.withBytes { Data($0) } == raw.subdata(in: info.fileOffset..<(info.fileOffset + info.byteCount)))
        }
    }

    @Test func unalignedDataIsCopiedAligned() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        // A 1-byte U8 tensor first misaligns the F32 after it (header padded to 8 bytes).
        let header = #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}}"#
        let padded = header + String(repeating: " ", count: (8 - header.utf8.count % 8) % 8)
        var data: [UInt8] = [7]
        for v: Float in [1.5, -2.25] { withUnsafeBytes(of: v.bitPattern.littleEndian) { data += $0 } }
        writeFile(dir + "/m.safetensors", safetensorsBytes(header: padded, data: data))
        let f = try SafetensorsFile(path: dir + "/m.safetensors")
        let b = try f.tensor(named: "b")
        #expect(!b.storage.isZeroCopy)
        #expect(Int(bitPattern: b.bytes.baseAddress!) % 4 == 0)
        #expect(b.withBytes { $0.load(fromByteOffset: 4, as: Float.self) } == -2.25)
        #expect(try f.tensor(named: "a").storage.isZeroCopy)
    }

    @Test func emptyAndScalarTensorsAreValid() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let header =
            #"{"__metadata__":{"format":"pt"},"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0,4],"data_offsets":[8,8]}}"#
        writeFile(dir + "/m.safetensors", safetensorsBytes(header: header, data: [UInt8](repeating: 0, count: 8)))
        let f = try SafetensorsFile(path: dir + "/m.safetensors")
        #expect(f.tensors.count == 2)
        #expect(f.metadata.first?.1 == "pt")
    }

    @Test func everyDTypeIsAccepted() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        var entries: [String] = []
        var offset = 0
        for d in DType.allCases {
            let bytes = d.byteCount(elements: 4)!
            entries.append(#""t_\#(d.rawValue)":{"dtype":"\#(d.rawValue)","shape":[2,2],"data_offsets":[\#(offset),\#(offset + bytes)]}"#)
            offset += bytes
        }
        writeFile(
            dir + "/m.safetensors",
            safetensorsBytes(
                header: "{" + entries.joined(separator: ",") + "}",
                data: [UInt8](repeating: 0, count: offset)))
        let f = try SafetensorsFile(path: dir + "/m.safetensors")
        #expect(Set(f.tensors.map(\.dtype)) == Set(DType.allCases))
    }
}

/// Hostile and malformed files: each must give its own error kind, name the file, and not crash.
@Suite("Malformed safetensors files")
struct MalformedSafetensorsTests {
    struct Case: CustomStringConvertible, Sendable {
        var name: String
        var bytes: [UInt8]
        var kind: MalError.Kind
        var tensor: String?
        var description: String { name }
    }

    static func entry(_ name: String, _ dtype: String = "F32", _ shape: String = "[2]", _ b: Int, _ e: Int) -> String {
        #""\#(name)":{"dtype":"\#(dtype)","shape":\#(shape),"data_offsets":[\#(b),\#(e)]}"#
    }

    static func file(_ entries: [String], data: Int) -> [UInt8] {
        safetensorsBytes(header: "{" + entries.joined(separator: ",") + "}", data: [UInt8](repeating: 0, count: data))
    }

    static let cases: [Case] = [
        Case(name: "empty file", bytes: [], kind: .headerTooSmall),
        Case(name: "truncated length prefix", bytes: [16, 0, 0], kind: .headerTooSmall),
        Case(
            name: "header length past end of file",
            bytes: safetensorsBytes(header: "{}", data: [], declaredLength: 4096), kind: .invalidHeaderLength),
        Case(
            name: "header length over the 100 MB cap",
            bytes: safetensorsBytes(header: "{}", data: [], declaredLength: 100_000_001), kind: .headerTooLarge),
        Case(
            name: "header length near 2^64",
            bytes: safetensorsBytes(header: "{}", data: [], declaredLength: UInt64.max - 3), kind: .headerTooLarge),
        Case(
            name: "truncated header JSON", bytes: safetensorsBytes(header: #"{"a":{"dtype":"F32","sh"#, data: []),
            kind: .invalidHeaderJSON),
        Case(name: "header not an object", bytes: safetensorsBytes(header: "[1,2]", data: []), kind: .invalidHeaderJSON),
        Case(name: "trailing garbage after header", bytes: safetensorsBytes(header: "{} x", data: []), kind: .invalidHeaderJSON),
        Case(
            name: "invalid UTF-8 in a name",
            bytes: safetensorsBytes(header: "{\"\u{FF}\":1}", data: []).enumerated().map {
                $0.offset == 10 ? 0xFF : $0.element
            }, kind: .invalidHeaderUTF8),
        Case(name: "unknown dtype", bytes: file([entry("w", "F12", "[2]", 0, 8)], data: 8), kind: .unknownDType, tensor: "w"),
        Case(name: "negative dimension", bytes: file([entry("w", "F32", "[-2]", 0, 8)], data: 8), kind: .invalidShape, tensor: "w"),
        Case(name: "fractional dimension", bytes: file([entry("w", "F32", "[2.5]", 0, 8)], data: 8), kind: .invalidShape, tensor: "w"),
        Case(
            name: "shape product overflows", bytes: file([entry("w", "F32", "[4294967296,4294967296]", 0, 8)], data: 8),
            kind: .shapeOverflow, tensor: "w"),
        Case(
            name: "byte size overflows", bytes: file([entry("w", "F64", "[2305843009213693952]", 0, 8)], data: 8),
            kind: .shapeOverflow, tensor: "w"),
        Case(
            name: "dimension beyond 64 bits", bytes: file([entry("w", "F32", "[99999999999999999999999]", 0, 8)], data: 8),
            kind: .shapeOverflow, tensor: "w"),
        Case(
            name: "size does not match shape", bytes: file([entry("w", "F32", "[3]", 0, 8)], data: 8),
            kind: .tensorSizeMismatch, tensor: "w"),
        Case(name: "offsets reversed", bytes: file([entry("w", "F32", "[0]", 8, 0)], data: 8), kind: .offsetsReversed, tensor: "w"),
        Case(
            name: "offsets past end of file", bytes: file([entry("w", "F32", "[2]", 0, 8), entry("v", "F32", "[2]", 8, 16)], data: 8),
            kind: .offsetOutOfFile, tensor: "v"),
        Case(
            name: "overlapping tensors", bytes: file([entry("a", "F32", "[2]", 0, 8), entry("b", "F32", "[2]", 4, 12)], data: 12),
            kind: .overlappingTensors, tensor: "b"),
        Case(
            name: "same range twice", bytes: file([entry("a", "F32", "[2]", 0, 8), entry("b", "F32", "[2]", 0, 8)], data: 8),
            kind: .overlappingTensors, tensor: "b"),
        Case(
            name: "hole between tensors", bytes: file([entry("a", "F32", "[2]", 0, 8), entry("b", "F32", "[2]", 12, 20)], data: 20),
            kind: .holeInData, tensor: "b"),
        Case(name: "data section not fully covered", bytes: file([entry("a", "F32", "[2]", 0, 8)], data: 12), kind: .incompleteData),
        Case(
            name: "duplicate tensor name", bytes: file([entry("a", "F32", "[1]", 0, 4), entry("a", "F32", "[1]", 4, 8)], data: 8),
            kind: .duplicateKey, tensor: "a"),
        Case(
            name: "missing data_offsets", bytes: safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[1]}}"#, data: [0, 0, 0, 0]),
            kind: .invalidHeaderJSON, tensor: "a"),
        Case(
            name: "three data_offsets",
            bytes: safetensorsBytes(
                header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}"#,
                data: [0, 0, 0, 0]), kind: .invalidHeaderJSON, tensor: "a"),
        Case(
            name: "non-string metadata value",
            bytes: safetensorsBytes(header: #"{"__metadata__":{"k":1}}"#, data: []), kind: .invalidMetadata),
        Case(
            name: "sub-byte tensor not ending on a byte", bytes: file([entry("a", "F4", "[3]", 0, 2)], data: 2),
            kind: .misalignedSlice, tensor: "a"),
    ]

    @Test("each malformed file gives its specific error", arguments: cases)
    func malformed(c: Case) throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let path = dir + "/bad.safetensors"
        writeFile(path, c.bytes)
        let e = try #require(throws: MalError.self) { try SafetensorsFile(path: path) }
        #expect(e.kind == c.kind, "\(c.name): got \(e)")
        #expect(e.file == path)
        #expect(e.offset != nil, "\(c.name): no byte offset in \(e)")
        if let t = c.tensor { #expect(e.tensor == t, "\(c.name): \(e)") }
    }

    /// Every truncation of a real file is rejected with an error (never a crash).
    @Test func everyTruncationIsRejected() throws {
        let src = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Fixtures.model("deepseek-v2-lite-tiny") + "/model.safetensors")))
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let path = dir + "/t.safetensors"
        var lengths = Array(stride(from: 0, to: 5000, by: 7))
        lengths += [src.count - 1, src.count - 2, src.count / 2]
        for n in lengths {
            writeFile(path, Array(src[0..<n]))
            #expect(throws: MalError.self, "truncated to \(n)") { try SafetensorsFile(path: path) }
        }
    }

    /// Random single-byte corruption of the header never crashes the reader.
    @Test func randomHeaderCorruption() throws {
        let src = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Fixtures.model("gpt2-tiny") + "/model.safetensors")))
        let n = Int(src[0]) | Int(src[1]) << 8
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let path = dir + "/c.safetensors"
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            var b = src
            let pos = Int.random(in: 0..<(8 + n), using: &rng)
            b[pos] = UInt8.random(in: 0...255, using: &rng)
            writeFile(path, b)
            do { _ = try SafetensorsFile(path: path) } catch is MalError {}  // either outcome is fine; no crash
        }
    }
}

@Suite("Sharded checkpoints")
struct ShardIndexTests {
    /// Copies the llama3-tiny shards into a temp folder with an index text of our own.
    func shardedFolder(index: String) throws -> String {
        let dir = Fixtures.tempDir()
        for s in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "config.json"] {
            try FileManager.default.copyItem(atPath: Fixtures.model("llama3-tiny") + "/" + s, toPath: dir + "/" + s)
        }
        try index.write(toFile: dir + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        return dir
    }

    func realIndex() throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.model("llama3-tiny") + "/model.safetensors.index.json"))
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    func indexText(_ mutate: (inout [String: String]) -> Void) throws -> String {
        var idx = try realIndex()
        var map = idx["weight_map"] as! [String: String]
        mutate(&map)
        idx["weight_map"] = map
        return String(decoding: try JSONSerialization.data(withJSONObject: idx), as: UTF8.self)
    }

    func expectError(_ index: String, _ kind: MalError.Kind, tensor: String? = nil) throws {
        let dir = try shardedFolder(index: index); defer { Fixtures.cleanup(dir) }
        let e = try #require(throws: MalError.self) { try SafetensorsCheckpoint(path: dir) }
        #expect(e.kind == kind, "\(e)")
        if let tensor { #expect(e.tensor == tensor, "\(e)") }
    }

    @Test func indexNamesMissingShard() throws {
        try expectError(
            try indexText { $0["model.norm.weight"] = "model-00003-of-00002.safetensors" }, .indexMissingShard,
            tensor: "model.norm.weight")
    }

    @Test func indexNamesMissingTensor() throws {
        try expectError(
            try indexText { $0["model.layers.9.mlp.up_proj.weight"] = "model-00002-of-00002.safetensors" },
            .indexMissingTensor, tensor: "model.layers.9.mlp.up_proj.weight")
    }

    @Test func shardHoldsUnlistedTensor() throws {
        try expectError(try indexText { $0.removeValue(forKey: "model.norm.weight") }, .indexUnlistedTensor, tensor: "model.norm.weight")
    }

    @Test func indexPointsAtWrongShard() throws {
        try expectError(
            try indexText { $0["model.norm.weight"] = "model-00001-of-00002.safetensors" }, .indexMissingTensor,
            tensor: "model.norm.weight")
    }

    @Test func indexEscapingFolderIsRejected() throws {
        try expectError(try indexText { $0["model.norm.weight"] = "../model-00002-of-00002.safetensors" }, .indexInvalid)
    }

    @Test func indexWithoutWeightMap() throws {
        try expectError(#"{"metadata": {}}"#, .indexInvalid)
    }

    @Test func indexNotJSON() throws {
        try expectError(#"{"weight_map": "#, .invalidJSON)
    }
}
