import CMalKernels
import MalCore
#if canImport(Glibc)
import Glibc
#endif

/// How block scales are stored: float32 `amax / 448`, or rounded up to a power of two
/// (`ue8m0`, DeepSeek V3.1's `scale_fmt`): still float32 values, exactly representable as E8M0.
public enum ScaleFormat: String, Sendable, CaseIterable { case f32, ue8m0 }

/// DeepSeek-V3 block quantisation to FP8 E4M3 (DeepSeek-V3 `inference/kernel.py`, `README_WEIGHTS.md`): per block,
/// `amax = max(|W_block|, 1e-4)`, `scale_inv = amax / 448` (float32), `q = e4m3_rne(W_block / scale_inv)`
/// with saturation at ±448; edge blocks are partial. Dequantisation: `float32(q) × scale_inv`.
public enum BlockQuantizer {
    /// Quantises a 2-D float tensor. Returns the E4M3 bytes and the float32 scale grid.
    /// Runs one 128-row band per task on `threads` threads; memory is one float32 band per thread.
    public static func quantize(_ t: Tensor, block: BlockShape, scale: ScaleFormat, threads: Int = availableCores) throws
        -> (q: TensorStorage, scales: TensorStorage, scaleShape: [Int])
    {
        guard t.shape.count == 2 else {
            throw MalError(.invalidArgument, "only 2-D weights are block-quantised, not shape \(t.shape)", tensor: t.name)
        }
        let rows = t.shape[0], cols = t.shape[1]
        let bc = block.width(cols)
        let sshape = block.scaleShape(t.shape)
        let q = try TensorStorage.allocate(count: rows * cols)
        let scales = try TensorStorage.allocate(count: sshape[0] * sshape[1] * 4)
        let qp = SharedPointer(UnsafeMutableRawPointer(mutating: q.bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 64)!))
        let sp = SharedPointer(UnsafeMutableRawPointer(mutating: scales.bytes.baseAddress!))
        let src = SharedPointer(t.bytes)
        let es = t.dtype.byteSize ?? 4
        let dtype = t.dtype, name = t.name, pow2: Int32 = scale == .ue8m0 ? 1 : 0
        let pool = BufferPool(size: block.rows * cols * 4)
        try withExtendedLifetime(t.storage) {
            try parallelFor(sshape[0], threads: threads) { band in
                let r0 = band * block.rows, nr = min(block.rows, rows - r0)
                let raw = src.pointer.baseAddress! + r0 * cols * es
                // F32 bands are read in place; other dtypes are widened into a pooled band buffer
                // (fresh multi-MB allocations would page-fault on every band).
                var pooled: UnsafeMutableRawPointer?
                defer { if let pooled { pool.put(pooled) } }
                let buf: UnsafePointer<Float>
                if dtype == .f32 && Int(bitPattern: raw) % 4 == 0 {
                    buf = raw.assumingMemoryBound(to: Float.self)
                } else {
                    pooled = pool.get()
                    try widenToFloat32(raw, dtype: dtype, count: nr * cols, into: pooled!.assumingMemoryBound(to: Float.self))
                    buf = UnsafePointer(pooled!.assumingMemoryBound(to: Float.self))
                }
                let bad = mal_quantize_band_e4m3(
                    qp.pointer.assumingMemoryBound(to: UInt8.self) + r0 * cols,
                    sp.pointer.assumingMemoryBound(to: Float.self) + band * sshape[1],
                    buf, nr, cols, bc, pow2)
                if bad >= 0 {
                    let i = r0 * cols + bad
                    throw MalError(
                        .nonFiniteValue, "non-finite value \(buf[Int(bad)]) at element \(i) (row \(i / cols), column \(i % cols))",
                        tensor: name)
                }
            }
        }
        return (q, scales, sshape)
    }

    /// A 2-D F8_E4M3 weight and an F32 scale grid of the shape its block gives, or the error
    /// naming both (what every dequantisation checks first).
    public static func checkDequantizable(q: Tensor, scales: Tensor, block: BlockShape) throws {
        try checkDequantizable(name: q.name, dtype: q.dtype, shape: q.shape, scales: scales, block: block)
    }

    /// The same check before the weight's bytes are read (a stream that dequantises as it goes).
    public static func checkDequantizable(name: String, dtype: DType, shape: [Int], scales: Tensor, block: BlockShape) throws {
        guard shape.count == 2, dtype == .f8e4m3 else {
            throw MalError(.unsupported, "dequantisation needs a 2-D F8_E4M3 weight, not \(dtype.rawValue) \(shape)", tensor: name)
        }
        let want = block.scaleShape(shape)
        guard scales.shape == want, scales.dtype == .f32, scales.bytes.count == want[0] * want[1] * 4 else {
            throw MalError(
                .invalidShape, "scale \(scales.name) is \(scales.dtype.rawValue) \(scales.shape); \(block) blocks of \(shape) need F32 \(want)",
                tensor: name)
        }
    }

    /// `float32(q) × scale` for an E4M3 weight and its scale grid. The block shape is taken from
    /// `block` and must agree with the scale grid (transformers derives it from the ratio of shapes,
    /// which is wrong when a dimension is not a multiple of the block).
    public static func dequantize(q: Tensor, scales: Tensor, block: BlockShape, threads: Int = availableCores) throws -> TensorStorage {
        try checkDequantizable(q: q, scales: scales, block: block)
        let out = try TensorStorage.allocate(count: q.elementCount * 4)
        try dequantize(
            q: q, scales: scales, block: block, into: UnsafeMutableRawPointer(mutating: out.bytes.baseAddress!).assumingMemoryBound(to: Float.self),
            threads: threads)
        return out
    }

    /// The same into `out` (`q.elementCount` floats), for a caller that keeps the floats in its own
    /// buffer (MLA absorption), so they are not held twice.
    public static func dequantize(q: Tensor, scales: Tensor, block: BlockShape, into out: UnsafeMutablePointer<Float>, threads: Int = availableCores) throws {
        try checkDequantizable(q: q, scales: scales, block: block)
        let want = block.scaleShape(q.shape)
        let rows = q.shape[0], cols = q.shape[1], bc = block.width(cols)
        let op = SharedPointer(out)
        let qb = SharedPointer(q.bytes), sb = SharedPointer(scales.bytes)
        try withExtendedLifetime((q.storage, scales.storage)) {
            try parallelFor(want[0], threads: threads) { band in
                let r0 = band * block.rows, nr = min(block.rows, rows - r0)
                mal_dequantize_band_e4m3(
                    op.pointer + r0 * cols, qb.pointer.baseAddress!.assumingMemoryBound(to: UInt8.self) + r0 * cols,
                    sb.pointer.baseAddress!.assumingMemoryBound(to: Float.self) + band * want[1], nr, cols, bc)
            }
        }
    }
}

/// Shell-style pattern match (`*`, `?`, `[...]`) for --include / --exclude.
public func globMatch(_ pattern: String, _ name: String) -> Bool { fnmatch(pattern, name, 0) == 0 }
