import CMalKernels
import MalCore

/// One weight block-quantised to E4M3 as a writer reads it: each band of `block.rows` rows is
/// read from the source stream, quantised (`mal_quantize_band_e4m3`, the kernel
/// `BlockQuantizer.quantize` runs, so the bytes are the same) and kept only until the writer has
/// copied all of it, so memory is a few bands whatever the tensor's size. The scale grid fills in
/// as the bands go; `scales()` gives it after the stream (computing any band not read).
final class QuantizingStream: @unchecked Sendable {
    let name: String
    let rows: Int, cols: Int, bc: Int
    let block: BlockShape
    let pow2: Int32
    let source: TensorStream
    let scaleShape: [Int]
    let threads: Int
    private let bandBytes: Int
    private let sourceES: Int

    private struct State {
        /// Quantised bands the writer has not finished copying, with the bytes it has copied.
        var live: [Int: (bytes: UnsafeMutableRawPointer, copied: Int)] = [:]
        var scales: [Float]
        var done: [Bool]
    }
    private let state: LockedBox<State>
    private let buffers: SizedBufferPool

    init(
        name: String, shape: [Int], source: TensorStream, block: BlockShape, scale: ScaleFormat, threads: Int,
        buffers: SizedBufferPool
    ) {
        self.name = name
        self.threads = threads
        rows = shape[0]
        cols = shape[1]
        bc = block.width(cols)
        self.block = block
        pow2 = scale == .ue8m0 ? 1 : 0
        self.source = source
        scaleShape = block.scaleShape(shape)
        bandBytes = block.rows * cols
        sourceES = source.dtype.byteSize ?? 4
        state = LockedBox(State(scales: [Float](repeating: 0, count: scaleShape[0] * scaleShape[1]), done: [Bool](repeating: false, count: scaleShape[0])))
        self.buffers = buffers
    }

    deinit { for (_, b) in state.withLock({ $0.live }) { buffers.put(b.bytes, bytes: bandBytes) } }

    /// Bands quantised and not yet read whole (what the stream holds now).
    var liveBands: Int { state.withLock { $0.live.count } }

    /// Whether `source` can feed this stream: a 2-D float tensor with at least one element.
    static func accepts(_ source: TensorStream, shape: [Int]) -> Bool {
        shape.count == 2 && shape[0] > 0 && shape[1] > 0 && [.f32, .f16, .bf16].contains(source.dtype)
            && elementCount(shape).flatMap { source.dtype.byteCount(elements: $0) } == source.byteCount
    }

    var stream: TensorStream {
        TensorStream(dtype: .f8e4m3, byteCount: rows * cols, fill: { [self] off, n, dst in try fill(off, n, dst) }, release: { _ in })
    }

    /// Quantises band `b` into `q` (its `nr × cols` bytes) and `scales` (its row of the grid).
    private func quantize(band b: Int, into q: UnsafeMutablePointer<UInt8>, scales: UnsafeMutablePointer<Float>) throws {
        let r0 = b * block.rows, nr = min(block.rows, rows - r0)
        let f = buffers.get(nr * cols * 4)
        defer { buffers.put(f, bytes: nr * cols * 4) }
        let x = f.assumingMemoryBound(to: Float.self)
        let off = r0 * cols * sourceES, n = nr * cols * sourceES
        if source.dtype == .f32 {
            try source.fill(off, n, f)
        } else {
            let r = buffers.get(n)
            defer { buffers.put(r, bytes: n) }
            try source.fill(off, n, r)
            try widenToFloat32(r, dtype: source.dtype, count: nr * cols, into: x)
        }
        source.releaseRead(off..<(off + n))
        let bad = mal_quantize_band_e4m3(q, scales, x, nr, cols, bc, pow2)
        if bad >= 0 {
            let i = r0 * cols + bad
            throw MalError(
                .nonFiniteValue, "non-finite value \(x[Int(bad)]) at element \(i) (row \(i / cols), column \(i % cols))", tensor: name)
        }
    }

    /// The band's bytes, quantised now unless another reader has them live. Two readers racing
    /// for one band both compute it (the same bytes); the first kept wins.
    private func band(_ b: Int) throws -> UnsafeMutableRawPointer {
        if let live = state.withLock({ $0.live[b]?.bytes }) { return live }
        let q = buffers.get(bandBytes)
        var row = [Float](repeating: 0, count: scaleShape[1])
        do {
            try row.withUnsafeMutableBufferPointer { try quantize(band: b, into: q.assumingMemoryBound(to: UInt8.self), scales: $0.baseAddress!) }
        } catch {
            buffers.put(q, bytes: bandBytes)
            throw error
        }
        let kept = state.withLock { s -> UnsafeMutableRawPointer in
            if let other = s.live[b]?.bytes { return other }
            s.live[b] = (q, 0)
            if !s.done[b] {
                s.done[b] = true
                for (j, v) in row.enumerated() { s.scales[b * scaleShape[1] + j] = v }
            }
            return q
        }
        if kept != q { buffers.put(q, bytes: bandBytes) }
        return kept
    }

    private func fill(_ offset: Int, _ count: Int, _ dst: UnsafeMutableRawPointer) throws {
        // A reader asking for many bands at once (the HF writer's 16 MiB pieces) has them
        // quantised on all cores, two per thread at a time (so a few bands are held, not the
        // piece's); the container writer's 1 MiB chunks, filled in parallel already, take their
        // few bands on their own thread.
        let lastBand = (offset + max(count, 1) - 1) / bandBytes
        var at = offset
        while at < offset + count {
            let b = at / bandBytes, start = b * bandBytes, end = min(rows * cols, start + bandBytes)
            if lastBand - b >= 4 && state.withLock({ $0.live[b] == nil }) {
                try parallelFor(min(lastBand - b + 1, 2 * threads), threads: threads) { _ = try band(b + $0) }
            }
            let take = min(end, offset + count) - at
            let bytes = try band(b)
            (dst + (at - offset)).copyMemory(from: bytes + (at - start), byteCount: take)
            // Counted after the copy, so no other reader can free the band while this one reads.
            let finished = state.withLock { s -> UnsafeMutableRawPointer? in
                guard var e = s.live[b] else { return nil }
                e.copied += take
                if e.copied >= end - start {
                    s.live[b] = nil
                    return e.bytes
                }
                s.live[b] = e
                return nil
            }
            if let finished { buffers.put(finished, bytes: bandBytes) }
            at += take
        }
    }

    /// The scale grid (float32, `scaleShape`); bands the stream did not reach are quantised for it.
    func scales() throws -> TensorStorage {
        let missing = state.withLock { s in (0..<scaleShape[0]).filter { !s.done[$0] } }
        if !missing.isEmpty {  // on all cores, a band per task (the grid alone: nothing read yet)
            try parallelFor(missing.count, threads: threads) { [self] i in
                let b = missing[i], raw = buffers.get(bandBytes)
                defer { buffers.put(raw, bytes: bandBytes) }
                var row = [Float](repeating: 0, count: scaleShape[1])
                try row.withUnsafeMutableBufferPointer { try quantize(band: b, into: raw.assumingMemoryBound(to: UInt8.self), scales: $0.baseAddress!) }
                state.withLock { s in
                    for (j, v) in row.enumerated() { s.scales[b * scaleShape[1] + j] = v }
                    s.done[b] = true
                }
            }
        }
        let out = try TensorStorage.allocate(count: scaleShape[0] * scaleShape[1] * 4)
        state.withLock { s in
            s.scales.withUnsafeBytes { UnsafeMutableRawPointer(mutating: out.bytes.baseAddress!).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
        return out
    }
}

/// One E4M3 weight turned back into F32 or BF16 as a writer reads it: each range of output
/// elements reads the rows of E4M3 bytes that hold it from the source stream and multiplies them
/// by their blocks' scales (`mal_dequantize_band_e4m3`, as `BlockQuantizer.dequantize`; BF16 is
/// rounded from that float32, as `DequantizedModel.load` rounds it), so memory is a chunk's rows.
struct DequantizingStream: Sendable {
    let rows: Int, cols: Int, bc: Int
    let block: BlockShape
    let dtype: DType
    let source: TensorStream
    let scales: Tensor
    let threads: Int
    let buffers: SizedBufferPool

    init(q: [Int], source: TensorStream, scales: Tensor, block: BlockShape, dtype: DType, threads: Int, buffers: SizedBufferPool) {
        self.threads = threads
        self.buffers = buffers
        rows = q[0]
        cols = q[1]
        bc = block.width(cols)
        self.block = block
        self.dtype = dtype
        self.source = source
        self.scales = scales
    }

    var stream: TensorStream {
        let me = self
        return TensorStream(dtype: dtype, byteCount: rows * cols * (dtype.byteSize ?? 4), fill: { off, n, dst in try me.fill(off, n, dst) }, release: { _ in })
    }

    /// A large range (the HF writer's 16 MiB pieces) in 1 MiB pieces on all cores.
    private func fill(_ offset: Int, _ count: Int, _ dst: UnsafeMutableRawPointer) throws {
        let piece = 1 << 20
        guard count > 4 * piece else { return try fillPiece(offset, count, dst) }
        let d = SharedPointer(dst)
        try parallelFor((count + piece - 1) / piece, threads: threads) { i in
            try fillPiece(offset + i * piece, min(piece, count - i * piece), d.pointer + i * piece)
        }
    }

    private func fillPiece(_ offset: Int, _ count: Int, _ dst: UnsafeMutableRawPointer) throws {
        guard count > 0 else { return }
        let es = dtype.byteSize ?? 4
        // The elements the byte range touches (a range need not start or end on one), and their rows.
        let e0 = offset / es, e1 = (offset + count + es - 1) / es
        let ra = e0 / cols, rb = (e1 - 1) / cols + 1
        let n = (rb - ra) * cols
        let q = buffers.get(n), yb = buffers.get(n * 4)
        defer {
            buffers.put(q, bytes: n)
            buffers.put(yb, bytes: n * 4)
        }
        let y = yb.assumingMemoryBound(to: Float.self)
        try source.fill(ra * cols, (rb - ra) * cols, q)
        source.release((ra * cols)..<(rb * cols))
        let grid = scales.shape[1]
        try withExtendedLifetime(scales.storage) {
            let s = scales.bytes.baseAddress!.assumingMemoryBound(to: Float.self)
            var r = ra
            while r < rb {  // one block row's scales at a time
                let b = r / block.rows, end = min(rb, (b + 1) * block.rows)
                mal_dequantize_band_e4m3(
                    y + (r - ra) * cols, q.assumingMemoryBound(to: UInt8.self) + (r - ra) * cols, s + b * grid, end - r, cols, bc)
                r = end
            }
            let skip = offset - e0 * es  // bytes of the first element before the range
            if dtype == .f32 {
                dst.copyMemory(from: UnsafeRawPointer(y + (e0 - ra * cols)) + skip, byteCount: count)
            } else if skip == 0 && count % es == 0 {
                FloatCast.cast(y + (e0 - ra * cols), from: .f32, dst, to: dtype, count: count / es, scratch: nil)
            } else {
                let out = buffers.get((e1 - e0) * es)
                defer { buffers.put(out, bytes: (e1 - e0) * es) }
                FloatCast.cast(y + (e0 - ra * cols), from: .f32, out, to: dtype, count: e1 - e0, scratch: nil)
                dst.copyMemory(from: out + skip, byteCount: count)
            }
        }
    }
}
