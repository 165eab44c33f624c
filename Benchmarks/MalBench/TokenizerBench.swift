import Foundation
import MalArchitectures
import MalCore
import MalReaders
import MalRuntime
import MalWriters

/// Single-thread encode throughput on a text file, and tokenizer load times (JSON vs `.mal`).
enum TokenizerBench {
    static func run(text path: String, folder: String) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let bytes = text.utf8.count
        var t0 = Date()
        let tok = try TokenizerLoader.load(folder)
        let jsonLoad = Date().timeIntervalSince(t0)
        let (best, ids) = try bestEncode(tok, text, threads: 1)
        print(String(format: "malrun encode (1 thread): %.2f MB/s, %d tokens", Double(bytes) / best / 1e6, ids.count))
        let (bestN, idsN) = try bestEncode(tok, text, threads: availableCores)
        print(
            String(
                format: "malrun encode (%d threads): %.2f MB/s, same ids as 1 thread: %@", availableCores, Double(bytes) / bestN / 1e6,
                idsN == ids ? "true" : "false"))
        if let ref = try? Data(contentsOf: URL(fileURLWithPath: path + ".ids.json")),
            let refIds = try JSONSerialization.jsonObject(with: ref) as? [Int]
        {
            print("same ids as HF tokenizers: \(refIds.map(Int32.init) == ids)")
        }
        // The vocabulary stored in a .mal (aux/tokenizer.bin), loaded as malrun does.
        let dir = NSTemporaryDirectory() + "malbench-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeTokenizerContainer(tok, to: dir + "/tok.mal")
        if ProcessInfo.processInfo.environment["MALBENCH_LOAD_ONLY"] != nil {
            // Profiling aid: load from the .mal in a loop.
            var times: [Double] = []
            for _ in 0..<50 {
                let t = Date()
                _ = try TokenizerLoader.load(dir + "/tok.mal")
                times.append(Date().timeIntervalSince(t))
            }
            times.sort()
            print(String(format: "50 loads from .mal: min %.1f ms, median %.1f ms", times[0] * 1e3, times[25] * 1e3))
            return
        }
        var malLoad = Double.infinity, jsonBest = jsonLoad
        for _ in 0..<5 {
            t0 = Date()
            _ = try TokenizerLoader.load(dir + "/tok.mal")
            malLoad = min(malLoad, Date().timeIntervalSince(t0))
            t0 = Date()
            _ = try TokenizerLoader.load(folder)
            jsonBest = min(jsonBest, Date().timeIntervalSince(t0))
        }
        print(String(format: "load %d-token vocabulary: from .mal %.1f ms, from tokenizer.json %.1f ms", tok.vocabularySize, malLoad * 1e3, jsonBest * 1e3))
    }

    /// A container holding only the tokenizer (`aux/tokenizer.bin`) and the smallest spec a
    /// registered architecture accepts.
    static func writeTokenizerContainer(_ tok: Tokenizer, to path: String) throws {
        let blob = try TokenizerBinary.encode(tok.model)
        let w = try MalWriter(path: path)
        try w.add(name: "aux/tokenizer.bin", dtype: .u8, shape: [blob.count], source: .bytes(blob), codec: .zstd)
        let spec = ModelSpec(
            modelType: ArchitectureRegistry.modelTypes[0], vocabSize: tok.vocabularySize, hiddenSize: 1, layers: 1,
            heads: 1, kvHeads: 1, headDim: 1, intermediateSize: 1, maxPositions: 1, norm: .layerNorm, normEps: 1e-5,
            activation: "gelu_new", positions: .learned, rope: nil, tiedEmbeddings: true, attentionBias: true,
            mlpBias: true, bosTokenId: nil, eosTokenIds: [], declaredDType: nil, mla: nil, moe: nil, mtpLayers: 0,
            quantization: nil)
        try w.finish(
            metadata: MalMetadata(
                spec: spec, hfNamePrefix: nil, quantization: nil,
                provenance: .init(
                    converter: "malbench", converterVersion: malconvVersion, command: "bench",
                    options: [:], sources: [], droppedTensors: [])))
    }

    /// The fastest of three encodes, each with a fresh tokenizer (no word cache carried over).
    static func bestEncode(_ tok: Tokenizer, _ text: String, threads: Int) throws -> (seconds: Double, ids: [Int32]) {
        var best = Double.infinity, ids: [Int32] = []
        for _ in 0..<3 {
            let fresh = try Tokenizer(model: tok.model)
            let t0 = Date()
            ids = fresh.encode(text, threads: threads)
            best = min(best, Date().timeIntervalSince(t0))
        }
        return (best, ids)
    }

    /// The ids of every text in a JSON list (no special tokens added), written as a JSON list of
    /// lists: `Benchmarks/tokenizer_real.py` compares them with HF tokenizers'.
    static func cases(folder: String, cases path: String, output: String) throws {
        let tok = try TokenizerLoader.load(folder)
        let m = try MappedFile(path: path)
        let texts = try withExtendedLifetime(m) { try JSONValue.parse(m.bytes, file: path) }.arrayValue ?? []
        var out = "["
        for (k, t) in texts.enumerated() {
            if k > 0 { out += ",\n" }
            out += "[" + tok.encode(t.stringValue ?? "").map(String.init).joined(separator: ",") + "]"
        }
        try (out + "]\n").write(toFile: output, atomically: true, encoding: .utf8)
    }
}
