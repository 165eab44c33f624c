import CMalKernels
import Foundation
import MalTestSupport
import Testing
import MalCore
import MalReaders
import MalTransforms
import MalWriters

/// Hash of every tensor of a checkpoint: name → (dtype, shape, xxh64 of bytes).
func tensorDigests(_ path: String) throws -> [String: String] {
    let c = try SafetensorsCheckpoint(path: path)
    var out: [String: String] = [:]
    for t in c.tensors {
        let tensor = try c.tensor(named: t.name)
        out[t.name] = "\(t.dtype.rawValue) \(t.shape) \(hex16(tensor.withBytes { xxh64($0) }))"
    }
    return out
}

func convert(_ model: String, to path: String, dtype: TargetDType = .keep) throws -> ContainerExport.Summary {
    let hf = try HFModel(path: model)
    let canon = try HFCanonicalModel(model: hf, target: dtype)
    return try ContainerExport.write(canon, to: path, options: MalWriter.Options(), command: "test", optionValues: [:])
}

/// A model whose spec was edited (everything else from `base`): writes hostile-but-checksummed files.
final class EditedSpecModel: CanonicalModel {
    let base: HFCanonicalModel
    let spec: ModelSpec
    init(_ base: HFCanonicalModel, _ edit: (inout ModelSpec) -> Void) {
        self.base = base
        var s = base.spec
        edit(&s)
        spec = s
    }
    var hfNamePrefix: String? { base.hfNamePrefix }
    var tensors: [CanonicalTensor] { base.tensors }
    func load(_ name: String) throws -> Tensor { try base.load(name) }
    var auxNames: [String] { base.auxNames }
    func aux(_ name: String) throws -> [UInt8]? { try base.aux(name) }
}

/// A model whose tensors `a` and `b` carry each other's names (a well-formed, checksummed file
/// with the wrong tensor under a name).
final class SwappedNamesModel: CanonicalModel {
    let base: HFCanonicalModel, a: String, b: String
    init(_ base: HFCanonicalModel, _ a: String, _ b: String) { self.base = base; self.a = a; self.b = b }
    func other(_ n: String) -> String { n == a ? b : n == b ? a : n }
    var spec: ModelSpec { base.spec }
    var hfNamePrefix: String? { base.hfNamePrefix }
    var tensors: [CanonicalTensor] {
        base.tensors.map {
            var t = $0; t.name = other(t.name); return t
        }
    }
    func load(_ name: String) throws -> Tensor { try base.load(other(name)) }
    var auxNames: [String] { base.auxNames }
    func aux(_ name: String) throws -> [UInt8]? { try base.aux(name) }
}

@Suite("The .mal container")
struct ContainerTests {
    @Test("HF → convert --dtype keep → export gives identical tensors and config", arguments: Fixtures.models)
    func roundTrip(model: String) throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        _ = try convert(Fixtures.model(model), to: dir + "/m.mal")
        let mal = try MalFile(path: dir + "/m.mal")
        _ = try HFFolderWriter.write(mal, to: dir + "/out")
        #expect(try tensorDigests(dir + "/out") == tensorDigests(Fixtures.model(model)))
        // The exported Hub-style config describes the same model.
        let a = try HFConfigReader.read(path: Fixtures.model(model) + "/config.json")
        let b = try HFConfigReader.read(path: dir + "/out/config.json")
        #expect(a == b)
        // Tokenizer files travel verbatim.
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            #expect(FileManager.default.contentsEqual(atPath: dir + "/out/" + f, andPath: Fixtures.model(model) + "/" + f))
        }
    }

    /// A conversion is reproducible: two runs (two processes, so nothing carries over in memory)
    /// write the same bytes, the binary tokenizer included (its JSON tail once had an unstable key
    /// order), and so do two quantisations.
    @Test(arguments: ["llama3-tiny", "deepseek-v3-tiny"])
    func conversionIsReproducible(model: String) throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        for command in ["convert", "quantize"] {
            for i in 1...2 {
                let r = try runTool("malconv", [command, Fixtures.model(model), "-o", "\(dir)/\(command)\(i).mal"])
                #expect(r.status == 0, "\(r.stderr)")
            }
            let a = FileManager.default.contents(atPath: "\(dir)/\(command)1.mal"), b = FileManager.default.contents(atPath: "\(dir)/\(command)2.mal")
            #expect(a != nil && a == b, "\(command): two runs wrote different files")
        }
    }

    /// `--codec raw` writes every weight uncompressed and aligned; `malrun --mmap` runs it from the
    /// file's mapping with the logits of the decoded copy, bit for bit (these widths use the same
    /// kernels either way), F32, BF16 and FP8 alike. An HF output refuses the flag.
    @Test(arguments: ["gpt2-tiny", "llama3-tiny", "deepseek-v3-fp8"])
    func rawContainerRunsMapped(model: String) throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let r = try runTool("malconv", ["convert", Fixtures.model(model), "-o", dir + "/raw.mal", "--codec", "raw"])
        #expect(r.status == 0, "\(r.stderr)")
        let file = try MalFile(path: dir + "/raw.mal")
        #expect(file.modelEntries.allSatisfy { $0.codec == .raw || $0.codec == .alias })
        #expect(file.metadata.provenance.options["codec"] == "raw")
        #expect(try runTool("malconv", ["check", dir + "/raw.mal"]).status == 0)
        for mapped in [false, true] {
            let l = try runTool(
                "malrun",
                ["logits", dir + "/raw.mal", "--ids", "1,5,9,17", "-o", dir + "/l\(mapped).safetensors"]
                    + (mapped ? ["--mmap"] : []))
            #expect(l.status == 0, "\(l.stderr)")
        }
        let a = FileManager.default.contents(atPath: dir + "/lfalse.safetensors"), b = FileManager.default.contents(atPath: dir + "/ltrue.safetensors")
        #expect(a != nil && a == b, "mapped weights give other logits")
        let hf = try runTool("malconv", ["convert", Fixtures.model(model), "-o", dir + "/hf", "--codec", "raw"])
        #expect(hf.status == 1 && hf.stderr.contains("--codec raw is for .mal outputs"), "\(hf.stderr)")
    }

    /// `--mmap` hands raw tensors out unchecked so a cached model loads at once, and checks their
    /// checksums while it runs: a flipped byte in a weight still fails `logits` (no output
    /// written), `bench` and `generate`, naming the tensor; without `--mmap` the load fails.
    @Test func damagedRawContainerFailsMapped() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let path = dir + "/raw.mal"
        #expect(try runTool("malconv", ["convert", Fixtures.model("llama3-tiny"), "-o", path, "--codec", "raw"]).status == 0)
        let e = try #require(try MalFile(path: path).entries.filter { $0.codec == .raw }.max { $0.rawLength < $1.rawLength })
        var bytes = try #require(FileManager.default.contents(atPath: path))
        bytes[Int(e.chunks[0].offset) + 5] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))
        for mapped in [true, false] {
            let out = dir + "/l\(mapped).safetensors"
            let r = try runTool("malrun", ["logits", path, "--ids", "1,2,3", "-o", out] + (mapped ? ["--mmap"] : []))
            #expect(r.status == 1 && r.stderr.contains("checksum mismatch") && r.stderr.contains(e.name), "\(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out))
        }
        let b = try runTool("malrun", ["bench", path, "--mmap", "-p", "2", "-n", "2", "--repetitions", "1"])
        #expect(b.status == 1 && b.stderr.contains("checksum mismatch"), "\(b.stderr)")
        let g = try runTool("malrun", ["generate", path, "--mmap", "-p", "hi", "-n", "2"])
        #expect(g.status == 1 && g.stderr.contains("checksum mismatch"), "\(g.stderr)")
    }

    /// A container's tensor streamed in ranges that straddle its chunks (4 KiB here) gives the bytes
    /// `load` gives, raw and compressed alike: what export, dequantize and quantize pass through.
    @Test func streamedRangesEqualLoad() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let canon = try HFCanonicalModel(model: try HFModel(path: Fixtures.model("llama3-tiny")))
        var opts = MalWriter.Options()
        opts.chunkSize = 4096
        _ = try ContainerExport.write(canon, to: dir + "/m.mal", options: opts, command: "test", optionValues: [:])
        let file = try MalFile(path: dir + "/m.mal")
        var checked = 0
        for t in file.tensors where t.aliasOf == nil && (t.byteCount ?? 0) > 4096 {
            let whole = try file.load(t.name).byteArray
            let s = try #require(try file.stream(t.name))
            var got = [UInt8](repeating: 0, count: s.byteCount)
            var off = 0
            while off < s.byteCount {
                let n = min(3000, s.byteCount - off)  // ranges that start and end inside chunks
                try got.withUnsafeMutableBytes { try s.fill(off, n, $0.baseAddress! + off) }
                off += n
            }
            #expect(got == whole, "\(t.name)")
            checked += 1
        }
        #expect(checked > 10)
    }

    @Test func shardedExportRoundTrips() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        _ = try convert(Fixtures.model("deepseek-v3-tiny"), to: dir + "/m.mal")
        let s = try HFFolderWriter.write(try MalFile(path: dir + "/m.mal"), to: dir + "/out", maxShardBytes: 1_000_000)
        #expect(s.files.filter { $0.hasSuffix(".safetensors") }.count >= 3)
        #expect(FileManager.default.fileExists(atPath: dir + "/out/model.safetensors.index.json"))
        #expect(try tensorDigests(dir + "/out") == tensorDigests(Fixtures.model("deepseek-v3-tiny")))
    }

    @Test func canonicalNamesAndLayouts() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        _ = try convert(Fixtures.model("gpt2-tiny"), to: dir + "/m.mal")
        let mal = try MalFile(path: dir + "/m.mal")
        // GPT-2's fused c_attn [in, 3*out] is split into q, k, v stored [out, in].
        let q = try #require(mal.entry("blk.0.attn_q.weight"))
        #expect(q.shape == [64, 64])
        #expect(mal.entry("blk.1.ffn_up.weight")?.shape == [256, 64])
        #expect(mal.entry("transformer.wte.weight") == nil && mal.entry("token_embd.weight") != nil)
        // q[o][i] == c_attn[i][o]
        let hf = try SafetensorsCheckpoint(path: Fixtures.model("gpt2-tiny")).tensor(named: "transformer.h.0.attn.c_attn.weight")
        let t = try mal.tensor(named: "blk.0.attn_q.weight")
        let src = hf.bytes.bindMemory(to: Float.self), dst = t.bytes.bindMemory(to: Float.self)
        for (o, i) in [(0, 0), (3, 17), (63, 5), (10, 63)] { #expect(dst[o * 64 + i] == src[i * 192 + o]) }
        withExtendedLifetime((hf, t)) {}
        // Tied head: not stored by HF, not invented.
        #expect(mal.entry("output.weight") == nil)
    }

    @Test func mtpCopiesAreStoredOnce() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        _ = try convert(Fixtures.model("deepseek-v3-tiny"), to: dir + "/m.mal")
        let mal = try MalFile(path: dir + "/m.mal")
        let e = try #require(mal.entry("blk.3.nextn.embed_tokens.weight"))
        #expect(e.codec == .alias && mal.entries[Int(e.link)].name == "token_embd.weight")
        #expect(mal.entry("blk.3.nextn.shared_head_head.weight")?.codec == .alias)
        let a = try mal.tensor(named: "blk.3.nextn.embed_tokens.weight"), b = try mal.tensor(named: "token_embd.weight")
        #expect(a.byteArray == b.byteArray)
    }

    @Test func fp8WeightsPointAtTheirScales() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        _ = try convert(Fixtures.model("deepseek-v3-fp8"), to: dir + "/m.mal")
        let mal = try MalFile(path: dir + "/m.mal")
        let w = try #require(mal.entry("blk.0.attn_q_b.weight"))
        #expect(w.dtype == .f8e4m3 && w.flags & MalFormat.flagQuantized != 0)
        #expect(mal.entries[Int(w.link)].name == "blk.0.attn_q_b.scale_inv")
        #expect(mal.entries[Int(w.link)].shape == [2, 1])
    }

    @Test func metadataIsSelfDescribing() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        _ = try convert(Fixtures.model("llama3-tiny"), to: dir + "/m.mal")
        let mal = try MalFile(path: dir + "/m.mal")
        #expect(mal.spec == (try HFConfigReader.read(path: Fixtures.model("llama3-tiny") + "/config.json")))
        #expect(mal.metadata.provenance.sources.map(\.name) == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.model("llama3-tiny") + "/model-00001-of-00002.safetensors"))
        let h = data.withUnsafeBytes { hex16(xxh64($0)) }
        #expect(mal.metadata.provenance.sources[0].xxh64 == h)
        #expect(Set(mal.auxNames).isSuperset(of: ["config.json", "tokenizer.json", "tokenizer_config.json"]))
    }

    @Test func castToBF16() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        _ = try convert(Fixtures.model("deepseek-v3-tiny"), to: dir + "/m.mal", dtype: .bf16)
        let mal = try MalFile(path: dir + "/m.mal")
        #expect(mal.entry("blk.1.attn_q_b.weight")?.dtype == .bf16)
        // The routing bias keeps float32: rounding it would change expert choices.
        #expect(mal.entry("blk.1.exp_probs_b.bias")?.dtype == .f32)
        let src = try SafetensorsCheckpoint(path: Fixtures.model("deepseek-v3-tiny")).tensor(named: "model.layers.1.self_attn.q_b_proj.weight")
        let dst = try mal.tensor(named: "blk.1.attn_q_b.weight")
        let f = src.bytes.bindMemory(to: Float.self), b = dst.bytes.bindMemory(to: UInt16.self)
        for i in stride(from: 0, to: f.count, by: 97) {
            let back = Float(bitPattern: UInt32(b[i]) << 16)
            #expect(abs(back - f[i]) <= abs(f[i]) / 256, "element \(i)")
        }
        withExtendedLifetime((src, dst)) {}
        #expect(mal.spec.declaredDType == "bfloat16")
    }

    /// Ends a hand-built container with gpt2-tiny's spec and a stub provenance.
    static func finishWithMinimalMetadata(_ w: MalWriter) throws {
        try w.finish(
            metadata: MalMetadata(
                spec: try HFConfigReader.read(path: Fixtures.model("gpt2-tiny") + "/config.json"),
                hfNamePrefix: nil, quantization: nil,
                provenance: .init(converter: "t", converterVersion: "0", command: "t", options: [:], sources: [], droppedTensors: [])))
    }

    @Test func uncompressibleTensorsAreStoredRawAndAligned() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let w = try MalWriter(path: dir + "/r.mal")
        var rng = SystemRandomNumberGenerator()
        let noise = (0..<300_000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        try w.add(name: "noise", dtype: .u8, shape: [noise.count], source: .bytes(noise))
        let zeros = [UInt8](repeating: 0, count: 200_000)
        try w.add(name: "zeros", dtype: .f32, shape: [50_000], source: .bytes(zeros))
        try ContainerTests.finishWithMinimalMetadata(w)
        let mal = try MalFile(path: dir + "/r.mal")
        let n = try #require(mal.entry("noise"))
        #expect(n.codec == .raw && n.chunks[0].offset % 64 == 0)
        let t = try mal.tensor(named: "noise")
        #expect(t.storage.isZeroCopy && t.byteArray == noise)
        #expect(mal.entry("zeros")?.codec == .zstdBytePlanes)
        #expect(try mal.tensor(named: "zeros").byteArray == zeros)
    }

    /// FP8 E4M3 tensors get nibble planes (codec 4): every byte value, chunks of both parities,
    /// an odd last chunk, a one-byte tensor; decoded back byte for byte, and smaller than raw for
    /// weights whose exponents cluster as a quantiser's do.
    @Test func fp8TensorsRoundTripThroughNibblePlanes() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        var opts = MalWriter.Options()
        opts.chunkSize = 4096
        let w = try MalWriter(path: dir + "/n.mal", options: opts)
        var rng = SplitMix64(seed: 7)
        // exponents 4...9 mostly (as |w| / scale of a 128x128 block gives), random signs and mantissas
        let weights = (0..<10_001).map { i -> UInt8 in
            let r = rng.next()
            let e = i % 97 == 0 ? UInt64(i) % 16 : 4 + r % 6
            return UInt8(truncatingIfNeeded: (r >> 8) & 0x87 | e << 3)
        }
        let everyByte = (0...255).map { UInt8($0) }
        try w.add(name: "w", dtype: .f8e4m3, shape: [10_001], source: .bytes(weights))
        try w.add(name: "all", dtype: .f8e4m3, shape: [16, 16], source: .bytes(everyByte), codec: .zstdNibbles)
        try w.add(name: "one", dtype: .f8e4m3, shape: [1], source: .bytes([0xB9]), codec: .zstdNibbles)
        #expect(throws: MalError.self) { try w.add(name: "bf", dtype: .bf16, shape: [2], source: .bytes([0, 0, 0, 0]), codec: .zstdNibbles) }
        try ContainerTests.finishWithMinimalMetadata(w)
        let mal = try MalFile(path: dir + "/n.mal")
        let e = try #require(mal.entry("w"))
        #expect(e.codec == .zstdNibbles && e.chunks.count == 3)
        #expect(e.chunks.reduce(0) { $0 + Int($1.storedLength) } < weights.count * 9 / 10)
        #expect(try mal.tensor(named: "w", threads: 2).byteArray == weights)
        #expect(try mal.tensor(named: "all").byteArray == everyByte)
        #expect(try mal.tensor(named: "one").byteArray == [0xB9])
        #expect(mal.verifyAll(threads: 2) == nil)
    }

    @Test func multiChunkTensorsRoundTrip() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        var opts = MalWriter.Options()
        opts.chunkSize = 4096
        let w = try MalWriter(path: dir + "/c.mal", options: opts)
        let values = (0..<10_001).map { Float(sin(Double($0) * 0.01)) }
        let bytes = values.withUnsafeBytes { Array($0) }
        try w.add(name: "sine", dtype: .f32, shape: [10_001], source: .bytes(bytes))
        try ContainerTests.finishWithMinimalMetadata(w)
        let mal = try MalFile(path: dir + "/c.mal")
        #expect(mal.entry("sine")?.chunks.count == 10)
        #expect(try mal.tensor(named: "sine", threads: 2).byteArray == bytes)
    }
}

@Suite("Corrupt and hostile .mal files")
struct CorruptionTests {
    /// Every single-byte flip is caught: by `MalFile` at open (structure, header, metadata and
    /// table checksums, padding) or when the tensor is decoded (chunk checksums).
    @Test func randomByteFlipsAreAlwaysDetected() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        _ = try convert(Fixtures.model("deepseek-v3-fp8"), to: dir + "/m.mal")
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir + "/m.mal")))
        var rng = SystemRandomNumberGenerator()
        var positions = (0..<300).map { _ in Int.random(in: 0..<original.count, using: &rng) }
        positions += [0, 8, 20, 88, 95, 96, original.count - 1]
        for pos in positions {
            var bytes = original
            bytes[pos] ^= UInt8.random(in: 1...255, using: &rng)
            let path = dir + "/c.mal"
            _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
            do {
                let mal = try MalFile(path: path)
                let e = mal.verifyAll(threads: 1)
                #expect(e != nil, "flip at \(pos) not detected")
            } catch let e as MalError {
                #expect(e.file == path, "\(e)")
            }
        }
    }

    @Test func checkCommandNamesTensorAndChunk() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        _ = try convert(Fixtures.model("gpt2-tiny"), to: dir + "/m.mal")
        let mal = try MalFile(path: dir + "/m.mal")
        let e = try #require(mal.entry("blk.1.ffn_up.weight"))
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir + "/m.mal")))
        let pos = Int(e.chunks[0].offset) + Int(e.chunks[0].storedLength) / 2
        bytes[pos] ^= 0x40
        _ = FileManager.default.createFile(atPath: dir + "/bad.mal", contents: Data(bytes))
        let r = try runTool("malconv", ["check", dir + "/bad.mal", "--json"])
        #expect(r.status == 1)
        let doc = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        #expect(doc["ok"] as? Bool == false)
        #expect(doc["tensor"] as? String == "blk.1.ffn_up.weight")
        #expect((doc["error"] as? String ?? "").contains("chunk 0"))
        let good = try runTool("malconv", ["check", dir + "/m.mal"])
        #expect(good.status == 0 && good.stdout.contains("ok"))
    }

    @Test func truncationsAreRejected() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        _ = try convert(Fixtures.model("llama3-tiny"), to: dir + "/m.mal")
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir + "/m.mal")))
        for n in [0, 7, 95, 96, 1000, original.count / 2, original.count - 1] {
            _ = FileManager.default.createFile(atPath: dir + "/t.mal", contents: Data(original[0..<n]))
            #expect(throws: MalError.self, "truncated to \(n)") { try MalFile(path: dir + "/t.mal") }
        }
    }

    /// A file with a valid header checksum but a newer major version, or a table record with an
    /// unknown codec, is refused with a clear error.
    @Test func unknownVersionAndCodecAreRejected() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        _ = try convert(Fixtures.model("gpt2-tiny"), to: dir + "/m.mal")
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir + "/m.mal")))
        func rehashHeader() {
            let h = bytes.withUnsafeBytes { xxh64(UnsafeRawBufferPointer(rebasing: $0[0..<88])) }
            for i in 0..<8 { bytes[88 + i] = UInt8((h >> (8 * UInt64(i))) & 0xFF) }
        }
        var v2 = bytes
        v2[8] = 2
        swap(&bytes, &v2); rehashHeader(); swap(&bytes, &v2)
        FileManager.default.createFile(atPath: dir + "/v2.mal", contents: Data(v2))
        let e1 = try #require(throws: MalError.self) { try MalFile(path: dir + "/v2.mal") }
        #expect(e1.kind == .unsupportedVersion)

        // Codec byte of the first table record (table offset at header byte 40; record starts 8 bytes in).
        let tableOffset = bytes.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: 40, as: UInt64.self)) }
        bytes[tableOffset + 8 + 3] = 9
        let th = bytes.withUnsafeBytes { xxh64(UnsafeRawBufferPointer(rebasing: $0[tableOffset...])) }
        for i in 0..<8 { bytes[64 + i] = UInt8((th >> (8 * UInt64(i))) & 0xFF) }
        rehashHeader()
        FileManager.default.createFile(atPath: dir + "/codec.mal", contents: Data(bytes))
        let e2 = try #require(throws: MalError.self) { try MalFile(path: dir + "/codec.mal") }
        #expect(e2.kind == .unsupported && e2.description.contains("codec"))
    }

    /// Checksums prove integrity, not sense: a file whose metadata spec has zero heads is refused
    /// at open (naming the metadata offset), so the runtime never divides by it.
    @Test func nonsensicalSpecIsRejected() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let hf = try HFModel(path: Fixtures.model("gpt2-tiny"))
        let edited = EditedSpecModel(try HFCanonicalModel(model: hf)) { $0.heads = 0 }
        _ = try ContainerExport.write(edited, to: dir + "/m.mal", options: MalWriter.Options(), command: "test", optionValues: [:])
        let e = try #require(throws: MalError.self) { _ = try MalFile(path: dir + "/m.mal") }
        #expect(e.description.contains("metadata spec: heads must be at least 1") && e.offset != nil, "\(e)")
        let r = try runTool("malrun", [dir + "/m.mal", "-p", "hi", "-n", "1"])
        #expect(r.status == 1 && r.stderr.contains("heads must be at least 1"))
    }

    /// A sensible spec that disagrees with the tensors (FFN width, vocabulary, layer count) is
    /// refused by the runtime with the tensor and both shapes, never read out of bounds.
    @Test(
        "spec and tensor shapes that disagree",
        arguments: [
            ("ffn", "blk.0.ffn_gate.weight': has shape [176, 64], but the model's spec implies [88, 64]"),
            ("vocab", "token_embd.weight': has shape [2016, 64], but the model's spec implies [2023, 64]"),
            ("layers", "the model has no tensor 'blk.2.attn_q.weight'"),
            ("heads", "rope dimensions 16 exceed the rotated head width 8"),
        ])
    func specDisagreesWithTensors(edit: String, message: String) throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let hf = try HFModel(path: Fixtures.model("llama3-tiny"))
        let edited = EditedSpecModel(try HFCanonicalModel(model: hf)) { s in
            switch edit {
            case "ffn": s.intermediateSize /= 2
            case "vocab": s.vocabSize += 7
            case "layers": s.layers += 1
            default: s.heads *= 2; s.kvHeads *= 2; s.headDim /= 2
            }
        }
        _ = try ContainerExport.write(edited, to: dir + "/m.mal", options: MalWriter.Options(), command: "test", optionValues: [:])
        let r = try runTool("malrun", [dir + "/m.mal", "-p", "hi", "-n", "1"])
        #expect(r.status == 1 && r.stderr.contains("m.mal") && r.stderr.contains(message), "\(edit): \(r.status) \(r.stderr)")
    }

    /// A vector stored under a matrix's name (found by a fuzzer: `export` trapped on it): export
    /// and the runtime name the file and the tensor, and leave nothing behind.
    @Test func tensorUnderTheWrongName() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let base = try HFCanonicalModel(model: try HFModel(path: Fixtures.model("gpt2-tiny")))
        var replace = MalWriter.Options()
        replace.replaceExisting = true
        for (a, b) in [("blk.1.ffn_up.weight", "blk.1.ffn_norm.weight"), ("blk.0.attn_q.weight", "blk.0.attn_q.bias")] {
            _ = try ContainerExport.write(
                SwappedNamesModel(base, a, b), to: dir + "/m.mal", options: replace, command: "test",
                optionValues: [:])
            let r = try runTool("malconv", ["export", dir + "/m.mal", "-o", dir + "/out"])
            #expect(r.status == 1 && r.stderr.contains("m.mal") && r.stderr.contains("must have rank"), "\(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/out"))
            let g = try runTool("malrun", [dir + "/m.mal", "-p", "hi", "-n", "1"])
            #expect(g.status == 1 && g.stderr.contains("m.mal") && g.stderr.contains("has shape"), "\(g.stderr)")
        }
    }

    /// Every `--json` prints exactly one JSON document on stdout (`quantize --json` printed the
    /// text summary first, then the JSON).
    @Test func jsonFlagsPrintOneDocument() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let gpt2 = Fixtures.model("gpt2-tiny"), ds = Fixtures.model("deepseek-v3-tiny")
        let runs: [(String, [String])] = [
            ("malconv", ["inspect", gpt2, "--json"]),
            ("malconv", ["convert", gpt2, "-o", dir + "/g.mal", "--json"]),
            ("malconv", ["quantize", dir + "/g.mal", "-o", dir + "/q.mal", "--json"]),
            ("malconv", ["dequantize", dir + "/q.mal", "-o", dir + "/d.mal", "--json"]),
            ("malconv", ["check", dir + "/g.mal", "--json"]),
            ("malconv", ["export", dir + "/g.mal", "-o", dir + "/e", "--json"]),
            ("malconv", ["verify", dir + "/g.mal", dir + "/q.mal", "--json"]),
            ("malconv", ["absorb-mla", ds, "-o", dir + "/a.mal", "--json"]),
            ("malrun", ["info", dir + "/a.mal", "--json"]),
            ("malrun", ["bench", dir + "/g.mal", "-p", "4", "-n", "2", "--repetitions", "1", "--json"]),
        ]
        for (tool, args) in runs {
            let r = try runTool(tool, args)
            let doc = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))
            #expect(r.status == 0 && doc != nil, "\(tool) \(args.joined(separator: " ")): \(r.status) \(r.stdout.prefix(200)) \(r.stderr)")
        }
        let q = try #require(
            try JSONSerialization.jsonObject(with: Data(try runTool("malconv", ["quantize", dir + "/g.mal", "-o", dir + "/q2.mal", "--json"]).stdout.utf8))
                as? [String: Any])
        #expect((q["decisions"] as? [Any])?.isEmpty == false && q["output"] as? String == dir + "/q2.mal")
    }

    @Test func notAMalFile() throws {
        let e = try #require(throws: MalError.self) { try MalFile(path: Fixtures.model("gpt2-tiny") + "/model.safetensors") }
        #expect(e.kind == .badMagic)
    }
}

@Suite("malconv convert / export / check commands")
struct ConvertCommandTests {
    @Test func convertRefusesToOverwriteItsInput() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        try FileManager.default.copyItem(atPath: Fixtures.model("gpt2-tiny"), toPath: dir + "/m")
        let before = try Data(contentsOf: URL(fileURLWithPath: dir + "/m/model.safetensors"))
        let r = try runTool("malconv", ["convert", dir + "/m/model.safetensors", "-o", dir + "/m/model.safetensors", "--to", "mal"])
        #expect(r.status != 0 && r.stderr.contains("refusing"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/m/model.safetensors")) == before)
        let r2 = try runTool("malconv", ["convert", dir + "/m", "-o", dir + "/m", "--force"])
        #expect(r2.status != 0)
        // A folder that contains the input is not replaced either.
        let r3 = try runTool("malconv", ["convert", dir + "/m", "-o", dir, "--force"])
        #expect(r3.status != 0 && r3.stderr.contains("refusing"))
        // Replacing an existing output folder with --force works and leaves nothing aside.
        #expect(try runTool("malconv", ["convert", dir + "/m", "-o", dir + "/out"]).status == 0)
        #expect(try runTool("malconv", ["convert", dir + "/m", "-o", dir + "/out", "--force"]).status == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["m", "out"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/m/model.safetensors")) == before)
    }

    @Test func failedConversionLeavesNothing() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        // A config that does not match the weights: conversion must stop before writing anything.
        try FileManager.default.copyItem(atPath: Fixtures.model("gpt2-tiny"), toPath: dir + "/m")
        var cfg = try String(contentsOfFile: dir + "/m/config.json", encoding: .utf8)
        cfg = cfg.replacingOccurrences(of: "\"n_embd\": 64", with: "\"n_embd\": 32")
        try cfg.write(toFile: dir + "/m/config.json", atomically: true, encoding: .utf8)
        let r = try runTool("malconv", ["convert", dir + "/m", "-o", dir + "/out.mal"])
        #expect(r.status == 1 && r.stderr.contains("mis-shaped"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["m"])
    }

    /// Out-of-range or contradictory flags stop before any work (exit 64, the flag named).
    @Test func badFlagsAreRefused() throws {
        let m = Fixtures.model("gpt2-tiny")
        for (args, flag) in [
            (["check", m, "--threads", "0"], "--threads"), (["dequantize", m, "-o", "/tmp/x.mal", "--threads", "0"], "--threads"),
            (["verify", m, m, "--threads", "0"], "--threads"), (["verify", m, m, "--min-top1", "0.9"], "--text or --prompts"),
            (["verify", m, m, "--text", "a", "--prompts", "b"], "at most one"), (["convert", m, "-o", "/tmp/x.mal", "--level", "99"], "--level"),
            (["verify", m, m, "--text", "a", "--window", "1"], "--window"),
        ] {
            let r = try runTool("malconv", args)
            #expect(r.status == 64 && r.stderr.contains(flag), "\(args): \(r.status) \(r.stderr)")
        }
    }

    /// Overwrites `bytes` at element `index` of an HF tensor in a copied checkpoint.
    func poke(_ folder: String, tensor: String, element index: Int, bytes: [UInt8]) throws -> TensorInfo {
        let info = try #require(try SafetensorsCheckpoint(path: folder).tensors.first { $0.name == tensor })
        var data = try Data(contentsOf: URL(fileURLWithPath: info.file))
        data.replaceSubrange((info.fileOffset + index * bytes.count)..<(info.fileOffset + (index + 1) * bytes.count), with: bytes)
        try data.write(to: URL(fileURLWithPath: info.file), options: .atomic)
        return info
    }

    /// A NaN in the checkpoint stops convert with the HF tensor, its file and the element's byte
    /// offset (here inside GPT-2's fused, transposed c_attn, so the canonical position differs), and
    /// nothing is written; --allow-nonfinite carries it over, and malrun then refuses the NaN logits.
    /// A cast that overflows (BF16 99840 → F16) stops it too.
    @Test func nonFiniteValuesStopConvert() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        try FileManager.default.copyItem(atPath: Fixtures.model("gpt2-tiny"), toPath: dir + "/m")
        let name = try #require(try SafetensorsCheckpoint(path: dir + "/m").tensors.first { $0.name.hasSuffix("h.0.attn.c_attn.weight") }).name
        // Row 5, column 64 + 7 of c_attn [64, 192]: the K part, canonical blk.0.attn_k.weight[7][5].
        let info = try poke(dir + "/m", tensor: name, element: 5 * 192 + 71, bytes: [0, 0, 0xC0, 0x7F])
        let r = try runTool("malconv", ["convert", dir + "/m", "-o", dir + "/out.mal"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("NaN in the checkpoint at row 7, column 5 of blk.0.attn_k.weight"), "\(r.stderr)")
        #expect(r.stderr.contains("at byte \(info.fileOffset + (5 * 192 + 71) * 4)") && r.stderr.contains(name) && r.stderr.contains("model.safetensors"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["m"])
        let ok = try runTool("malconv", ["convert", dir + "/m", "-o", dir + "/out.mal", "--allow-nonfinite"])
        #expect(ok.status == 0, "\(ok.stderr)")
        let run = try runTool("malrun", [dir + "/out.mal", "-p", "hello", "-n", "2"])
        #expect(run.status == 1 && run.stderr.contains("non-finite logit"), "\(run.stderr)")

        try FileManager.default.copyItem(atPath: Fixtures.model("llama3-tiny"), toPath: dir + "/l")
        _ = try poke(dir + "/l", tensor: "model.layers.1.mlp.down_proj.weight", element: 3, bytes: [0xC3, 0x47])
        let f16 = try runTool("malconv", ["convert", dir + "/l", "-o", dir + "/l16.mal", "--dtype", "f16"])
        #expect(f16.status == 1 && f16.stderr.contains("99840.0 overflows F16 in the cast at row 0, column 3 of blk.1.ffn_down.weight"), "\(f16.stderr)")
        #expect(try runTool("malconv", ["convert", dir + "/l", "-o", dir + "/l16.mal"]).status == 0)  // BF16 holds it
    }

    @Test func interruptedConversionLeavesNothing() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("malconv")
        // The 13 MB DeepSeek sample at zstd level 19 on one thread takes long enough to interrupt.
        var interrupted = 0
        for delay in [150_000, 300_000, 600_000] as [UInt32] {
            let p = Process()
            p.executableURL = exe
            p.arguments = [
                "convert", Fixtures.samples + "/deepseek-v3-fortunes", "-o", dir + "/out.mal",
                "--level", "19", "--threads", "1",
            ]
            try p.run()
            usleep(delay)
            p.interrupt()
            p.waitUntilExit()
            if p.terminationStatus == 130 { interrupted += 1 }
            let left = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains(".tmp-") }
            #expect(left.isEmpty, "left behind: \(left)")
            if p.terminationStatus == 130 { #expect(!FileManager.default.fileExists(atPath: dir + "/out.mal")) }
            try? FileManager.default.removeItem(atPath: dir + "/out.mal")
        }
        #expect(interrupted > 0, "no run was interrupted mid-way")
    }

    @Test func convertAndExportCommandsRoundTrip() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let c = try runTool("malconv", ["convert", Fixtures.model("llama3-tiny"), "-o", dir + "/m.mal", "--json"])
        #expect(c.status == 0, "\(c.stderr)")
        let doc = try JSONSerialization.jsonObject(with: Data(c.stdout.utf8)) as! [String: Any]
        #expect((doc["file_bytes"] as? Int ?? 0) > 0)
        let e = try runTool("malconv", ["export", dir + "/m.mal", "-o", dir + "/hf"])
        #expect(e.status == 0, "\(e.stderr)")
        #expect(try tensorDigests(dir + "/hf") == tensorDigests(Fixtures.model("llama3-tiny")))
        // An existing non-empty output folder is not replaced without --force.
        let again = try runTool("malconv", ["export", dir + "/m.mal", "-o", dir + "/hf"])
        #expect(again.status == 1 && again.stderr.contains("--force"))
        // HF folder → HF folder with a cast.
        let h = try runTool("malconv", ["convert", Fixtures.model("gpt2-tiny"), "-o", dir + "/g16", "--dtype", "f16"])
        #expect(h.status == 0, "\(h.stderr)")
        let m = try HFModel(path: dir + "/g16")
        #expect(m.tensors.allSatisfy { $0.dtype == .f16 } && m.inventory().isClean)
        #expect(m.spec.declaredDType == "float16")
    }
}
