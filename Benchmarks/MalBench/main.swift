// malbench: throughput of the hot loops against a plain memory copy of the same bytes.
// Usage: malbench [fp8] [--rows N] [--cols N] [--reps N]
//        malbench tokenizer TEXT TOKENIZER_DIR [--reps N]
//        malbench tokenize-cases TOKENIZER_DIR CASES.json OUT.json   (a JSON list of texts → their ids)
//        malbench read BYTES [--threads T] [--reps N]   (plain-read GB/s of BYTES of huge-page memory)
//        malbench sampler
//        malbench random-checkpoint CONFIG.json OUT [--layers N] [--shard-mb 5000] [--fp8] [--set KEY=N ...]
import Foundation
import MalCore
import MalReaders
import MalRuntime
import MalTransforms
import MalWriters

if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == "matvec" {
    ParallelProbe.run()
    try MatvecBench.run()
    exit(0)
}
if CommandLine.arguments.count > 2 && CommandLine.arguments[1] == "read" {
    ReadBench.run(bytes: Int(CommandLine.arguments[2]) ?? 0)
    exit(0)
}
if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == "sampler" {
    SamplerBench.run()
    exit(0)
}
if CommandLine.arguments.count > 4 && CommandLine.arguments[1] == "tokenize-cases" {
    try TokenizerBench.cases(folder: CommandLine.arguments[2], cases: CommandLine.arguments[3], output: CommandLine.arguments[4])
    exit(0)
}
if CommandLine.arguments.count > 3 && CommandLine.arguments[1] == "random-checkpoint" {
    let a = CommandLine.arguments
    func value(_ flag: String) -> Int? { a.firstIndex(of: flag).flatMap { $0 + 1 < a.count ? Int(a[$0 + 1]) : nil } }
    let overrides = a.indices.filter { a[$0] == "--set" && $0 + 1 < a.count }.compactMap { i -> (String, Int64)? in
        let kv = a[i + 1].split(separator: "=", maxSplits: 1)
        return kv.count == 2 ? Int64(kv[1]).map { (String(kv[0]), $0) } : nil
    }
    try RandomCheckpoint.write(
        config: a[2], to: a[3], layers: value("--layers"), shardBytes: (value("--shard-mb") ?? 5000) * 1_000_000, fp8: a.contains("--fp8"),
        overrides: overrides)
    exit(0)
}
if CommandLine.arguments.count > 3 && CommandLine.arguments[1] == "tokenizer" {
    try TokenizerBench.run(text: CommandLine.arguments[2], folder: CommandLine.arguments[3])
    exit(0)
}

func arg(_ name: String, _ def: Int) -> Int {
    if let i = CommandLine.arguments.firstIndex(of: name), i + 1 < CommandLine.arguments.count, let v = Int(CommandLine.arguments[i + 1]) { return v }
    return def
}

let rows = arg("--rows", 8192), cols = arg("--cols", 8192), reps = arg("--reps", 5)
let n = rows * cols

/// Best-of-`reps` seconds of `body`.
func best(_ body: () throws -> Void) rethrows -> Double {
    var b = Double.infinity
    for _ in 0..<reps {
        let t = Date()
        try body()
        b = min(b, Date().timeIntervalSince(t))
    }
    return b
}

func gbs(_ bytes: Int, _ s: Double) -> String { String(format: "%.2f GB/s", Double(bytes) / s / 1e9) }

// Heavy-tailed weights (Student-t-like via a ratio of normals), as F32 and BF16.
var g = SystemRandomNumberGenerator()
var f32 = [Float](repeating: 0, count: n)
for i in 0..<n { f32[i] = Float.random(in: -1...1, using: &g) * Float.random(in: 0.001...0.05, using: &g) }
let bf16 = HalfFloat.encodeBF16(f32)
print("# malbench fp8: \(rows)x\(cols) weights, best of \(reps); load \((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.prefix(14) ?? "?")")

for threads in [1, 2] {
    for (name, dtype, bytes) in [("F32", DType.f32, f32.withUnsafeBytes { Array($0) }), ("BF16", DType.bf16, bf16.withUnsafeBytes { Array($0) })] {
        let t = bytes.withUnsafeBytes { Tensor(name: "w", dtype: dtype, shape: [rows, cols], storage: TensorStorage(copying: $0)) }
        // Copy of the same bytes, split across the same threads.
        let dst = try TensorStorage.allocate(count: bytes.count)
        let d = SharedPointer(UnsafeMutableRawPointer(mutating: dst.bytes.baseAddress!)), s = SharedPointer(t.bytes)
        let part = (bytes.count + threads - 1) / threads
        let copy = try best {
            try parallelFor(threads, threads: threads) { k in
                let lo = k * part, hi = min(bytes.count, lo + part)
                if hi > lo { d.pointer.advanced(by: lo).copyMemory(from: s.pointer.baseAddress! + lo, byteCount: hi - lo) }
            }
        }
        var q: (q: TensorStorage, scales: TensorStorage, scaleShape: [Int])!
        let quant = try best { q = try BlockQuantizer.quantize(t, block: .deepseek, scale: .f32, threads: threads) }
        let qt = Tensor(name: "q", dtype: .f8e4m3, shape: [rows, cols], storage: q.q)
        let st = Tensor(name: "s", dtype: .f32, shape: q.scaleShape, storage: q.scales)
        let deq = try best { _ = try BlockQuantizer.dequantize(q: qt, scales: st, block: .deepseek, threads: threads) }
        print(
            "threads \(threads) \(name): copy \(gbs(bytes.count, copy)) | quantize \(gbs(bytes.count, quant)) of \(name) input "
                + "(\(String(format: "%.2f", quant / copy))x copy time) | dequantize \(gbs(n, deq)) of FP8 input, \(gbs(n * 4, deq)) of F32 output "
                + "(copy of the F32 output bytes: \(String(format: "%.2f", deq / (copy * Double(n * 4) / Double(bytes.count))))x its time)"
        )
        withExtendedLifetime((t, dst)) {}
    }
}
