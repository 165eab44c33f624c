import CMalKernels
import Foundation
import MalCore
import MalReaders
import MalRuntime
import MalTestSupport
import Testing

/// The fast precision: the BF16 dot-product kernel against a float64 reference of what it computes
/// (BF16-rounded activations, for FP8 weights each activation times its block's scale before the
/// rounding), its portable fallback, and at model level that only prompts change.
@Suite struct FastPrecisionTests {
    /// x rounded to BF16 (nearest, ties to even; the test values are finite), as float64.
    static func bf16(_ x: Float) -> Double {
        let u = x.bitPattern
        return Double(Float(bitPattern: (u &+ 0x7FFF &+ ((u >> 16) & 1)) & 0xFFFF_0000))
    }

    static let shapes: [(rows: Int, cols: Int)] = [(37, 768), (5, 100), (70, 4096 + 71), (3, 31), (200, 129), (64, 64), (33, 1)]

    @Test(arguments: [Int32(MAL_W_BF16), Int32(MAL_W_BF16_TILED), Int32(MAL_W_E4M3)])
    func matchesRoundedReference(dtype: Int32) {
        var rng = KernelTests.Rng(s: UInt64(40 + dtype))
        let e4m3 = dtype == Int32(MAL_W_E4M3)
        for (br, bc) in e4m3 ? [(128, 128), (32, 64), (1, 32)] : [(0, 0)] {
            for (rows, cols) in Self.shapes {
                var wf = (0..<rows * cols).map { _ in rng.float() }
                var raw: [UInt8]
                if e4m3 {
                    let q = FP8.encodeE4M3(wf.map { $0 * 400 })
                    wf = FP8.decodeE4M3(q)
                    raw = q
                } else {
                    let b = HalfFloat.encodeBF16(wf)
                    wf = HalfFloat.decodeBF16(b)
                    var stored = b
                    if dtype == Int32(MAL_W_BF16_TILED) { mal_bf16_tile(&stored, b, rows, cols) }
                    raw = stored.withUnsafeBytes { Array($0) }
                }
                let nb = e4m3 ? (cols + bc - 1) / bc : 1
                let scales = e4m3 ? (0..<((rows + br - 1) / br) * nb).map { _ in Float(1e-3) * (1 + abs(rng.float()) * 10) } : []
                for T in [5, 12, 13, 30] {
                    let x = (0..<T * cols).map { _ in rng.float() * 3 }
                    // dp: sum bf16(x s) q; rounded: sum bf16(x) q s (the portable fallback); exact: sum x q s.
                    var dp = [Double](repeating: 0, count: T * rows), rounded = dp, exact = dp, mag = dp
                    let xr = x.map(Self.bf16)
                    for t in 0..<T {
                        for r in 0..<rows {
                            for c in 0..<cols {
                                let s = e4m3 ? Double(scales[(r / br) * nb + c / bc]) : 1, w = Double(wf[r * cols + c]), xv = x[t * cols + c]
                                dp[t * rows + r] += (e4m3 ? Self.bf16(xv * Float(s)) : xr[t * cols + c]) * w
                                rounded[t * rows + r] += xr[t * cols + c] * w * s
                                exact[t * rows + r] += Double(xv) * w * s
                                mag[t * rows + r] += abs(Double(xv) * w * s)
                            }
                        }
                    }
                    let r0 = e4m3 ? (rows > 32 ? 32 : 0) : (rows > 4 ? 1 : 0)
                    var y = [Float](repeating: .nan, count: T * rows), yd = y
                    let ranDP = raw.withUnsafeBytes { w in
                        mal_matmul_bf16_inputs(&y, w.baseAddress, dtype, scales, x, T, rows, cols, Swift.max(br, 1), Swift.max(bc, 1), r0, rows)
                        return mal_matmul_bf16dp(&yd, w.baseAddress, dtype, scales, x, T, rows, cols, Swift.max(br, 1), Swift.max(bc, 1), r0, rows) != 0
                    }
                    let what = "dtype \(dtype) \(rows)x\(cols) blocks \(br)x\(bc) T=\(T) dp \(ranDP)"
                    // The dispatcher takes the kernel where it pays (mal_bf16dp_pays), else the portable rounding.
                    let viaDP = ranDP && mal_bf16dp_pays() == 1
                    if viaDP { #expect(yd.elementsEqual(y) { $0.bitPattern == $1.bitPattern }, "\(what): the kernel alone and through the dispatcher") }
                    if ranDP {
                        for i in 0..<(T * rows) where i % rows >= r0 {
                            #expect(abs(Double(yd[i]) - dp[i]) <= 1e-5 * mag[i] + 1e-30, "\(what) [\(i)]: the kernel alone")
                        }
                    }
                    // The FMA panels (exact and rounded inputs): each output sums its columns in one
                    // float32 accumulator, a block's scale applied to its partial sum.
                    for round in [Int32(0), 1] {
                        var yp = [Float](repeating: .nan, count: T * rows)
                        let ran = raw.withUnsafeBytes { w in
                            mal_matmul_panels(&yp, w.baseAddress, dtype, scales, x, T, rows, cols, Swift.max(br, 1), Swift.max(bc, 1), r0, rows, round)
                        }
                        #expect(ran == 1 || (e4m3 && br % 32 != 0), "\(what): the panels ran")
                        guard ran == 1 else { continue }
                        let want = round == 1 ? rounded : exact
                        for i in 0..<(T * rows) {
                            if i % rows < r0 {
                                #expect(yp[i].isNaN, "\(what) panels: row \(i % rows) is outside the range")
                            } else {
                                #expect(abs(Double(yp[i]) - want[i]) <= 1e-5 * mag[i] + 1e-30, "\(what) panels round \(round) [\(i)]: \(yp[i]) vs \(want[i])")
                            }
                        }
                    }
                    let ref = viaDP ? dp : rounded
                    for t in 0..<T {
                        for r in 0..<rows {
                            let i = t * rows + r
                            if r < r0 {
                                #expect(y[i].isNaN, "\(what): row \(r) is outside the range")
                                continue
                            }
                            #expect(abs(Double(y[i]) - ref[i]) <= 1e-5 * mag[i] + 1e-30, "\(what) t \(t) r \(r): \(y[i]) vs \(ref[i])")
                            // BF16 rounding (8 significant bits) moves each product by at most 2^-8 of itself.
                            #expect(abs(Double(y[i]) - exact[i]) <= 0.00391 * mag[i] + 1e-30, "\(what) t \(t) r \(r) vs exact")
                        }
                    }
                }
            }
        }
    }

    /// Where the CPU has AVX-512 BF16 (this project's machines do), the kernel runs for BF16
    /// weights and for FP8 weights in 128 x 128 blocks.
    @Test func kernelRunsWhereAvailable() {
        guard mal_bf16dp_available() == 1 else { return }
        var Y = [Float](repeating: 0, count: 6 * 2)
        #expect(
            mal_matmul_bf16dp(&Y, [UInt16](repeating: 0x3F80, count: 256), Int32(MAL_W_BF16), nil, [Float](repeating: 0.5, count: 768), 6, 2, 128, 0, 0, 0, 2)
                == 1)
        #expect(Y == [Float](repeating: 64, count: 12))
        #expect(
            mal_matmul_bf16dp(&Y, [UInt8](repeating: 0x38, count: 256), Int32(MAL_W_E4M3), [2, 2], [Float](repeating: 1, count: 768), 6, 2, 128, 128, 64, 0, 2)
                == 1)
        #expect(Y == [Float](repeating: 256, count: 12))
    }

    /// At model level: a prompt's logits move (the setting is in force) but stay close, and steps
    /// of one token, which both precisions run in float32, are identical bit for bit.
    @Test(arguments: [Fixtures.samples + "/llama3-fortunes", Fixtures.model("deepseek-v3-fp8")])
    func onlyPromptsChange(_ path: String) throws {
        let model = try ModelLoader.open(path)
        let V = model.spec.vocabSize
        let prompt = (0..<24).map { Int32(($0 * 37 + 11) % V) }
        var logits: [Precision: [Float]] = [:], steps: [Precision: [Float]] = [:]
        for p in Precision.allCases {
            let tr = try Transformer(model: model, contextLength: 64, threads: 2)
            tr.precision = p
            logits[p] = try tr.forward(prompt, allLogits: true)
            tr.reset()
            var s: [Float] = []
            for id in prompt.prefix(8) { s += try tr.forward([id]) }
            steps[p] = s
        }
        let a = logits[.exact]!, b = logits[.fast]!
        #expect(a != b, "fast rounds the prompt's activations")
        let rms = (a.reduce(0) { $0 + Double($1 * $1) } / Double(a.count)).squareRoot()
        let diff = (zip(a, b).reduce(0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) } / Double(a.count)).squareRoot()
        #expect(diff < 0.02 * rms, "\(path): rms logit change \(diff) of rms \(rms)")
        var agree = 0
        for t in 0..<prompt.count {
            let ra = a[t * V..<(t + 1) * V], rb = b[t * V..<(t + 1) * V]
            if ra.firstIndex(of: ra.max()!)! - t * V == rb.firstIndex(of: rb.max()!)! - t * V { agree += 1 }
        }
        #expect(agree >= prompt.count - 2, "\(path): top-1 agrees at \(agree) of \(prompt.count)")
        #expect(steps[.exact]! == steps[.fast]!, "one-token steps are float32 in both precisions")
    }
}
