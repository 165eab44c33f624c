#if canImport(Glibc)
import Glibc
#endif
import CMalKernels
import MalCore
import MalTransforms

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
    public var byteCount: Int { rows * cols * (dtype.byteSize ?? 4) + (scales != nil ? ((rows + blockRows - 1) / blockRows) * ((cols + blockCols - 1) / blockCols) * 4 : 0) }

    init(tensor t: Tensor, scale: Tensor?, block: BlockShape, bias: [Float]?, arena: WeightArena? = nil) throws {
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
            data = try arena?.copy(t.bytes) ?? t.bytes.baseAddress!
            tiled = false
        }
        blockRows = block.rows
        blockCols = block.width(cols)
        self.bias = bias
    }

    /// y = W x (+ bias) for one input, rows split across `threads`.
    public func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, threads: Int) {
        let chunks = Swift.min(threads, Swift.max(1, rows / 64))
        let per = (rows + chunks - 1) / chunks
        let me = self, xs = SendableConstPointer(x), ys = SendableMutablePointer(y)
        WorkerPool.run(chunks, threads: threads) { k in
            let r0 = k * per, r1 = Swift.min(me.rows, r0 + per)
            if r0 < r1 { me.applyRows(xs.p, ys.p, r0, r1) }
        }
        if let bias { for r in 0..<rows { y[r] += bias[r] } }
    }

    /// Row `r` of W as float32 (the dequantised value for FP8): a tied head doubles as the token
    /// embedding, so the model keeps one copy.
    func row(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        mal_decode_row(out, data, kernelType, scales, r, rows, cols, blockRows, blockCols)
    }

    /// y[r] = W[r] · x for rows [r0, r1) only, on the calling thread (per-head products in MLA).
    public func applyRows(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ r0: Int, _ r1: Int) {
        switch dtype {
        case .f32: mal_matvec_f32(y, data.assumingMemoryBound(to: Float.self), x, cols, r0, r1)
        case .bf16 where tiled: mal_matvec_bf16_tiled(y, data.assumingMemoryBound(to: UInt16.self), x, rows, cols, r0, r1)
        case .bf16: mal_matvec_bf16(y, data.assumingMemoryBound(to: UInt16.self), x, cols, r0, r1)
        case .f16: mal_matvec_f16(y, data.assumingMemoryBound(to: UInt16.self), x, cols, r0, r1)
        default: mal_matvec_e4m3(y, data.assumingMemoryBound(to: UInt8.self), scales, x, cols, blockRows, blockCols, r0, r1)
        }
    }

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
            let done = tiled ? mal_matvec_bf16_tiled_multi(Y, outputStride, w, X, cols, T, rows, cols, r0, r1)
                             : mal_matvec_bf16_multi(Y, outputStride, w, X, cols, T, cols, r0, r1)
            if done != 0 { return }
        }
        if dtype == .f8e4m3, let scales,
           mal_matvec_e4m3_multi(Y, outputStride, data.assumingMemoryBound(to: UInt8.self), scales, X, cols, T, cols, blockRows,
                                 blockCols, r0, r1) != 0 {
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
    /// weight rows, and a whole 2048-token input (8–32 MB) came from L3 or DRAM each time.
    /// Llama-383M pp2048: 187–194 → 235–270 tok/s; pp128 and pp512 unchanged (PERFORMANCE.md).
    /// The floor bounds how often very wide matrices (18432 columns in DeepSeek-V3) are streamed
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
            let me = self, xs = SendableConstPointer(X), ys = SendableMutablePointer(Y)
            WorkerPool.run(chunks, threads: threads) { k in
                let r0 = k * per, r1 = Swift.min(me.rows, r0 + per)
                if r0 < r1 { me.applyRows(batch: xs.p, ys.p, count: T, outputStride: me.rows, r0, r1) }
            }
            if let bias { for t in 0..<T { for r in 0..<rows { Y[t * rows + r] += bias[r] } } }
            return
        }
        let chunks = Swift.min(threads * 4, Swift.max(1, rows / 16))
        let per = ((rows + chunks - 1) / chunks + 3) / 4 * 4
        let me = self, xs = SendableConstPointer(X), ys = SendableMutablePointer(Y)
        let tc = Swift.max(LinearWeight.minTokenChunk, LinearWeight.tokenChunkBytes / (cols * 4))
        WorkerPool.run(chunks, threads: threads) { k in
            let r0 = k * per, r1 = Swift.min(me.rows, r0 + per)
            if r0 >= r1 { return }
            for t0 in stride(from: 0, to: T, by: tc) {
                mal_matmul(ys.p + t0 * me.rows, me.data, me.kernelType, me.scales, xs.p + t0 * me.cols, Swift.min(tc, T - t0), me.rows,
                           me.cols, me.blockRows, me.blockCols, r0, r1)
            }
        }
        if let bias { for t in 0..<T { for r in 0..<rows { Y[t * rows + r] += bias[r] } } }
    }
}

extension LinearWeight {
    /// y_i = W_i x (+ bias) for several weights that read the same input (q, k, v; gate, up; the
    /// experts of a MoE layer). One token: all their rows are split across the threads as one
    /// parallel region, so a layer pays one thread hand-off instead of one per matrix (small
    /// matrices are dominated by it). Several tokens: one matrix-matrix product each.
    static func apply(group ws: [LinearWeight], _ x: UnsafePointer<Float>, _ ys: [UnsafeMutablePointer<Float>], count T: Int = 1,
                      threads: Int) {
        precondition(ws.count == ys.count && ws.allSatisfy { $0.cols == ws[0].cols })
        if T > LinearWeight.smallBatch || ws.count == 1 {
            for (w, y) in zip(ws, ys) { w.apply(batch: x, y, count: T, threads: threads) }
            return
        }
        let offsets = ws.reduce(into: [0]) { $0.append($0.last! + $1.rows) }, total = offsets.last!
        let chunks = Swift.max(1, Swift.min(threads, total / 64)), per = (total + chunks - 1) / chunks
        let xs = SendableConstPointer(x), outs = ys.map { SendableMutablePointer($0) }
        WorkerPool.run(chunks, threads: threads) { c in
            var r = c * per
            let end = Swift.min(total, r + per)
            while r < end {
                let i = offsets.lastIndex { $0 <= r }!, row0 = r - offsets[i], row1 = Swift.min(ws[i].rows, row0 + (end - r))
                if T == 1 { ws[i].applyRows(xs.p, outs[i].p, row0, row1) } else {
                    ws[i].applyRows(batch: xs.p, outs[i].p, count: T, outputStride: ws[i].rows, row0, row1)
                }
                r += row1 - row0
            }
        }
        for (w, y) in zip(ws, ys) { if let b = w.bias { for t in 0..<T { for r in 0..<w.rows { y[t * w.rows + r] += b[r] } } } }
    }
}

struct SendableConstPointer: @unchecked Sendable { let p: UnsafePointer<Float>; init(_ p: UnsafePointer<Float>) { self.p = p } }
struct SendableMutablePointer: @unchecked Sendable { let p: UnsafeMutablePointer<Float>; init(_ p: UnsafeMutablePointer<Float>) { self.p = p } }

/// Reads weights of a `CanonicalModel` by canonical name for the runtime.
struct WeightLoader {
    let model: CanonicalModel
    let block: BlockShape
    let arena: WeightArena?
    private let byName: [String: CanonicalTensor]

    init(model: CanonicalModel, arena: WeightArena?) {
        self.model = model
        self.arena = arena
        if let b = model.spec.quantization?.weightBlockSize, b.count == 2 { block = BlockShape(rows: b[0], cols: b[1]) } else { block = .deepseek }
        var m: [String: CanonicalTensor] = [:]
        for t in model.tensors { m[t.name] = t }
        byName = m
    }

    func has(_ name: String) -> Bool { byName[name] != nil }

    func tensor(_ name: String) throws -> Tensor {
        guard byName[name] != nil else { throw MalError(.notFound, "the model has no tensor '\(name)'", tensor: name) }
        return try model.load(name)
    }

    /// A tensor whose shape the spec fixes: a file whose tensors disagree with its own spec is an
    /// error here, never an out-of-bounds read in a kernel.
    func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        let t = try tensor(name)
        guard [.f32, .bf16, .f16, .f8e4m3].contains(t.dtype) else {
            throw MalError(.unsupported, "has dtype \(t.dtype.rawValue); the runtime reads F32, BF16, F16 and F8_E4M3 weights "
                           + "(`malconv convert --dtype f32|bf16|f16` casts float tensors)", tensor: name)
        }
        guard t.shape == shape else {
            throw MalError(.invalidShape, "has shape \(t.shape), but the model's spec implies \(shape)", tensor: name)
        }
        return t
    }

    /// A float tensor of `count` elements (norm weights, biases; `shape` when it is not 1-D) as float32.
    func vector(_ name: String, count: Int, shape: [Int]? = nil) throws -> [Float] {
        let t = try tensor(name, shape: shape ?? [count])
        var out = [Float](repeating: 0, count: t.elementCount)
        try t.withBytes { b in try out.withUnsafeMutableBufferPointer { try widenToFloat32(b.baseAddress!, dtype: t.dtype, count: t.elementCount, into: $0.baseAddress!) } }
        return out
    }

    func optionalVector(_ name: String, count: Int) throws -> [Float]? { has(name) ? try vector(name, count: count) : nil }

    /// The Linear weight `base.weight` of shape [rows (out), cols (in)], its FP8 scale grid if any,
    /// and `base.bias` [rows] when `bias` and present.
    func linear(_ base: String, rows: Int, cols: Int, bias: Bool = false) throws -> LinearWeight {
        let t = try tensor(base + ".weight", shape: [rows, cols])
        let scale = byName[base + ".weight"]?.scale.map { try? model.load($0) } ?? nil
        let b = bias ? try optionalVector(base + ".bias", count: rows) : nil
        return try withExtendedLifetime((t, scale)) { try LinearWeight(tensor: t, scale: scale, block: block, bias: b, arena: arena) }
    }
}

/// Memory for the weights the kernels read, in 2 MiB transparent huge pages: decoding reads
/// weights faster from huge pages than from 4 KiB anonymous pages or the mapped page cache
/// (figures in `Docs/PERFORMANCE.md`).
/// Tensors are copied in once at load time (bump allocation, 64-byte aligned).
public final class WeightArena: @unchecked Sendable {
    static let chunk = 64 << 20
    private var blocks: [(UnsafeMutableRawPointer, Int)] = []
    private var used = 0
    public private(set) var bytes = 0

    public init() {}

    deinit { for (p, _) in blocks { p.deallocate() } }

    func copy(_ src: UnsafeRawBufferPointer) throws -> UnsafeRawPointer {
        let dst = try allocate(src.count)
        if let s = src.baseAddress, src.count > 0 { dst.copyMemory(from: s, byteCount: src.count) }
        return UnsafeRawPointer(dst)
    }

    /// `count` bytes, 64-byte aligned, in huge-page memory that lives as long as the arena.
    func allocate(_ count: Int) throws -> UnsafeMutableRawPointer {
        let n = (max(count, 1) + 63) / 64 * 64
        if blocks.isEmpty || used + n > blocks[blocks.count - 1].1 {
            let size = max(WeightArena.chunk, (n + (2 << 20) - 1) / (2 << 20) * (2 << 20))
            let p = try allocateLarge(size)
            blocks.append((p, size))
            used = 0
        }
        let dst = blocks[blocks.count - 1].0 + used
        used += n
        bytes += count
        return dst
    }
}

/// Linear layers of random weights for kernel benchmarks (malbench).
public enum MatvecProbe {
    public static func make(rows: Int, cols: Int) throws -> [(String, LinearWeight)] {
        let arena = WeightArena()
        var out: [(String, LinearWeight)] = []
        for d in [DType.f32, .bf16] {
            let n = rows * cols * (d.byteSize ?? 4)
            let s = try TensorStorage.allocate(count: n)
            memset(UnsafeMutableRawPointer(mutating: s.bytes.baseAddress!), 0x3c, n)
            out.append((d.rawValue, try LinearWeight(tensor: Tensor(name: "w", dtype: d, shape: [rows, cols], storage: s), scale: nil,
                                                     block: .deepseek, bias: nil, arena: arena)))
        }
        let q = try TensorStorage.allocate(count: rows * cols)
        memset(UnsafeMutableRawPointer(mutating: q.bytes.baseAddress!), 0x3c, rows * cols)
        let sc = try TensorStorage.allocate(count: (rows / 128) * (cols / 128) * 4)
        memset(UnsafeMutableRawPointer(mutating: sc.bytes.baseAddress!), 0x3c, (rows / 128) * (cols / 128) * 4)
        out.append(("F8_E4M3", try LinearWeight(tensor: Tensor(name: "w", dtype: .f8e4m3, shape: [rows, cols], storage: q),
                                                scale: Tensor(name: "s", dtype: .f32, shape: [rows / 128, cols / 128], storage: sc),
                                                block: .deepseek, bias: nil, arena: arena)))
        return out
    }
}
