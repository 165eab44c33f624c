import CMalKernels
import MalCore
import MalTransforms
#if canImport(Glibc)
import Glibc
#endif

/// Error metrics of a candidate tensor against a reference (both widened to float32).
public struct TensorMetrics: Codable, Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    public var referenceDType: String
    public var candidateDType: String
    public var elements: Int
    public var maxAbsError: Double
    public var rmse: Double
    /// RMSE / RMS of the reference.
    public var relativeRMSE: Double
    /// 10·log10(Σ ref² / Σ err²); +inf when identical.
    public var snrDB: Double
    public var cosine: Double
    /// Share of elements whose error exceeds half an E4M3 step at their magnitude in their block's
    /// scale (the round-to-nearest bound, plus 2^-22 |x| for the float32 arithmetic of `x / s` and
    /// `q · s`); nil when the candidate is not block-quantised.
    public var overE4M3Bound: Double?
    /// Sums kept for totals.
    public var sumSquaredError: Double
    public var sumSquaredReference: Double
}

/// Compares two models tensor by tensor (matched by canonical name; quantised tensors are
/// dequantised first). Streams one tensor pair at a time.
public enum ModelComparison {
    public struct Report: Codable, Sendable {
        public var tensors: [TensorMetrics]
        public var onlyInReference: [String]
        public var onlyInCandidate: [String]
        public var shapeMismatches: [String]
        public var total: TensorMetrics
    }

    public static func compare(
        reference: CanonicalModel, candidate: CanonicalModel, threads: Int = availableCores,
        progress: ((Int, Int, String) -> Void)? = nil
    ) throws -> Report {
        let refScales = Set(reference.tensors.compactMap(\.scale)), candScales = Set(candidate.tensors.compactMap(\.scale))
        let refNames = reference.tensors.filter { !refScales.contains($0.name) && !$0.name.hasPrefix("aux/") }
        let candByName = Dictionary(candidate.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let refByName = Set(refNames.map(\.name))
        var out: [TensorMetrics] = []
        var mismatched: [String] = []
        for (i, r) in refNames.enumerated() {
            guard let c = candByName[r.name] else { continue }
            guard c.shape == r.shape else { mismatched.append(r.name); continue }
            progress?(i, refNames.count, r.name)
            let ra = try FloatRows(reference, r, block: r.block ?? .modelDefault(reference.spec))
            let rb = try FloatRows(candidate, c, block: c.block ?? .modelDefault(candidate.spec))
            var acc = MetricsAccumulator(shape: r.shape, scales: rb.scaleValues, block: rb.block)
            // A band of rows at a time (a multiple of both block heights): the comparison holds the
            // two stored tensors and one float32 band of each, never two float32 copies.
            let step = ra.bandRows(rb)
            var r0 = 0
            repeat {
                let r1 = min(ra.rows, r0 + step)
                acc.add(try ra.band(r0, r1, threads: threads), try rb.band(r0, r1, threads: threads), offset: r0 * ra.cols)
                r0 = r1
            } while r0 < ra.rows
            out.append(acc.result(name: r.name, refType: r.dtype, candType: c.dtype))
        }
        progress?(refNames.count, refNames.count, "")
        let onlyRef = refNames.map(\.name).filter { candByName[$0] == nil }
        let onlyCand = candidate.tensors.map(\.name).filter { !refByName.contains($0) && !candScales.contains($0) && !$0.hasPrefix("aux/") }
        return Report(tensors: out, onlyInReference: onlyRef, onlyInCandidate: onlyCand, shapeMismatches: mismatched, total: totals(out))
    }

    static func totals(_ t: [TensorMetrics]) -> TensorMetrics {
        let n = t.reduce(0) { $0 + $1.elements }
        let see = t.reduce(0.0) { $0 + $1.sumSquaredError }, srr = t.reduce(0.0) { $0 + $1.sumSquaredReference }
        let rmse = (see / Double(max(n, 1))).squareRoot()
        let quantised = t.filter { $0.overE4M3Bound != nil }
        let overCount = quantised.reduce(0.0) { $0 + ($1.overE4M3Bound ?? 0) * Double($1.elements) }
        let qn = quantised.reduce(0) { $0 + $1.elements }
        return TensorMetrics(
            name: "TOTAL", shape: [], referenceDType: "", candidateDType: "", elements: n,
            maxAbsError: t.map(\.maxAbsError).max() ?? 0, rmse: rmse,
            relativeRMSE: srr > 0 ? (see / srr).squareRoot() : 0, snrDB: see > 0 ? 10 * log10(srr / see) : .infinity,
            cosine: t.isEmpty ? 1 : t.map(\.cosine).min()!, overE4M3Bound: qn > 0 ? overCount / Double(qn) : nil,
            sumSquaredError: see, sumSquaredReference: srr)
    }
}

/// A tensor's values as float32, a band of rows at a time, dequantised when it has a scale grid
/// (`float32(q) × scale_inv` of its block, as `BlockQuantizer.dequantize`). Its bytes are read
/// band by band from the model's stream when it has one (a container's chunks, a checkpoint's
/// mapping), so a comparison holds one band of each side, not the stored tensors.
struct FloatRows {
    let dtype: DType
    let scales: Tensor?
    let block: BlockShape
    let rows: Int, cols: Int
    /// Bytes `[offset, offset + count)` of the stored tensor into the buffer.
    private let read: (Int, Int, UnsafeMutableRawPointer) throws -> Void

    init(_ m: CanonicalModel, _ t: CanonicalTensor, block: BlockShape) throws {
        if let s = try m.stream(t.name), s.dtype == t.dtype, s.byteCount == t.byteCount {
            dtype = s.dtype
            read = { offset, count, into in
                try s.fill(offset, count, into)
                s.releaseRead(offset..<(offset + count))
            }
        } else {
            let tensor = try m.load(t.name)
            guard tensor.dtype == t.dtype, tensor.bytes.count == t.byteCount else {
                throw MalError(
                    .invalidShape, "holds \(tensor.bytes.count) bytes of \(tensor.dtype.rawValue); \(t.dtype.rawValue) \(t.shape) needs \(t.byteCount ?? -1)",
                    tensor: t.name)
            }
            dtype = tensor.dtype
            read = { offset, count, into in tensor.withBytes { into.copyMemory(from: $0.baseAddress! + offset, byteCount: count) } }
        }
        self.block = block
        let n = elementCount(t.shape) ?? 0
        rows = t.shape.count == 2 ? t.shape[0] : 1
        cols = t.shape.count == 2 ? t.shape[1] : n
        guard let s = t.scale else { scales = nil; return }
        let grid = try m.load(s)
        try BlockQuantizer.checkDequantizable(name: t.name, dtype: dtype, shape: t.shape, scales: grid, block: block)
        scales = grid
    }

    var scaleValues: [Float]? { scales?.withBytes { Array($0.bindMemory(to: Float.self)) } }

    /// Rows per band for comparing with `other`: about 1M values, a multiple of both block heights
    /// (their least common multiple).
    func bandRows(_ other: FloatRows) -> Int {
        func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
        let a = scales == nil ? 1 : block.rows, b = other.scales == nil ? 1 : other.block.rows
        let unit = a / gcd(a, b) * b
        return max(unit, (1 << 20) / max(cols, 1) / unit * unit)
    }

    /// Rows [r0, r1) as float32.
    func band(_ r0: Int, _ r1: Int, threads: Int) throws -> [Float] {
        var out = [Float](repeating: 0, count: (r1 - r0) * cols)
        let es = dtype.byteSize ?? 4
        let stored = UnsafeMutableRawPointer.allocate(byteCount: max(out.count * es, 1), alignment: 64)
        defer { stored.deallocate() }
        try read(r0 * cols * es, out.count * es, stored)
        try out.withUnsafeMutableBufferPointer { o in
            guard let scales else { return try widenToFloat32(stored, dtype: dtype, count: o.count, into: o.baseAddress!) }
            let bc = block.width(cols), sCols = (cols + bc - 1) / bc
            let q = stored.assumingMemoryBound(to: UInt8.self)
            scales.withBytes { s in
                let grid = s.baseAddress!.assumingMemoryBound(to: Float.self)
                var r = r0
                while r < r1 {
                    // Up to the next block row (a band need not start on one).
                    let nr = min(block.rows - r % block.rows, r1 - r)
                    let y: UnsafeMutablePointer<Float> = o.baseAddress! + (r - r0) * cols
                    mal_dequantize_band_e4m3(y, q + (r - r0) * cols, grid + (r / block.rows) * sCols, nr, cols, bc)
                    r += nr
                }
            }
        }
        return out
    }
}

/// The sums of `TensorMetrics`, taken band by band in element order (so the figures do not depend
/// on the band size).
struct MetricsAccumulator {
    let shape: [Int]
    let scales: [Float]?
    let block: BlockShape
    var maxErr = 0.0, see = 0.0, srr = 0.0, scc = 0.0, sab = 0.0
    var over = 0, count = 0

    init(shape: [Int], scales: [Float]?, block: BlockShape) {
        self.shape = shape
        self.scales = scales
        self.block = block
    }

    mutating func add(_ a: [Float], _ b: [Float], offset: Int) {
        let cols = shape.count == 2 ? shape[1] : max(a.count, 1)
        let bc = block.width(cols)
        let sCols = shape.count == 2 ? (cols + bc - 1) / bc : 1
        for k in a.indices {
            let i = offset + k
            let x = Double(a[k]), y = Double(b[k]), e = y - x
            maxErr = max(maxErr, abs(e))
            see += e * e; srr += x * x; scc += y * y; sab += x * y
            if let scales, shape.count == 2 {
                let s = Double(scales[(i / cols) / block.rows * sCols + (i % cols) / bc])
                // Half a step of E4M3 at |x|/s (3 mantissa bits; subnormal step 2^-9), in units of s.
                let v = abs(x) / s
                let half = Self.halfStep(v) * s
                // Plus float32 rounding of x/s and of q·s (the reference quantiser's own arithmetic:
                // a quotient that rounds onto a tie is resolved to even).
                if abs(e) > half + abs(x) * 0x1p-22 + 1e-30 { over += 1 }
            }
        }
        count += a.count
    }

    /// Half an E4M3 step at v (in units of the scale): 2^(⌊log2 v⌋ - 4), with ⌊log2 v⌋ = -6
    /// below 2^-6 (subnormal steps). The exponent field gives ⌊log2 v⌋ exactly; within 2^-30 of a
    /// power of two (and for a non-finite v) libm's `log2` and `pow` decide, as they did for every
    /// element before, so every figure stays the same: they were half the comparison's time.
    static func halfStep(_ v: Double) -> Double {
        if !(v >= 0.015625) { return 0x1p-10 }  // NaN too, as before
        let m = v.significand
        guard v.isFinite, m > 1 + 0x1p-30, m < 2 - 0x1p-30 else { return pow(2.0, floor(log2(v)) - 4) }
        return Double(sign: .plus, exponent: v.exponent - 4, significand: 1)
    }

    func result(name: String, refType: DType, candType: DType) -> TensorMetrics {
        let n = Double(max(count, 1))
        let rmse = (see / n).squareRoot()
        return TensorMetrics(
            name: name, shape: shape, referenceDType: refType.rawValue, candidateDType: candType.rawValue,
            elements: count, maxAbsError: maxErr, rmse: rmse,
            relativeRMSE: srr > 0 ? rmse / (srr / n).squareRoot() : (see > 0 ? .infinity : 0),
            snrDB: see > 0 ? 10 * log10(srr / see) : .infinity,
            cosine: srr > 0 && scc > 0 ? sab / (srr.squareRoot() * scc.squareRoot()) : (see == 0 ? 1 : 0),
            overE4M3Bound: scales != nil && shape.count == 2 ? Double(over) / n : nil,
            sumSquaredError: see, sumSquaredReference: srr)
    }
}
