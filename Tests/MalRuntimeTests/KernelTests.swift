import CMalKernels
import Foundation
import MalCore
import Testing

/// The matrix-vector kernels against a float64 reference, for both implementations (portable loops
/// and the AVX-512 forms, which permute the input and decode weights in place): shapes with column
/// tails, partial scale blocks, and FP8 subnormals, so a wrong permutation, mask or tail shows.
@Suite struct KernelTests {
    /// Deterministic pseudo-random numbers (SplitMix64), so a failure reproduces.
    struct Rng {
        var s: UInt64
        mutating func next() -> UInt64 {
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func float() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }
    }

    static let shapes: [(rows: Int, cols: Int)] = [(37, 768), (5, 100), (130, 4096 + 64 + 7), (3, 31), (200, 129), (9, 64), (2, 1)]

    /// |y - ref| <= tol * sum |w x| per row: float32 accumulation in any order is well inside 1e-5.
    func check(_ y: [Float], _ ref: [Double], _ mag: [Double], _ what: String) {
        for r in 0..<y.count {
            #expect(abs(Double(y[r]) - ref[r]) <= 1e-5 * mag[r] + 1e-30, "\(what) row \(r): \(y[r]) vs \(ref[r])")
        }
    }

    @Test func f32MatchesReference() {
        var rng = Rng(s: 1)
        for (rows, cols) in Self.shapes {
            let w = (0..<rows * cols).map { _ in rng.float() }, x = (0..<cols).map { _ in rng.float() * 3 }
            var ref = [Double](repeating: 0, count: rows), mag = ref
            for r in 0..<rows { for c in 0..<cols { ref[r] += Double(w[r * cols + c]) * Double(x[c]); mag[r] += abs(Double(w[r * cols + c]) * Double(x[c])) } }
            var y = [Float](repeating: .nan, count: rows)
            mal_matvec_f32_portable(&y, w, x, cols, 0, rows)
            check(y, ref, mag, "f32 portable \(rows)x\(cols)")
            y = [Float](repeating: .nan, count: rows)
            if mal_matvec_f32_fast(&y, w, x, cols, 0, rows) != 0 { check(y, ref, mag, "f32 fast \(rows)x\(cols)") }
            y = [Float](repeating: .nan, count: rows)
            mal_matvec_f32(&y, w, x, cols, 1, rows)  // a row range, as the threads call it
            #expect(y[0].isNaN)
            check(Array(y[1...]), Array(ref[1...]), Array(mag[1...]), "f32 rows 1..<\(rows)")
        }
    }

    @Test func bf16MatchesReference() {
        var rng = Rng(s: 2)
        for (rows, cols) in Self.shapes {
            let w = HalfFloat.encodeBF16((0..<rows * cols).map { _ in rng.float() }), wf = HalfFloat.decodeBF16(w)
            let x = (0..<cols).map { _ in rng.float() * 3 }
            var ref = [Double](repeating: 0, count: rows), mag = ref
            for r in 0..<rows { for c in 0..<cols { let p = Double(wf[r * cols + c]) * Double(x[c]); ref[r] += p; mag[r] += abs(p) } }
            var y = [Float](repeating: .nan, count: rows)
            mal_matvec_bf16_portable(&y, w, x, cols, 0, rows)
            check(y, ref, mag, "bf16 portable \(rows)x\(cols)")
            y = [Float](repeating: .nan, count: rows)
            if mal_matvec_bf16_fast(&y, w, x, cols, 0, rows) != 0 { check(y, ref, mag, "bf16 fast \(rows)x\(cols)") }
        }
    }

    /// (1, 32): a block narrower than the 64-weight groups of the fast kernels, which must then not run.
    @Test(arguments: [(128, 128), (16, 64), (128, 96), (1, 192), (1, 32)])
    func e4m3MatchesReference(block: (Int, Int)) {
        let (br, bc) = block
        var rng = Rng(s: 3)
        for (rows, cols) in Self.shapes {
            // every byte but the NaNs 0x7F/0xFF; one in eight subnormal (exponent field 0)
            let w: [UInt8] = (0..<rows * cols).map { _ in
                let v = UInt8(truncatingIfNeeded: rng.next()), b = v & 0x7F == 0x7F ? v & 0xF0 : v
                return rng.next() % 8 == 0 ? b & 0x87 : b
            }
            let wf = FP8.decodeE4M3(w)
            let nb = (cols + bc - 1) / bc, nrb = (rows + br - 1) / br
            let scales = (0..<nrb * nb).map { _ in Float(1e-3) * (1 + abs(rng.float()) * 100) }
            let x = (0..<cols).map { _ in rng.float() * 3 }
            var ref = [Double](repeating: 0, count: rows), mag = ref
            for r in 0..<rows {
                for c in 0..<cols {
                    let p = Double(wf[r * cols + c]) * Double(scales[(r / br) * nb + c / bc]) * Double(x[c])
                    ref[r] += p; mag[r] += abs(p)
                }
            }
            var y = [Float](repeating: .nan, count: rows)
            mal_matvec_e4m3_portable(&y, w, scales, x, cols, br, bc, 0, rows)
            check(y, ref, mag, "e4m3 portable \(rows)x\(cols) blocks \(br)x\(bc)")
            y = [Float](repeating: .nan, count: rows)
            if mal_matvec_e4m3_fast(&y, w, scales, x, cols, br, bc, 0, rows) != 0 { check(y, ref, mag, "e4m3 fast \(rows)x\(cols) blocks \(br)x\(bc)") }
            if rows > 3 {  // a range starting inside a row block rebuilds the scaled input for it
                y = [Float](repeating: .nan, count: rows)
                mal_matvec_e4m3(&y, w, scales, x, cols, br, bc, 3, rows)
                check(Array(y[3...]), Array(ref[3...]), Array(mag[3...]), "e4m3 rows 3..<\(rows)")
            }
            // Three inputs at once (a verify step): input t is x · (t + 1).
            let X = (1...3).flatMap { k in x.map { $0 * Float(k) } }
            var Y = [Float](repeating: .nan, count: 3 * rows)
            if mal_matvec_e4m3_multi(&Y, rows, w, scales, X, cols, 3, cols, br, bc, 0, rows) != 0 {
                for t in 0..<3 {
                    let got = Array(Y[(t * rows)..<((t + 1) * rows)])
                    check(got, ref.map { $0 * Double(t + 1) }, mag.map { $0 * Double(t + 1) }, "e4m3 multi input \(t) \(rows)x\(cols) blocks \(br)x\(bc)")
                    // a verify step's rows are a one-token step's bit for bit (narrow and wide kernels)
                    var one = [Float](repeating: .nan, count: rows)
                    Array(X[(t * cols)..<((t + 1) * cols)]).withUnsafeBufferPointer { mal_matvec_e4m3(&one, w, scales, $0.baseAddress!, cols, br, bc, 0, rows) }
                    #expect(got == one, "e4m3 multi input \(t) \(rows)x\(cols) blocks \(br)x\(bc) differs from one input")
                }
            }
        }
    }

    /// The batched product of prompt processing, every weight dtype, against float64: input counts
    /// that exercise each tile width (6, 4, 1), row counts not a multiple of 4, a row range.
    @Test(arguments: [Int32(MAL_W_F32), Int32(MAL_W_BF16), Int32(MAL_W_F16), Int32(MAL_W_E4M3)])
    func matmulMatchesReference(dtype: Int32) {
        var rng = Rng(s: UInt64(10 + dtype))
        // E4M3 also with blocks narrower than, and not a multiple of, the kernels' 64-weight groups.
        let blocks = dtype == Int32(MAL_W_E4M3) ? [(128, 128), (1, 32), (16, 96)] : [(128, 128)]
        for (br, bc) in blocks {
            for (rows, cols) in Self.shapes where cols <= 8192 {
                var wf = (0..<rows * cols).map { _ in rng.float() }
                let raw: [UInt8]
                switch dtype {
                case Int32(MAL_W_BF16): let b = HalfFloat.encodeBF16(wf); wf = HalfFloat.decodeBF16(b); raw = b.withUnsafeBytes { Array($0) }
                case Int32(MAL_W_F16): let b = HalfFloat.encodeF16(wf); wf = HalfFloat.decodeF16(b); raw = b.withUnsafeBytes { Array($0) }
                case Int32(MAL_W_E4M3): let b = FP8.encodeE4M3(wf.map { $0 * 400 }); wf = FP8.decodeE4M3(b); raw = b
                default: raw = wf.withUnsafeBytes { Array($0) }
                }
                let nb = (cols + bc - 1) / bc
                let scales = (0..<((rows + br - 1) / br) * nb).map { _ in Float(1e-3) * (1 + abs(rng.float()) * 10) }
                let scale: (Int, Int) -> Double = { r, c in dtype == Int32(MAL_W_E4M3) ? Double(scales[(r / br) * nb + c / bc]) : 1 }
                for T in [1, 5, 7, 13] {
                    let x = (0..<T * cols).map { _ in rng.float() * 2 }
                    var ref = [Double](repeating: 0, count: T * rows), mag = ref
                    for t in 0..<T {
                        for r in 0..<rows {
                            for c in 0..<cols {
                                let p = Double(wf[r * cols + c]) * scale(r, c) * Double(x[t * cols + c])
                                ref[t * rows + r] += p; mag[t * rows + r] += abs(p)
                            }
                        }
                    }
                    let r0 = rows > 4 ? 1 : 0
                    for fast in [false, true] {
                        var y = [Float](repeating: .nan, count: T * rows)
                        let ran: Bool = raw.withUnsafeBytes { w in
                            if fast { return mal_matmul_fast(&y, w.baseAddress, dtype, scales, x, T, rows, cols, br, bc, r0, rows) != 0 }
                            mal_matmul_portable(&y, w.baseAddress, dtype, scales, x, T, rows, cols, br, bc, r0, rows)
                            return true
                        }
                        guard ran else { continue }
                        for t in 0..<T {
                            if r0 > 0 { #expect(y[t * rows].isNaN, "row 0 is outside the range") }
                            let lo = t * rows + r0, hi = (t + 1) * rows
                            check(
                                Array(y[lo..<hi]), Array(ref[lo..<hi]), Array(mag[lo..<hi]), "matmul dtype \(dtype) fast \(fast) \(rows)x\(cols) T=\(T) t=\(t)")
                        }
                    }
                }
            }
        }
    }

    /// The tiled BF16 layout: the copy puts every element where the index says, and the
    /// matrix-vector and matrix-matrix kernels read it back to the same products, for shapes with a
    /// short last tile, a short last row block and row ranges that start inside a block.
    @Test func bf16TiledLayout() {
        var rng = Rng(s: 21)
        for (rows, cols) in [(9, 1024), (6, 1100), (5, 600), (13, 2048 + 31), (3, 40), (16, 4096), (17, 2048), (8, 2300)] {
            let w = HalfFloat.encodeBF16((0..<rows * cols).map { _ in rng.float() }), wf = HalfFloat.decodeBF16(w)
            var tiled = [UInt16](repeating: 0, count: rows * cols)
            mal_bf16_tile(&tiled, w, rows, cols)
            for r in 0..<rows {
                for c in 0..<cols where tiled[mal_bf16_tiled_index(r, c, rows, cols)] != w[r * cols + c] {
                    Issue.record("element (\(r), \(c)) misplaced in \(rows)x\(cols)"); return
                }
            }
            let x = (0..<3 * cols).map { _ in rng.float() * 2 }
            var ref = [Double](repeating: 0, count: 3 * rows), mag = ref
            for t in 0..<3 {
                for r in 0..<rows {
                    for c in 0..<cols {
                        let p = Double(wf[r * cols + c]) * Double(x[t * cols + c]); ref[t * rows + r] += p; mag[t * rows + r] += abs(p)
                    }
                }
            }
            for (r0, r1) in [(0, rows), (1, rows), (3, rows - 1), (0, 2)] where r0 < r1 {
                for fast in [false, true] {
                    var y = [Float](repeating: .nan, count: rows)
                    if fast {
                        if mal_matvec_bf16_tiled_fast(&y, tiled, x, rows, cols, r0, r1) == 0 { continue }
                    } else {
                        mal_matvec_bf16_tiled_portable(&y, tiled, x, rows, cols, r0, r1)
                    }
                    check(Array(y[r0..<r1]), Array(ref[r0..<r1]), Array(mag[r0..<r1]), "tiled matvec fast \(fast) \(rows)x\(cols) rows \(r0)..<\(r1)")
                    #expect(y[..<r0].allSatisfy(\.isNaN) && y[r1...].allSatisfy(\.isNaN), "rows outside the range were written")
                }
            }
            for fast in [false, true] {
                var Y = [Float](repeating: .nan, count: 3 * rows)
                let ran = tiled.withUnsafeBytes { wb in
                    if fast { return mal_matmul_fast(&Y, wb.baseAddress, Int32(MAL_W_BF16_TILED), nil, x, 3, rows, cols, 0, 0, 0, rows) != 0 }
                    mal_matmul_portable(&Y, wb.baseAddress, Int32(MAL_W_BF16_TILED), nil, x, 3, rows, cols, 0, 0, 0, rows)
                    return true
                }
                if ran { check(Y, ref, mag, "tiled matmul fast \(fast) \(rows)x\(cols)") }
            }
        }
    }

    /// The vectorised activations against float64 formulas, from tiny to saturating inputs, plain
    /// and gated (act(g) · u).
    @Test func activationsMatchReference() {
        var xs: [Float] = [0, -0, 1e-30, -1e-30, 1e-6, -1e-6, 0.5, -0.5, 3, -3, 5, -5, 9, -9, 20, -20, 50, -50, 87, -87, 100, -100, 1e4, -1e4]
        var rng = Rng(s: 7)
        for _ in 0..<5000 { xs.append(rng.float() * 12) }
        let ups = xs.map { _ in rng.float() * 2 }
        let sigmoid = { (v: Double) in 1 / (1 + exp(-v)) }
        let kinds: [(String, Int32, (Double) -> Double)] = [
            ("gelu_tanh", Int32(MAL_ACT_GELU_TANH), { d in 0.5 * d * (1 + tanh(0.7978845608028654 * (d + 0.044715 * d * d * d))) }),
            ("gelu_erf", Int32(MAL_ACT_GELU_ERF), { d in 0.5 * d * erfc(-d / 2.0.squareRoot()) }),
            ("silu", Int32(MAL_ACT_SILU), { d in d * sigmoid(d) }),
            ("relu", Int32(MAL_ACT_RELU), { d in max(d, 0) }),
            ("quick_gelu", Int32(MAL_ACT_QUICK_GELU), { d in d * sigmoid(1.702 * d) }),
        ]
        for (name, code, f) in kinds {
            var plain = xs, gated = xs
            mal_activate(code, &plain, plain.count)
            mal_activate_mul(code, &gated, ups, gated.count)
            var worst = 0.0
            for (i, x) in xs.enumerated() {
                let want = f(Double(x)), wantGated = want * Double(ups[i])
                worst = max(
                    worst, abs(Double(plain[i]) - want) / max(1, abs(want)),
                    abs(Double(gated[i]) - wantGated) / max(1, abs(wantGated)))
                #expect(plain[i].isFinite && gated[i].isFinite, "\(name)(\(x))")
            }
            #expect(worst <= 1e-6, "\(name): worst error \(worst)")
        }
        var nan: [Float] = [.nan]
        mal_activate(Int32(MAL_ACT_RELU), &nan, 1)
        #expect(nan[0].isNaN, "relu keeps NaN")
    }

    /// Attention of one query against a cache, both implementations against float64: grouped
    /// (16 heads over 8 KV heads, 4 over 1), multi-head with value width != key width (DeepSeek's
    /// naive 192/128), the absorbed latent layout (576/512, values inside the key rows), position
    /// counts around the 16-lane tails, a head range that starts inside a group, and a width that
    /// only the portable form takes (24).
    @Test(arguments: [(16, 8, 64, 64), (4, 1, 64, 64), (3, 3, 192, 128), (4, 1, 576, 512), (2, 1, 24, 24)])
    func attentionMatchesReference(shape: (heads: Int, kv: Int, dk: Int, dv: Int)) {
        var rng = Rng(s: 7)
        let (H, KV, dk, dv) = shape
        let latent = dk == 576
        let ks = KV * dk, vs = latent ? ks : KV * dv
        for nPos in [1, 15, 16, 17, 300] {
            let K = (0..<nPos * ks).map { _ in rng.float() }
            let V = latent ? K : (0..<nPos * vs).map { _ in rng.float() }
            let q = (0..<H * dk).map { _ in rng.float() * 2 }
            let scale = 1 / Float(dk).squareRoot()
            var ref = [Double](repeating: 0, count: H * dv)
            for h in 0..<H {
                let g = h / (H / KV)
                var sc = (0..<nPos).map { p in (0..<dk).reduce(0.0) { $0 + Double(q[h * dk + $1]) * Double(K[p * ks + g * dk + $1]) } * Double(scale) }
                let m = sc.max()!
                sc = sc.map { exp($0 - m) }
                let sum = sc.reduce(0, +)
                for p in 0..<nPos { for i in 0..<dv { ref[h * dv + i] += sc[p] / sum * Double(V[p * vs + (latent ? 0 : g * dv) + i]) } }
            }
            let (h0, h1) = H > 4 ? (3, H) : (0, H)  // a range starting inside a KV group, as the threads split heads
            // The runtime's head-major copy ([head][position][dim]) of the same cache.
            func headMajorCopy(_ a: [Float], row: Int, width: Int) -> [Float] {
                var out: [Float] = []
                for g in 0..<KV { for p in 0..<nPos { let o = p * row + g * width; out += a[o..<(o + width)] } }
                return out
            }
            let Kh = headMajorCopy(K, row: ks, width: dk)
            let Vh = latent ? Kh : headMajorCopy(V, row: vs, width: dv)
            for (fast, headMajor) in [(false, false), (true, false), (false, true), (true, true)] {
                var out = [Float](repeating: .nan, count: H * dv)
                var scratch = [Float](repeating: 0, count: H * nPos)
                let (k, v) = headMajor ? (Kh, Vh) : (K, V)
                let (kRow, vRow) = headMajor ? (dk, latent ? dk : dv) : (ks, vs)
                let (kHead, vHead) = headMajor ? (nPos * dk, nPos * vRow) : (dk, latent ? 0 : dv)
                if fast {
                    guard mal_attention_fast(&out, q, k, v, nPos, dk, dv, H, KV, kRow, vRow, kHead, vHead, scale, &scratch, h0, h1) == 1 else {
                        #expect(mal_simd_level() == 0 || dk % 16 != 0)
                        continue
                    }
                } else {
                    mal_attention_portable(&out, q, k, v, nPos, dk, dv, H, KV, kRow, vRow, kHead, vHead, scale, &scratch, h0, h1)
                }
                for i in 0..<(h0 * dv) { #expect(out[i].isNaN, "wrote outside the head range") }
                for i in (h0 * dv)..<(H * dv) {
                    #expect(
                        abs(Double(out[i]) - ref[i]) <= 1e-5,
                        "\(fast ? "fast" : "portable") head-major \(headMajor) \(shape) n=\(nPos) [\(i)]: \(out[i]) vs \(ref[i])")
                }
            }
        }
    }

    /// A NaN in one head's query poisons that head's output and no other, in both forms (the
    /// softmax's clamped exp must not turn NaN into a number).
    @Test func attentionPropagatesNaN() {
        let H = 4, dk = 64, nPos = 40
        var q = [Float](repeating: 0.1, count: H * dk)
        q[dk + 5] = .nan
        let K = (0..<nPos * dk).map { Float($0 % 7) * 0.1 }, V = K
        for fast in [false, true] {
            var out = [Float](repeating: 0, count: H * dk), scratch = [Float](repeating: 0, count: H * nPos)
            if fast {
                if mal_attention_fast(&out, q, K, V, nPos, dk, dk, H, 1, dk, dk, 0, 0, 0.125, &scratch, 0, H) == 0 { continue }
            } else {
                mal_attention_portable(&out, q, K, V, nPos, dk, dk, H, 1, dk, dk, 0, 0, 0.125, &scratch, 0, H)
            }
            #expect(out[dk..<(2 * dk)].allSatisfy(\.isNaN) && out[0..<dk].allSatisfy(\.isFinite) && out[(2 * dk)...].allSatisfy(\.isFinite))
        }
    }

    /// The rows of a prompt step at once (`mal_attention_rows`) are, bit for bit, each row attended
    /// alone (the decoding steps' kernel, which speculative verification and cache reuse rely on):
    /// multi-head (rows grouped 4 at a time), groups of 2, 3 and 8 heads, DeepSeek's 192/128, a head
    /// range starting inside a group, row counts around the grouping, and a start past 0.
    @Test(arguments: [(12, 12, 64, 64), (16, 8, 64, 64), (6, 2, 64, 64), (8, 1, 64, 64), (3, 3, 192, 128), (2, 1, 24, 24)])
    func attentionRowsMatchOneRowAtATime(shape: (heads: Int, kv: Int, dk: Int, dv: Int)) {
        var rng = Rng(s: 11)
        let (H, KV, dk, dv) = shape
        for (start, T) in [(0, 1), (0, 5), (0, 8), (7, 3), (13, 9), (30, 17)] {
            let n = start + T, cap = n + 3  // a cache longer than what is filled, as the runtime's
            let K = (0..<KV * cap * dk).map { _ in rng.float() }, V = (0..<KV * cap * dv).map { _ in rng.float() }
            let q = (0..<T * H * dk).map { _ in rng.float() * 2 }, scale = 1 / Float(dk).squareRoot()
            let h0 = H > 4 ? 1 : 0
            var rows = [Float](repeating: .nan, count: T * H * dv), one = rows
            var scratch = [Float](repeating: 0, count: max(4, H) * n)
            mal_attention_rows(&rows, H * dv, q, H * dk, T, start, K, V, dk, dv, H, KV, dk, dv, cap * dk, cap * dv, scale, &scratch, h0, H)
            for t in 0..<T {
                one.withUnsafeMutableBufferPointer { o in
                    q.withUnsafeBufferPointer { qp in
                        mal_attention(
                            o.baseAddress! + t * H * dv, qp.baseAddress! + t * H * dk, K, V, start + t + 1, dk, dv, H, KV, dk, dv, cap * dk,
                            cap * dv, scale, &scratch, h0, H)
                    }
                }
            }
            let same = zip(rows, one).allSatisfy { $0.bitPattern == $1.bitPattern }
            #expect(same, "\(shape) start \(start) T \(T): rows differ from one row at a time")
            for t in 0..<T {
                let outside = rows[(t * H * dv)..<(t * H * dv + h0 * dv)].allSatisfy { $0.isNaN }
                #expect(outside, "wrote outside the head range")
            }
            let written = rows[(h0 * dv)..<(H * dv)].allSatisfy { $0.isFinite }
            #expect(written)
        }
    }

    /// On an AVX-512 machine (the build machine is one) the fast forms must actually run.
    @Test func fastFormsRunWhereAvailable() {
        guard mal_simd_level() == 1 else { return }
        var y = [Float](repeating: 0, count: 2)
        let x = [Float](repeating: 1, count: 128)
        #expect(mal_matvec_f32_fast(&y, [Float](repeating: 0.5, count: 256), x, 128, 0, 2) == 1)
        #expect(y == [64, 64])
        #expect(mal_matvec_bf16_fast(&y, [UInt16](repeating: 0x3F80, count: 256), x, 128, 0, 2) == 1)
        #expect(y == [128, 128])
        #expect(mal_matvec_e4m3_fast(&y, [UInt8](repeating: 0x38, count: 256), [2, 2], x, 128, 128, 64, 0, 2) == 1)
        #expect(y == [256, 256])
        var Y = [Float](repeating: 0, count: 6)
        #expect(mal_matmul_fast(&Y, [Float](repeating: 0.5, count: 256), Int32(MAL_W_F32), nil, [Float](repeating: 1, count: 384), 3, 2, 128, 0, 0, 0, 2) == 1)
        #expect(Y == [Float](repeating: 64, count: 6))
    }
}
