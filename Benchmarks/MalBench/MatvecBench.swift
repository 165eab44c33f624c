import Foundation
import MalCore
import MalRuntime

/// Matrix-vector throughput of the runtime's linear layers (weights in huge pages), by dtype and
/// thread count, in GB/s of weight bytes: the decode-speed ceiling of a dense model.
enum MatvecBench {
    static func run() throws {
        let rows = Int(ProcessInfo.processInfo.environment["MV_ROWS"] ?? "16384")!, cols = Int(ProcessInfo.processInfo.environment["MV_COLS"] ?? "4096")!
        for threads in [1, 2] {
            for (name, w) in try MatvecProbe.make(rows: rows, cols: cols) {
                var x = [Float](repeating: 0.01, count: cols), y = [Float](repeating: 0, count: rows)
                var best = Double.infinity
                for _ in 0..<8 {
                    let t0 = Date()
                    x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { w.apply(xp.baseAddress!, $0.baseAddress!, threads: threads) } }
                    best = min(best, Date().timeIntervalSince(t0))
                }
                print(String(format: "matvec %@ %dx%d, %d threads: %.1f GB/s", name, rows, cols, threads, Double(w.byteCount) / best / 1e9))
            }
        }
    }
}

enum ParallelProbe {
    static func run() {
        for threads in [1, 2] {
            let t0 = Date()
            let box = LockedBox(0.0)
            try! parallelFor(threads, threads: threads) { k in
                var x = 1.0001
                for i in 0..<200_000_000 / threads { x = x * 1.0000001 + Double(i & 1) * 1e-12 }
                box.withLock { $0 += x }
            }
            print("parallelFor \(threads) threads: \(Date().timeIntervalSince(t0)) s")
        }
    }
}

/// `malbench read BYTES [--threads T] [--reps N]`: the plain-read bandwidth of BYTES of huge-page
/// memory, the ceiling of a decoding step that reads BYTES of weights (`Benchmarks/decode_bandwidth.py`).
enum ReadBench {
    static func run(bytes: Int) {
        let a = CommandLine.arguments
        func value(_ flag: String) -> Int? { a.firstIndex(of: flag).flatMap { $0 + 1 < a.count ? Int(a[$0 + 1]) : nil } }
        guard bytes > 0 else {
            FileHandle.standardError.write("malbench read: BYTES must be a positive byte count\n".data(using: .utf8)!)
            exit(2)
        }
        let threads = value("--threads").map { [$0] } ?? [1, 2]
        guard threads.allSatisfy({ (1...256).contains($0) }) else {
            FileHandle.standardError.write("malbench read: --threads must be 1...256\n".data(using: .utf8)!)
            exit(2)
        }
        for t in threads {
            do {
                let bw = try MatvecProbe.readBandwidth(bytes: bytes, threads: t, repetitions: value("--reps") ?? 9)
                print(String(format: "read %d bytes, %d threads: %.2f GB/s", bytes, t, bw / 1e9))
            } catch {
                FileHandle.standardError.write("malbench read: \(error)\n".data(using: .utf8)!)
                exit(1)
            }
        }
    }
}
