#if canImport(Glibc)
import Glibc
#endif
import CMalKernels
import MalCore

/// A Linear layer's weight `[out, in]` kept in its stored dtype (F32, F16, BF16, or FP8 E4M3 with
/// block scales); the kernels convert inside the dot products, nothing is upcast.
public struct LinearWeight: @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    public let dtype: DType
    let data: UnsafeRawPointer
    let scales: UnsafePointer<Float>?
    let blockRows: Int, blockCols: Int
    /// BF16 kept in the tiled layout (`mal_kernels.h`), decided when copied to the arena.
    let tiled: Bool
    let keep: [AnyObject]
    let precision: PrecisionSetting
    public var bias: [Float]?

    var kernelType: Int32 {
        switch dtype {
        case .bf16: return Int32(tiled ? MAL_W_BF16_TILED : MAL_W_BF16)
        case .f16: return Int32(MAL_W_F16)
        case .f8e4m3: return Int32(MAL_W_E4M3)
        default: return Int32(MAL_W_F32)
        }
    }

    /// Bytes read per use (weights + scales): what bounds decoding speed.
    public var byteCount: Int {
        rows * cols * (dtype.byteSize ?? 4) + (scales != nil ? ((rows + blockRows - 1) / blockRows) * ((cols + blockCols - 1) / blockCols) * 4 : 0)
    }

    init(
        tensor t: Tensor, scale: Tensor?, block: BlockShape, bias: [Float]?, arena: WeightArena? = nil, inArena: Bool = false,
        precision: PrecisionSetting = PrecisionSetting()
    ) throws {
        guard t.shape.count == 2 else { throw MalError(.invalidShape, "a linear weight must be 2-D, not \(t.shape)", tensor: t.name) }
        rows = t.shape[0]
        cols = t.shape[1]
        dtype = t.dtype
        guard [.f32, .f16, .bf16, .f8e4m3].contains(dtype) else {
            throw MalError(.unsupported, "the runtime cannot run \(dtype.rawValue) weights", tensor: t.name)
        }
        if dtype == .f8e4m3 {
            guard let s = scale, s.dtype == .f32, s.shape == block.scaleShape(t.shape) else {
                throw MalError(.invalidShape, "FP8 weight needs an F32 scale grid \(block.scaleShape(t.shape)) for \(block) blocks", tensor: t.name)
            }
            scales = (try arena?.copy(s.bytes) ?? s.bytes.baseAddress!).assumingMemoryBound(to: Float.self)
            keep = arena.map { [$0] } ?? [t.storage, s.storage]
        } else {
            scales = nil
            keep = arena.map { [$0] } ?? [t.storage]
        }
        if dtype == .bf16, let arena, mal_bf16_use_tiled(cols) != 0 {
            let dst = try arena.allocate(t.bytes.count)
            mal_bf16_tile(dst.assumingMemoryBound(to: UInt16.self), t.bytes.baseAddress!.assumingMemoryBound(to: UInt16.self), rows, cols)
            data = UnsafeRawPointer(dst)
            tiled = true
        } else {
            // `inArena`: decoded there by the loader already.
            data = try inArena ? t.bytes.baseAddress! : arena?.copy(t.bytes) ?? t.bytes.baseAddress!
            tiled = false
        }
        blockRows = block.rows
        blockCols = block.width(cols)
        self.bias = bias
        self.precision = precision
    }

    /// y = W x (+ bias) for one input, rows split across `threads`.
    public func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, threads: Int) {
        let chunks = Swift.min(threads, Swift.max(1, rows / 64))
        let per = (rows + chunks - 1) / chunks
        let me = self, xs = SharedPointer(x), ys = SharedPointer(y)
        WorkerPool.run(chunks, threads: threads) { k in
            let r0 = k * per, r1 = Swift.min(me.rows, r0 + per)
            if r0 < r1 { me.applyRows(xs.pointer, ys.pointer, r0, r1) }
        }
        if let bias { mal_add_bias(y, bias, rows, 1) }
    }

    /// Row `r` of W as float32 (the dequantised value for FP8): a tied head doubles as the token
    /// embedding, so the model keeps one copy.
    func row(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        mal_decode_row(out, data, kernelType, scales, r, rows, cols, blockRows, blockCols)
    }

    /// y[r] = W[r] · x for rows [r0, r1) only, on the calling thread (per-head products in MLA).
    public func applyRows(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ r0: Int, _ r1: Int) {
        if dtype == .bf16 && decodesWithDotProducts
            && mal_matvec_bf16_bf16dp(y, rows, data.assumingMemoryBound(to: UInt16.self), tiled ? 1 : 0, x, cols, 1, rows, cols, r0, r1) != 0
        {
            return
        }
        switch dtype {
        case .f32: mal_matvec_f32(y, data.assumingMemoryBound(to: Float.self), x, cols, r0, r1)
        case .bf16 where tiled: mal_matvec_bf16_tiled(y, data.assumingMemoryBound(to: UInt16.self), x, rows, cols, r0, r1)
        case .bf16: mal_matvec_bf16(y, data.assumingMemoryBound(to: UInt16.self), x, cols, r0, r1)
        case .f16: mal_matvec_f16(y, data.assumingMemoryBound(to: UInt16.self), x, cols, r0, r1)
        default:
            if decodesWithDotProducts,
                mal_matvec_e4m3_bf16dp(y, rows, data.assumingMemoryBound(to: UInt8.self), scales, x, cols, 1, cols, blockRows, blockCols, r0, r1)
                    != 0
            {
                return
            }
            mal_matvec_e4m3(y, data.assumingMemoryBound(to: UInt8.self), scales, x, cols, blockRows, blockCols, r0, r1)
        }
    }

    /// FP8 and BF16 decoding steps in the fast precision take BF16 dot products where they pay
    /// (`matvec_e4m3_bf16dp.c`: from cache the float32 kernels' shifts bound FP8 there;
    /// `matvec_bf16_bf16dp.c`: a verify step's extra tokens cost the float32 kernels one FMA per
    /// 16 weights each); one token and a verify step's tokens alike, so speculative decoding keeps
    /// its bits.
    var decodesWithDotProducts: Bool { (dtype == .f8e4m3 || dtype == .bf16) && precision.value == .fast && Precision.dotProductsPay }

    /// Up to this many tokens (speculative decoding's verify steps) run with the one-token row
    /// partition and summation order, so every row equals a one-token step's bit for bit (tested):
    /// BF16 and FP8 E4M3 through kernels that read each weight once for all inputs, F32 and F16
    /// input after input over groups of `smallBatchRows` rows (read from memory once, then from
    /// cache). Longer batches (prompts) take the matrix-matrix kernels.
    static let smallBatch = 4, smallBatchRows = 8

    /// `applyRows` for `T` inputs (`X[t]` at `t * cols`, outputs at `t * outputStride`).
    func applyRows(batch X: UnsafePointer<Float>, _ Y: UnsafeMutablePointer<Float>, count T: Int, outputStride: Int, _ r0: Int, _ r1: Int) {
        if dtype == .bf16 {
            let w = data.assumingMemoryBound(to: UInt16.self)
            if decodesWithDotProducts && mal_matvec_bf16_bf16dp(Y, outputStride, w, tiled ? 1 : 0, X, cols, T, rows, cols, r0, r1) != 0 {
                return
            }
            let done =
                tiled
                ? mal_matvec_bf16_tiled_multi(Y, outputStride, w, X, cols, T, rows, cols, r0, r1)
                : mal_matvec_bf16_multi(Y, outputStride, w, X, cols, T, cols, r0, r1)
            if done != 0 { return }
        }
        if dtype == .f8e4m3 && decodesWithDotProducts,
            mal_matvec_e4m3_bf16dp(
                Y, outputStride, data.assumingMemoryBound(to: UInt8.self), scales, X, cols, T, cols, blockRows, blockCols, r0, r1) != 0
        {
            return
        }
        if dtype == .f8e4m3, let scales,
            mal_matvec_e4m3_multi(
                Y, outputStride, data.assumingMemoryBound(to: UInt8.self), scales, X, cols, T, cols, blockRows,
                blockCols, r0, r1) != 0
        {
            return
        }
        var g0 = r0
        while g0 < r1 {
            let g1 = Swift.min(r1, (g0 / LinearWeight.smallBatchRows + 1) * LinearWeight.smallBatchRows)
            for t in 0..<T { applyRows(X + t * cols, Y + t * outputStride, g0, g1) }
            g0 = g1
        }
    }

    /// Prompts are multiplied in chunks of tokens whose inputs fill 512 KiB (128 tokens at 1024
    /// columns, 32 at 4096), at least `minTokenChunk` tokens. The kernel reads the inputs once per 4
    /// weight rows, and a whole 2048-token input (8–32 MB) came from L3 or DRAM each time
    /// (`Docs/PERFORMANCE.md`, prompt processing). The floor bounds how often very wide matrices (18432 columns in DeepSeek-V3) are streamed
    /// again: once per chunk.
    static let tokenChunkBytes = 512 << 10, minTokenChunk = 32

    /// Y[t] = W X[t] (+ bias) for T inputs (prompt processing): each weight row is decoded once per
    /// token chunk.
    public func apply(batch X: UnsafePointer<Float>, _ Y: UnsafeMutablePointer<Float>, count T: Int, threads: Int) {
        if T == 1 { apply(X, Y, threads: threads); return }
        if T <= LinearWeight.smallBatch {
            // A verify step: the one-token partition and kernels, each row group read once.
            let chunks = Swift.min(threads, Swift.max(1, rows / 64))
            let per = (rows + chunks - 1) / chunks
            let me = self, xs = SharedPointer(X), ys = SharedPointer(Y)
            WorkerPool.run(chunks, threads: threads) { k in
                let r0 = k * per, r1 = Swift.min(me.rows, r0 + per)
                if r0 < r1 { me.applyRows(batch: xs.pointer, ys.pointer, count: T, outputStride: me.rows, r0, r1) }
            }
            if let bias { mal_add_bias(Y, bias, rows, T) }
            return
        }
        let rounded = precision.value == .fast && [.bf16, .f8e4m3].contains(dtype)
        if rounded && mal_simd_level() >= 1 {
            applyPanels(batch: X, Y, count: T, threads: threads)
            return
        }
        let kernel = rounded ? mal_matmul_bf16_inputs : mal_matmul
        let chunks = Swift.min(threads * 4, Swift.max(1, rows / 16))
        let per = ((rows + chunks - 1) / chunks + 3) / 4 * 4
        let me = self, xs = SharedPointer(X), ys = SharedPointer(Y)
        let tc = Swift.max(LinearWeight.minTokenChunk, LinearWeight.tokenChunkBytes / (cols * 4))
        WorkerPool.run(chunks, threads: threads) { k in
            let r0 = k * per, r1 = Swift.min(me.rows, r0 + per)
            if r0 >= r1 { return }
            for t0 in stride(from: 0, to: T, by: tc) {
                kernel(
                    ys.pointer + t0 * me.rows, me.data, me.kernelType, me.scales, xs.pointer + t0 * me.cols, Swift.min(tc, T - t0), me.rows,
                    me.cols, me.blockRows, me.blockCols, r0, r1)
            }
        }
        if let bias { mal_add_bias(Y, bias, rows, T) }
    }
}

extension LinearWeight {
    /// Token chunks of the panel products: their packed inputs fill 2 MiB (BF16 pairs for the dot
    /// product, float32 for the FMAs: 1024 or 512 tokens at 1024 columns), so each 32-row weight
    /// panel is packed once per chunk.
    static let panelChunkBytes = 2 << 20, minPanelChunk = 96

    /// `apply(batch:)` in the fast precision (BF16 and FP8 weights, activations rounded to BF16)
    /// through packed 32-row panels (matmul_bf16dp.c): BF16 dot products where they pay, else
    /// float32 FMAs on the rounded inputs. Threads take whole panels (an FP8 panel then lies in one
    /// scale block), each for every token of a chunk; FP8 blocks that panels cannot serve take the
    /// row kernels. The exact precision stays on the row kernels: their 16-lane partial sums kept
    /// the float64 check's errors 3-5x smaller than the panels' one sum per output.
    func applyPanels(batch X: UnsafePointer<Float>, _ Y: UnsafeMutablePointer<Float>, count T: Int, threads: Int) {
        let dot = Precision.dotProductsPay
        let panels = (rows + 31) / 32
        let chunks = Swift.min(threads * 2, panels)
        let per = (panels + chunks - 1) / chunks * 32
        let tc = Swift.max(LinearWeight.minPanelChunk, LinearWeight.panelChunkBytes / (cols * (dot ? 2 : 4)))
        let me = self, xs = SharedPointer(X), ys = SharedPointer(Y)
        WorkerPool.run(chunks, threads: threads) { k in
            let r0 = k * per, r1 = Swift.min(me.rows, r0 + per)
            if r0 >= r1 { return }
            for t0 in stride(from: 0, to: T, by: tc) {
                let y = ys.pointer + t0 * me.rows, x = xs.pointer + t0 * me.cols, n = Swift.min(tc, T - t0)
                if dot {
                    mal_matmul_bf16_inputs(y, me.data, me.kernelType, me.scales, x, n, me.rows, me.cols, me.blockRows, me.blockCols, r0, r1)
                } else if mal_matmul_panels(y, me.data, me.kernelType, me.scales, x, n, me.rows, me.cols, me.blockRows, me.blockCols, r0, r1, 1)
                    == 0
                {
                    mal_matmul_bf16_inputs(y, me.data, me.kernelType, me.scales, x, n, me.rows, me.cols, me.blockRows, me.blockCols, r0, r1)
                }
            }
        }
        if let bias { mal_add_bias(Y, bias, rows, T) }
    }

    /// y_i = W_i x (+ bias) for several weights that read the same input (q, k, v; gate, up; the
    /// experts of a MoE layer). One token or a verify step: all their rows are split across the
    /// threads as one parallel region, so a layer pays one thread hand-off instead of one per
    /// matrix (small matrices are dominated by it). Longer batches: one matrix-matrix product each.
    static func apply(
        group ws: [LinearWeight], _ x: UnsafePointer<Float>, _ ys: [UnsafeMutablePointer<Float>], count T: Int = 1,
        threads: Int
    ) {
        precondition(ws.count == ys.count && ws.allSatisfy { $0.cols == ws[0].cols })
        if T > LinearWeight.smallBatch || ws.count == 1 {
            for (w, y) in zip(ws, ys) { w.apply(batch: x, y, count: T, threads: threads) }
            return
        }
        apply(jobs: zip(ws, ys).map { RowJob(weight: $0, x: x, count: T, y: $1, outputStride: $0.rows) }, threads: threads)
        for (w, y) in zip(ws, ys) { if let b = w.bias { for t in 0..<T { for r in 0..<w.rows { y[t * w.rows + r] += b[r] } } } }
    }

    /// One weight applied to `count` (1 ... `smallBatch`) inputs `cols` apart at `x`, its outputs
    /// `outputStride` apart at `y`: a piece of a parallel region (`apply(jobs:)`).
    struct RowJob {
        let weight: LinearWeight
        let x: UnsafePointer<Float>
        let count: Int
        let y: UnsafeMutablePointer<Float>
        let outputStride: Int
    }

    /// Every job's rows, without bias, as one parallel region: the rows of all jobs in order are
    /// cut into one contiguous share per thread. Each row takes the one-token kernels (or their
    /// verify-step forms), so a token's outputs have the same bits whatever the jobs beside it
    /// and the split.
    static func apply(jobs: [RowJob], threads: Int) {
        let offsets = jobs.reduce(into: [0]) { $0.append($0.last! + $1.weight.rows) }, total = offsets.last!
        let chunks = Swift.max(1, Swift.min(threads, total / 64)), per = (total + chunks - 1) / chunks
        WorkerPool.run(chunks, threads: threads) { c in
            var r = c * per
            let end = Swift.min(total, r + per)
            while r < end {
                let i = offsets.lastIndex { $0 <= r }!, j = jobs[i]
                let row0 = r - offsets[i], row1 = Swift.min(j.weight.rows, row0 + (end - r))
                if j.count == 1 {
                    j.weight.applyRows(j.x, j.y, row0, row1)
                } else {
                    j.weight.applyRows(batch: j.x, j.y, count: j.count, outputStride: j.outputStride, row0, row1)
                }
                r += row1 - row0
            }
        }
    }
}
