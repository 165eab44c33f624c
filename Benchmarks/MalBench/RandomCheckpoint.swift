import Foundation
import MalArchitectures
import MalCore
import MalReaders
import MalWriters

/// Random-weight HF checkpoints at the shape of a real config, for measurements at real scale
/// (`Benchmarks/bench_scale.sh`): the tensors are the ones the config's architecture expects
/// (`HFTensorLayout`, so every registered architecture works), BF16 unless the config says
/// float32, sharded as the Hub shards (5 GB), never committed. Weights are uniform with standard
/// deviation 0.02, norm weights 1, biases 0; seeded per tensor, so a rerun writes the same bytes.
/// `--fp8` writes DeepSeek's release layout instead: every decoder projection (`*_proj.weight`
/// inside the layers) in F8_E4M3 with its `weight_scale_inv` grid of 128 x 128 blocks, the rest
/// BF16; `--set KEY=N` overrides an integer field (for example `first_k_dense_replace=1` or
/// `num_nextn_predict_layers=0` for a cut of DeepSeek-V3 that keeps every real dimension).
///
///     malbench random-checkpoint CONFIG.json OUT [--layers N] [--shard-mb 5000] [--fp8] [--set KEY=N ...]
enum RandomCheckpoint {
    static func write(
        config path: String, to out: String, layers: Int?, shardBytes: Int, fp8: Bool = false, overrides: [(String, Int64)] = []
    ) throws {
        let json = try editedConfig(path, layers: layers, fp8: fp8, overrides: overrides)
        let spec = try HFConfigReader.parse(json, file: path)
        let dtype: DType = spec.declaredDType == "float32" ? .f32 : .bf16
        let tensors = HFTensorLayout.expected(spec, tensorNames: []).filter { !$0.optional }.flatMap { t -> [ExpectedTensor] in
            guard fp8 && isReleaseFP8(t) else { return [t] }
            return [t, ExpectedTensor(name: t.name + "_scale_inv", shape: t.shape.map { ($0 + 127) / 128 })]
        }
        func stored(_ t: ExpectedTensor) -> DType {
            fp8 && t.name.hasSuffix("_scale_inv") ? .f32 : fp8 && isReleaseFP8(t) ? .f8e4m3 : dtype
        }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        var shards: [[ExpectedTensor]] = [[]]
        var size = 0
        for t in tensors {
            let n = (elementCount(t.shape) ?? 0) * (stored(t).byteSize ?? 2)
            if size > 0 && size + n > shardBytes { shards.append([]); size = 0 }
            shards[shards.count - 1].append(t)
            size += n
        }
        let names =
            shards.count == 1
            ? ["model.safetensors"]
            : (1...shards.count).map { String(format: "model-%05d-of-%05d.safetensors", $0, shards.count) }
        var seed: UInt64 = 1
        var map: [(String, JSONValue)] = []
        for (shard, name) in zip(shards, names) {
            let f = try OutputFile(path: joinPath(out, name), replace: true)
            try f.write(safetensorsHeader(shard.map { ($0.name, stored($0), $0.shape, (elementCount($0.shape) ?? 0) * (stored($0).byteSize ?? 2)) }))
            for t in shard {
                try writeValues(t, dtype: stored(t), seed: seed, to: f)
                seed += 1
                map.append((t.name, .string(name)))
            }
            try f.commit()
            printError("wrote \(name) (\(shard.count) tensors)")
        }
        if shards.count > 1 {
            let total = tensors.reduce(0) { $0 + (elementCount($1.shape) ?? 0) * (stored($1).byteSize ?? 2) }
            let index = JSONValue.object([
                ("metadata", .object([("total_size", .int(Int64(total)))])),
                ("weight_map", .object(map.sorted { $0.0 < $1.0 })),
            ])
            try index.prettySerialized.write(toFile: joinPath(out, HFFileNames.shardIndex), atomically: true, encoding: .utf8)
        }
        try json.prettySerialized.write(toFile: joinPath(out, "config.json"), atomically: true, encoding: .utf8)
        print(
            "\(out): \(tensors.count) tensors, \(HFTensorLayout.parameterCount(spec)) parameters, \(shards.count) shard(s), "
                + (fp8 ? "F8_E4M3 projections, \(dtype.rawValue) otherwise" : dtype.rawValue))
    }

    /// The config with `quantization_config` as the weights will be (BF16: none; `fp8`: DeepSeek's)
    /// and the layer count and `overrides` applied.
    static func editedConfig(_ path: String, layers: Int?, fp8: Bool, overrides: [(String, Int64)]) throws -> JSONValue {
        let json = try JSONValue.parse(try String(contentsOfFile: path, encoding: .utf8), file: path)
        guard var pairs = json.objectPairs else { throw MalError(.invalidField, "not a JSON object", file: path) }
        // A checkpoint of BF16 weights has no FP8 quantization_config; `malconv quantize` writes one.
        pairs.removeAll { $0.0 == "quantization_config" }
        if fp8 {
            pairs.append(
                (
                    "quantization_config",
                    .object([
                        ("activation_scheme", .string("dynamic")), ("fmt", .string("e4m3")), ("quant_method", .string("fp8")),
                        ("weight_block_size", .array([.int(128), .int(128)])),
                    ])
                ))
        }
        var set = overrides
        if let layers { set += ["num_hidden_layers", "n_layer"].filter { k in pairs.contains { $0.0 == k } }.map { ($0, Int64(layers)) } }
        for (key, value) in set {
            pairs.removeAll { $0.0 == key }
            pairs.append((key, .int(value)))
        }
        return .object(pairs)
    }

    /// The tensors DeepSeek's FP8 release stores in E4M3: the projections of the decoder layers
    /// (attention, dense and expert feed-forward, MTP's eh_proj), not the embedding, head, norms or router.
    static func isReleaseFP8(_ t: ExpectedTensor) -> Bool {
        t.shape.count == 2 && t.name.contains(".layers.") && t.name.hasSuffix("_proj.weight")
    }

    /// Uniform weights of standard deviation 0.02 as E4M3 codes under a block scale of a / 448 (the
    /// codes span the format's range); a scale grid holds that scale.
    static let fp8Scale: Float = 0.034641 / 448

    /// One tensor's values, a 1 Mi-element chunk at a time.
    static func writeValues(_ t: ExpectedTensor, dtype: DType, seed: UInt64, to f: OutputFile) throws {
        let count = elementCount(t.shape) ?? 0
        let constant: Float? =
            t.name.hasSuffix("_scale_inv")
            ? fp8Scale : t.name.hasSuffix(".bias") ? 0 : (t.name.contains("norm") || t.name.contains("ln_")) ? 1 : nil
        var rng = SplitMix64(seed: seed)
        let chunk = 1 << 20
        var values = [Float](repeating: 0, count: chunk)
        var done = 0
        while done < count {
            let n = min(chunk, count - done)
            for i in 0..<n {
                // Uniform on [-a, a] with a = 0.02·√3: standard deviation 0.02.
                values[i] = constant ?? (Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1) * 0.034641
            }
            if dtype == .f8e4m3 {
                try FP8.encodeE4M3(values[0..<n].map { $0 / fp8Scale }).withUnsafeBytes { try f.write($0) }
            } else if dtype == .f32 {
                try values.withUnsafeBytes { try f.write(UnsafeRawBufferPointer(rebasing: $0[0..<(n * 4)])) }
            } else {
                let b = HalfFloat.encodeBF16(Array(values[0..<n]))
                try b.withUnsafeBytes { try f.write($0) }
            }
            done += n
        }
    }
}
