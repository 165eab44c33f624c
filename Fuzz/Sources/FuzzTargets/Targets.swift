import Foundation
import MalCore
import MalReaders
import MalRuntime

/// The fuzz targets: each runs one untrusted input through the same calls a command makes. A thrown
/// `MalError` is the expected answer to a bad input; a trap, a sanitizer report, a leak or a hang is
/// a bug. Tensor data is touched (summed) so an out-of-bounds view would fault.
public enum FuzzTargets {
    /// A safetensors file: header scanner, validation, every tensor view read end to end.
    public static func safetensors(_ input: UnsafeRawBufferPointer) {
        let path = Scratch.write("model.safetensors", input)
        guard let f = try? SafetensorsFile(path: path) else { return }
        for info in f.tensors { consume(f.tensor(info).bytes) }
    }

    static let shards: Void = {
        let one = Scratch.safetensors([("a", 3), ("b", 2)]), two = Scratch.safetensors([("c", 5)])
        _ = one.withUnsafeBytes { Scratch.write("model-00001-of-00002.safetensors", $0) }
        _ = two.withUnsafeBytes { Scratch.write("model-00002-of-00002.safetensors", $0) }
    }()

    /// `model.safetensors.index.json` over two fixed shards (names `a`, `b` | `c`).
    public static func index(_ input: UnsafeRawBufferPointer) {
        _ = shards
        let path = Scratch.write(SafetensorsCheckpoint.indexName, input)
        guard let c = try? SafetensorsCheckpoint(indexPath: path) else { return }
        for info in c.tensors { if let t = try? c.tensor(info) { consume(t.bytes) } }
    }

    /// `config.json` (either key style): the typed spec, then what `inspect` derives from it.
    public static func config(_ input: UnsafeRawBufferPointer) {
        let path = Scratch.write("config.json", input)
        guard let spec = try? HFConfigReader.read(path: path) else { return }
        _ = spec.firstProblem
        _ = TensorInventory.check(spec: spec, tensors: [])
    }

    static let tokenizerJSONFolder = Scratch.folder + "/tok-json"
    static let tokenizerConfigFolder = Scratch.folder + "/tok-config"

    /// `tokenizer.json` beside a fixed valid `tokenizer_config.json`: parse, build, encode, decode.
    public static func tokenizerJSON(_ input: UnsafeRawBufferPointer) {
        try? FileManager.default.createDirectory(atPath: tokenizerJSONFolder, withIntermediateDirectories: true)
        _ = Scratch.write("tok-json/tokenizer_config.json", SeedTokenizer.config)
        _ = Scratch.write("tok-json/tokenizer.json", input)
        exercise(folder: tokenizerJSONFolder)
    }

    /// `tokenizer_config.json` beside a fixed valid `tokenizer.json`.
    public static func tokenizerConfig(_ input: UnsafeRawBufferPointer) {
        try? FileManager.default.createDirectory(atPath: tokenizerConfigFolder, withIntermediateDirectories: true)
        _ = Scratch.write("tok-config/tokenizer.json", SeedTokenizer.json)
        _ = Scratch.write("tok-config/tokenizer_config.json", input)
        exercise(folder: tokenizerConfigFolder)
    }

    static func exercise(folder: String) {
        guard let tok = try? TokenizerLoader.load(folder) else { return }
        let ids = tok.encode(SeedTokenizer.text, addSpecial: true)
        _ = tok.decode(ids)
        _ = tok.decode([0, 1, 2, Int32.max, -1])
    }

    /// Tensors larger than this are not decoded by the `.mal` target (chunks still are, by
    /// `verifyAll`): a claimed multi-GiB tensor is the decompression-bomb case, answered by the
    /// failable allocation that its own regression tests cover, and libFuzzer would stop at the
    /// allocation instead of fuzzing on.
    static let maxDecodedTensor = 16 << 20

    /// A `.mal` container: structure, metadata, table and layout at open; every chunk decoded and
    /// checked (`malconv check`); each small tensor read; the tokenizer aux file decoded and run.
    public static func mal(_ input: UnsafeRawBufferPointer) {
        let path = Scratch.write("model.mal", input)
        guard let m = try? MalFile(path: path) else { return }
        guard m.verifyAll(threads: 1) == nil else { return }
        for i in m.entries.indices where m.entries[i].rawLength <= UInt64(maxDecodedTensor) {
            if let t = try? m.tensor(at: i, threads: 1) { consume(t.bytes) }
        }
        if let tok = try? TokenizerLoader.load(path) { _ = tok.decode(tok.encode(SeedTokenizer.text, addSpecial: true)) }
    }

    @inline(never) static func consume(_ b: UnsafeRawBufferPointer) {
        var s: UInt8 = 0
        for x in b { s &+= x }
        blackHole = s
    }
    nonisolated(unsafe) static var blackHole: UInt8 = 0
}
