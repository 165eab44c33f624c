import Foundation
import MalCore
import MalReaders
import MalTestSupport
import MalWriters
import Testing

@testable import MalTransforms
@testable import MalVerify

/// A tensor in memory as a stream (what a checkpoint or container hands a transform).
func memoryStream(_ t: Tensor) -> TensorStream {
    TensorStream(
        dtype: t.dtype, byteCount: t.bytes.count,
        fill: { off, n, dst in t.withBytes { dst.copyMemory(from: $0.baseAddress! + off, byteCount: n) } }, release: { _ in })
}

/// Random normal-ish values with a few large ones, as float32 or rounded to BF16.
func randomTensor(_ shape: [Int], dtype: DType, seed: UInt64) throws -> Tensor {
    var rng = SplitMix64(seed: seed)
    let n = shape.reduce(1, *)
    var x = (0..<n).map { _ in Float(Double(rng.next() >> 11) / Double(1 << 53) - 0.5) * 0.1 }
    for _ in 0..<max(1, n / 500) { x[Int(rng.next() % UInt64(n))] *= 40 }
    let f = x.withUnsafeBytes { Tensor(name: "w", dtype: .f32, shape: shape, storage: TensorStorage(copying: $0)) }
    guard dtype == .bf16 else { return f }
    let out = try TensorStorage.allocate(count: n * 2)
    f.withBytes { FloatCast.cast($0.baseAddress!, from: .f32, UnsafeMutableRawPointer(mutating: out.bytes.baseAddress!), to: .bf16, count: n, scratch: nil) }
    return Tensor(name: "w", dtype: .bf16, shape: shape, storage: out)
}

/// A storage's bytes, copied while it is alive.
func bytes(_ s: TensorStorage) -> [UInt8] { withExtendedLifetime(s) { Array(s.bytes) } }

/// Reads a stream in `piece`-byte pieces in a scrambled order on two threads (as the container
/// writer fills its chunks), returning its bytes.
func readScrambled(_ s: TensorStream, piece: Int, seed: UInt64) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: s.byteCount)
    let pieces = (s.byteCount + piece - 1) / piece
    var order = Array(0..<pieces)
    var rng = SplitMix64(seed: seed)
    for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
    try out.withUnsafeMutableBytes { b in
        let base = SharedPointer(b.baseAddress!)
        let ord = order
        try parallelFor(pieces, threads: 2) { k in
            let i = ord[k], off = i * piece
            try s.fill(off, min(piece, s.byteCount - off), base.pointer + off)
        }
    }
    return out
}

@Suite("Transforms streamed band by band")
struct BandStreamTests {
    static let shapes: [[Int]] = [[300, 260], [129, 1000], [1, 5], [257, 128], [640, 96]]
    static let blocks = [BlockShape.deepseek, BlockShape("1x128")!, BlockShape("per-channel")!, BlockShape("100x64")!]

    /// Every shape, block, scale format, source dtype and read pattern gives the whole-tensor
    /// quantiser's bytes and scale grid exactly; the scale grid is right when no byte was read too.
    @Test func quantizingStreamEqualsTheWholeTensorQuantizer() throws {
        var seed: UInt64 = 1
        for shape in Self.shapes {
            for block in Self.blocks {
                for scale in ScaleFormat.allCases {
                    for dtype in [DType.f32, .bf16] {
                        seed += 1
                        let t = try randomTensor(shape, dtype: dtype, seed: seed)
                        let want = try BlockQuantizer.quantize(t, block: block, scale: scale, threads: 2)
                        for piece in [7, 777, 4096, 1 << 20] {
                            let s = QuantizingStream(
                                name: "w", shape: shape, source: memoryStream(t), block: block, scale: scale, threads: 2, buffers: SizedBufferPool())
                            let got = try readScrambled(s.stream, piece: piece, seed: seed)
                            #expect(got == Array(want.q.bytes), "\(shape) \(block) \(scale) \(dtype) piece \(piece)")
                            #expect(try bytes(s.scales()) == Array(want.scales.bytes))
                            #expect(s.liveBands == 0, "every band was read whole, so none is held")
                        }
                        let unread = QuantizingStream(
                            name: "w", shape: shape, source: memoryStream(t), block: block, scale: scale, threads: 2, buffers: SizedBufferPool())
                        #expect(try bytes(unread.scales()) == Array(want.scales.bytes))
                    }
                }
            }
        }
    }

    /// Read in order in 1 MiB chunks (the container writer's), at most the bands under two chunks
    /// are held, whatever the tensor's size: the memory bound of `malconv quantize`.
    @Test func quantizingStreamHoldsAFewBands() throws {
        let t = try randomTensor([2048, 1536], dtype: .bf16, seed: 9)
        let s = QuantizingStream(name: "w", shape: t.shape, source: memoryStream(t), block: .deepseek, scale: .f32, threads: 2, buffers: SizedBufferPool())
        let chunk = 1 << 20
        let buf = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buf.deallocate() }
        var most = 0
        for off in stride(from: 0, to: s.stream.byteCount, by: chunk) {
            try s.stream.fill(off, min(chunk, s.stream.byteCount - off), buf)
            most = max(most, s.liveBands)
        }
        #expect(most <= 1 && s.liveBands == 0, "\(most)")
    }

    @Test func quantizingStreamNamesANonFiniteElement() throws {
        var values = [Float](repeating: 0.5, count: 300 * 40)
        values[200 * 40 + 7] = .infinity
        let t = values.withUnsafeBytes { Tensor(name: "w", dtype: .f32, shape: [300, 40], storage: TensorStorage(copying: $0)) }
        let s = QuantizingStream(
            name: "blk.3.ffn_up.weight", shape: [300, 40], source: memoryStream(t), block: .deepseek, scale: .f32, threads: 2, buffers: SizedBufferPool())
        let e = try #require(throws: MalError.self) { _ = try readScrambled(s.stream, piece: 4096, seed: 3) }
        #expect(e.kind == .nonFiniteValue && e.tensor == "blk.3.ffn_up.weight" && e.description.contains("element 8007 (row 200, column 7)"), "\(e)")
    }

    /// The streamed dequantisation gives `BlockQuantizer.dequantize`'s float32 (and its BF16
    /// rounding) for every range, row-aligned or not.
    @Test func dequantizingStreamEqualsTheWholeTensorDequantizer() throws {
        var seed: UInt64 = 100
        for shape in Self.shapes + [[1200, 1500]] {  // the last one is read in pieces on all cores
            for block in Self.blocks {
                seed += 1
                let t = try randomTensor(shape, dtype: .f32, seed: seed)
                let r = try BlockQuantizer.quantize(t, block: block, scale: .f32)
                let q = Tensor(name: "w", dtype: .f8e4m3, shape: shape, storage: r.q)
                let grid = Tensor(name: "s", dtype: .f32, shape: r.scaleShape, storage: r.scales)
                let f32 = try BlockQuantizer.dequantize(q: q, scales: grid, block: block)
                let n = shape.reduce(1, *)
                let bf16 = try TensorStorage.allocate(count: n * 2)
                FloatCast.cast(
                    f32.bytes.baseAddress!, from: .f32, UnsafeMutableRawPointer(mutating: bf16.bytes.baseAddress!), to: .bf16, count: n, scratch: nil)
                for (dtype, want) in [(DType.f32, f32), (.bf16, bf16)] {
                    for piece in (n < 1 << 20 ? [4, 1000] : [12_345]) + [6 << 20] {
                        let s = DequantizingStream(
                            q: shape, source: memoryStream(q), scales: grid, block: block, dtype: dtype, threads: 2, buffers: SizedBufferPool()
                        ).stream
                        #expect(try readScrambled(s, piece: piece, seed: seed) == Array(want.bytes), "\(shape) \(block) \(dtype) \(piece)")
                    }
                }
            }
        }
    }

    /// Whole models through the container writer with small chunks (so bands straddle chunks and
    /// chunks are filled out of order): quantize, then dequantize, then the tensor comparison,
    /// each streamed, equal the whole-tensor path.
    @Test func streamedTransformsEqualTheWholeTensorPath() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let base = try HFCanonicalModel(model: try HFModel(path: Fixtures.model("deepseek-v3-tiny")))
        var options = MalWriter.Options()
        options.chunkSize = MalFormat.minChunkSize + 8  // 4104: bands straddle chunks
        options.threads = 2
        let q = try QuantizedModel(base: base)
        _ = try ContainerExport.write(q, to: dir + "/q.mal", options: options, command: "test", optionValues: [:])
        let stored = try MalFile(path: dir + "/q.mal")
        let whole = LoadOnly(try QuantizedModel(base: base))  // the whole-tensor quantiser
        var quantised = 0
        for t in whole.tensors {
            #expect(try stored.load(t.name).byteArray == whole.load(t.name).byteArray, "\(t.name)")
            if t.dtype == .f8e4m3 { quantised += 1 }
        }
        #expect(quantised > 20)
        for dtype in [DType.bf16, .f32] {
            let d = try DequantizedModel(base: stored, dtype: dtype)
            _ = try ContainerExport.write(d, to: dir + "/d.mal", options: options, command: "test", optionValues: [:])
            let back = try MalFile(path: dir + "/d.mal")
            let wholeD = LoadOnly(try DequantizedModel(base: try MalFile(path: dir + "/q.mal"), dtype: dtype))
            for t in wholeD.tensors { #expect(try back.load(t.name).byteArray == wholeD.load(t.name).byteArray, "\(t.name) \(dtype)") }
            try FileManager.default.removeItem(atPath: dir + "/d.mal")
        }
        // Compared through streams (a container) and through whole tensors (an in-memory model).
        let streamed = try ModelComparison.compare(reference: base, candidate: stored)
        let loaded = try ModelComparison.compare(reference: LoadOnly(base), candidate: LoadOnly(try QuantizedModel(base: base)))
        #expect(streamed.tensors == loaded.tensors)
        #expect(streamed.tensors.contains { $0.overE4M3Bound != nil })
    }
}

/// A model seen through `load` only (no streams): the whole-tensor path of every consumer.
final class LoadOnly: CanonicalModel {
    let base: CanonicalModel
    init(_ base: CanonicalModel) { self.base = base }
    var spec: ModelSpec { base.spec }
    var hfNamePrefix: String? { base.hfNamePrefix }
    var tensors: [CanonicalTensor] { base.tensors }
    func load(_ name: String) throws -> Tensor { try base.load(name) }
    var auxNames: [String] { base.auxNames }
    func aux(_ name: String) throws -> [UInt8]? { try base.aux(name) }
}

/// The E4M3 half step of `verify` from the exponent field is libm's `pow(2, floor(log2 v) - 4)`
/// bit for bit: random values over the whole range, values within a few ulps of powers of two
/// on both sides, the subnormal range's floor, zero, infinity and NaN.
@Test func halfStepIsLibmsBitForBit() {
    func libm(_ v: Double) -> Double { pow(2.0, (v >= 0.015625 ? floor(log2(v)) : -6) - 4) }
    var rng = SplitMix64(seed: 5)
    var values: [Double] = [0, 0.015625, 0.015625.nextDown, .infinity, .nan, .greatestFiniteMagnitude, 448, 1, 2, 3]
    for e in -8...130 {
        var p = Double(sign: .plus, exponent: e, significand: 1)
        for _ in 0..<40 { values.append(p); p = p.nextDown }
        p = Double(sign: .plus, exponent: e, significand: 1)
        for _ in 0..<40 { values.append(p); p = p.nextUp }
    }
    for _ in 0..<200_000 { values.append(Double(bitPattern: rng.next() >> 2 | 0x3F00_0000_0000_0000) * 0x1p64) }
    for _ in 0..<200_000 { values.append(Double(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()) & 0x7FFF_FFFF))) }
    var checked = 0
    for v in values {
        let a = MetricsAccumulator.halfStep(v), b = libm(v)
        #expect(a.bitPattern == b.bitPattern || (a.isNaN && b.isNaN), "\(v): \(a) vs \(b)")
        checked += 1
    }
    #expect(checked > 400_000)
}
