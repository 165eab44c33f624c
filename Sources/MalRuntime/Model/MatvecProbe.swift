#if canImport(Glibc)
import Glibc
#endif
import CMalKernels
import Dispatch
import MalCore

/// Linear layers of random weights for kernel benchmarks (malbench).
public enum MatvecProbe {
    public static func make(rows: Int, cols: Int) throws -> [(String, LinearWeight)] {
        let arena = WeightArena()
        var out: [(String, LinearWeight)] = []
        for d in [DType.f32, .bf16] {
            let n = rows * cols * (d.byteSize ?? 4)
            let s = try TensorStorage.allocate(count: n)
            memset(UnsafeMutableRawPointer(mutating: s.bytes.baseAddress!), 0x3c, n)
            out.append(
                (
                    d.rawValue,
                    try LinearWeight(
                        tensor: Tensor(name: "w", dtype: d, shape: [rows, cols], storage: s), scale: nil,
                        block: .deepseek, bias: nil, arena: arena)
                ))
        }
        let q = try TensorStorage.allocate(count: rows * cols)
        memset(UnsafeMutableRawPointer(mutating: q.bytes.baseAddress!), 0x3c, rows * cols)
        let sc = try TensorStorage.allocate(count: (rows / 128) * (cols / 128) * 4)
        memset(UnsafeMutableRawPointer(mutating: sc.bytes.baseAddress!), 0x3c, (rows / 128) * (cols / 128) * 4)
        out.append(
            (
                "F8_E4M3",
                try LinearWeight(
                    tensor: Tensor(name: "w", dtype: .f8e4m3, shape: [rows, cols], storage: q),
                    scale: Tensor(name: "s", dtype: .f32, shape: [rows / 128, cols / 128], storage: sc),
                    block: .deepseek, bias: nil, arena: arena)
            ))
        return out
    }

    /// The plain-read bandwidth (bytes per second) of `bytes` of huge-page memory on `threads`
    /// threads, each reading its contiguous share: the ceiling a decoding step's weight reads are
    /// compared with. The best of three prefetch distances (none, 16 KiB, 64 KiB, the kernels'
    /// range), median of `repetitions` passes.
    public static func readBandwidth(bytes: Int, threads: Int, repetitions: Int) throws -> Double {
        let arena = WeightArena()
        let p = SharedPointer(try arena.allocate(bytes))
        memset(p.pointer, 0x5a, bytes)
        let share = (bytes / threads + 4095) / 4096 * 4096
        let sink = LockedBox(UInt64(0))
        var seconds: [Double] = []
        for _ in 0..<max(1, repetitions) {
            var best = Double.infinity
            for prefetch in [0, 16384, 65536] {
                let t0 = DispatchTime.now().uptimeNanoseconds
                WorkerPool.run(threads, threads: threads) { k in
                    let start = k * share, n = Swift.max(0, Swift.min(bytes, start + share) - start)
                    let v = mal_read_probe(p.pointer + start, n, prefetch)
                    sink.withLock { $0 ^= v }
                }
                best = Swift.min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            }
            seconds.append(best)
        }
        withExtendedLifetime(arena) {}
        return Double(bytes) / seconds.sorted()[seconds.count / 2]
    }
}
