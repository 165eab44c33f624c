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

    /// FP8 decoding steps in the fast precision (`mal_matvec_e4m3_bf16dp`) against a float64
    /// reference of what they compute: each activation times its block's scale rounded to BF16,
    /// E4M3 subnormal weights as zero (vdpbf16ps reads BF16 subnormals so). Every byte but the NaNs,
    /// one in eight subnormal; 1 to 4 inputs, each input's rows equal to the one-input call's bit
    /// for bit; a row range starting inside a scale block; blocks the kernel must refuse.
    @Test(arguments: [(128, 128), (16, 64), (1, 192), (128, 96), (1, 32)])
    func decodeStepsMatchRoundedReference(block: (Int, Int)) {
        let (br, bc) = block
        var rng = KernelTests.Rng(s: UInt64(7 + br + bc))
        for (rows, cols) in KernelTests.shapes {
            let w: [UInt8] = (0..<rows * cols).map { _ in
                let v = UInt8(truncatingIfNeeded: rng.next()), b = v & 0x7F == 0x7F ? v & 0xF0 : v
                return rng.next() % 8 == 0 ? b & 0x87 : b
            }
            let wf = FP8.decodeE4M3(w).enumerated().map { w[$0.offset] & 0x78 == 0 ? 0 : Double($0.element) }
            let nb = (cols + bc - 1) / bc
            let scales = (0..<((rows + br - 1) / br) * nb).map { _ in Float(1e-3) * (1 + abs(rng.float()) * 100) }
            let X = (0..<4 * cols).map { _ in rng.float() * 3 }
            Self.expectDecodeSteps(
                "\(rows)x\(cols) blocks \(br)x\(bc)", rows: rows, cols: cols, X: X,
                runs: mal_bf16dp_available() == 1 && cols >= 64 && bc % 64 == 0,
                product: { t, r, c in Self.bf16(X[t * cols + c] * scales[(r / br) * nb + c / bc]) * wf[r * cols + c] }
            ) { Y, X, T, r0 in mal_matvec_e4m3_bf16dp(Y, rows, w, scales, X, cols, T, cols, br, bc, r0, rows) }
        }
    }

    /// BF16 decoding steps in the fast precision (`mal_matvec_bf16_bf16dp`), row-major and tiled,
    /// against a float64 reference of what they compute: the activations rounded to BF16, BF16
    /// subnormal weights (one in eight here) as zero. 1 to 4 inputs, each input's rows equal to the
    /// one-input call's bit for bit; a row range starting inside a tiled block of rows.
    @Test(arguments: [false, true])
    func bf16DecodeStepsMatchRoundedReference(tiled: Bool) {
        var rng = KernelTests.Rng(s: tiled ? 91 : 19)
        for (rows, cols) in KernelTests.shapes + [(19, 2048 + 33), (8, 512)] {
            let w: [UInt16] = (0..<rows * cols).map { _ in
                let b = HalfFloat.encodeBF16([rng.float()])[0]
                return rng.next() % 8 == 0 ? b & 0x807F : b
            }
            let wf = w.map { $0 & 0x7F80 == 0 ? 0 : Double(Float(bitPattern: UInt32($0) << 16)) }
            var stored = w
            if tiled { mal_bf16_tile(&stored, w, rows, cols) }
            let X = (0..<4 * cols).map { _ in rng.float() * 3 }
            Self.expectDecodeSteps(
                "\(tiled ? "tiled" : "row-major") \(rows)x\(cols)", rows: rows, cols: cols, X: X,
                runs: mal_bf16dp_available() == 1 && cols >= 32, product: { t, r, c in Self.bf16(X[t * cols + c]) * wf[r * cols + c] }
            ) { Y, X, T, r0 in mal_matvec_bf16_bf16dp(Y, rows, stored, tiled ? 1 : 0, X, cols, T, rows, cols, r0, rows) }
        }
    }

    /// Checks a decoding kernel `run(Y, X, T, r0)` (rows [r0, rows) of T = 1...4 inputs `cols`
    /// apart, outputs `rows` apart; returns 1 if it ran) on the four inputs `X`: it runs exactly
    /// where `runs` says; each output is within 1e-5 · Σ|p| of the float64 sum of `product(t, r, c)`;
    /// every input's rows equal the one-input call's bit for bit; rows below r0 stay untouched.
    static func expectDecodeSteps(
        _ what: String, rows: Int, cols: Int, X: [Float], runs: Bool, product: (Int, Int, Int) -> Double,
        run: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, Int, Int) -> Int32
    ) {
        let r0 = rows > 3 ? 3 : 0
        // each input alone: what a verify step's rows must equal bit for bit
        var one = [Float](repeating: .nan, count: 4 * rows)
        X.withUnsafeBufferPointer { x in
            one.withUnsafeMutableBufferPointer { o in
                for u in 0..<4 { _ = run(o.baseAddress! + u * rows, x.baseAddress! + u * cols, 1, r0) }
            }
        }
        for T in 1...4 {
            var Y = [Float](repeating: .nan, count: T * rows)
            let ran = X.withUnsafeBufferPointer { x in Y.withUnsafeMutableBufferPointer { run($0.baseAddress!, x.baseAddress!, T, r0) } }
            let what = "\(what) T=\(T)"
            #expect(ran == (runs ? 1 : 0), "\(what): runs exactly where it can")
            guard ran == 1 else { continue }
            for t in 0..<T {
                for r in 0..<rows {
                    let y = Y[t * rows + r]
                    if r < r0 {
                        #expect(y.isNaN, "\(what): row \(r) is outside the range")
                        continue
                    }
                    var ref = 0.0, mag = 0.0
                    for c in 0..<cols {
                        let p = product(t, r, c)
                        ref += p; mag += abs(p)
                    }
                    #expect(abs(Double(y) - ref) <= 1e-5 * mag + 1e-30, "\(what) t \(t) r \(r): \(y) vs \(ref)")
                    #expect(y.bitPattern == one[t * rows + r].bitPattern, "\(what) t \(t) r \(r): differs from the input alone")
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

    /// At model level: a prompt's logits move (the setting is in force) but stay close. Steps of one
    /// token move too where the dot products pay (`mal_matvec_e4m3_bf16dp` for FP8 weights,
    /// `mal_matvec_bf16_bf16dp` for BF16 ones) and stay as close; elsewhere they are float32 in
    /// both precisions, so identical bit for bit.
    @Test(arguments: [Fixtures.samples + "/llama3-fortunes", Fixtures.model("deepseek-v3-fp8")])
    func promptsAndDecodeStepsChange(_ path: String) throws {
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
        /// Close: rms change under 2% of the rms logit, top-1 equal at all but 2 of the rows.
        func expectClose(_ a: [Float], _ b: [Float], _ what: String) {
            #expect(a != b, "\(path) \(what): the fast precision is in force")
            let rms = (a.reduce(0) { $0 + Double($1 * $1) } / Double(a.count)).squareRoot()
            let diff = (zip(a, b).reduce(0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) } / Double(a.count)).squareRoot()
            #expect(diff < 0.02 * rms, "\(path) \(what): rms logit change \(diff) of rms \(rms)")
            let n = a.count / V
            var agree = 0
            for t in 0..<n {
                let ra = a[t * V..<(t + 1) * V], rb = b[t * V..<(t + 1) * V]
                if ra.firstIndex(of: ra.max()!)! - t * V == rb.firstIndex(of: rb.max()!)! - t * V { agree += 1 }
            }
            #expect(agree >= n - 2, "\(path) \(what): top-1 agrees at \(agree) of \(n)")
        }
        expectClose(logits[.exact]!, logits[.fast]!, "prompt")
        if Precision.dotProductsPay {
            expectClose(steps[.exact]!, steps[.fast]!, "one-token steps")
        } else {
            #expect(steps[.exact]! == steps[.fast]!, "one-token steps are float32 in both precisions")
        }
    }
}
