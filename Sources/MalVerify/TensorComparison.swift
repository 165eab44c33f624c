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
            let candBlock = c.block ?? .modelDefault(candidate.spec)
            let a = try floatValues(reference, r, block: r.block ?? .modelDefault(reference.spec), threads: threads)
            let (b, scales) = try floatValuesAndScales(candidate, c, block: candBlock, threads: threads)
            out.append(
                metrics(
                    name: r.name, shape: r.shape, refType: r.dtype, candType: c.dtype, a: a, b: b, scales: scales,
                    block: candBlock))
        }
        progress?(refNames.count, refNames.count, "")
        let onlyRef = refNames.map(\.name).filter { candByName[$0] == nil }
        let onlyCand = candidate.tensors.map(\.name).filter { !refByName.contains($0) && !candScales.contains($0) && !$0.hasPrefix("aux/") }
        return Report(tensors: out, onlyInReference: onlyRef, onlyInCandidate: onlyCand, shapeMismatches: mismatched, total: totals(out))
    }

    static func floatValues(_ m: CanonicalModel, _ t: CanonicalTensor, block: BlockShape, threads: Int) throws -> [Float] {
        try floatValuesAndScales(m, t, block: block, threads: threads).values
    }

    /// The tensor as float32 (dequantised when it has a scale) and its scale grid, if any.
    static func floatValuesAndScales(_ m: CanonicalModel, _ t: CanonicalTensor, block: BlockShape, threads: Int) throws
        -> (values: [Float], scales: [Float]?)
    {
        let x = try m.load(t.name)
        if let s = t.scale {
            let st = try m.load(s)
            let f = try BlockQuantizer.dequantize(q: x, scales: st, block: block, threads: threads)
            let values = withExtendedLifetime(f) { Array(f.bytes.bindMemory(to: Float.self)) }
            return (values, st.withBytes { Array($0.bindMemory(to: Float.self)) })
        }
        var out = [Float](repeating: 0, count: x.elementCount)
        try x.withBytes { b in
            try out.withUnsafeMutableBufferPointer { try widenToFloat32(b.baseAddress!, dtype: x.dtype, count: x.elementCount, into: $0.baseAddress!) }
        }
        return (out, nil)
    }

    static func metrics(
        name: String, shape: [Int], refType: DType, candType: DType, a: [Float], b: [Float], scales: [Float]?,
        block: BlockShape
    ) -> TensorMetrics {
        var maxErr = 0.0, see = 0.0, srr = 0.0, scc = 0.0, sab = 0.0
        var over = 0
        let cols = shape.count == 2 ? shape[1] : max(a.count, 1)
        let bc = block.width(cols)
        let sCols = shape.count == 2 ? (cols + bc - 1) / bc : 1
        for i in a.indices {
            let x = Double(a[i]), y = Double(b[i]), e = y - x
            maxErr = max(maxErr, abs(e))
            see += e * e; srr += x * x; scc += y * y; sab += x * y
            if let scales, shape.count == 2 {
                let s = Double(scales[(i / cols) / block.rows * sCols + (i % cols) / bc])
                // Half a step of E4M3 at |x|/s (3 mantissa bits; subnormal step 2^-9), in units of s.
                let v = abs(x) / s
                let exp = v >= 0.015625 ? floor(log2(v)) : -6
                let half = pow(2.0, exp - 4) * s
                // Plus float32 rounding of x/s and of q·s (the reference quantiser's own arithmetic:
                // a quotient that rounds onto a tie is resolved to even).
                if abs(e) > half + abs(x) * 0x1p-22 + 1e-30 { over += 1 }
            }
        }
        let n = Double(max(a.count, 1))
        let rmse = (see / n).squareRoot()
        return TensorMetrics(
            name: name, shape: shape, referenceDType: refType.rawValue, candidateDType: candType.rawValue,
            elements: a.count, maxAbsError: maxErr, rmse: rmse,
            relativeRMSE: srr > 0 ? rmse / (srr / n).squareRoot() : (see > 0 ? .infinity : 0),
            snrDB: see > 0 ? 10 * log10(srr / see) : .infinity,
            cosine: srr > 0 && scc > 0 ? sab / (srr.squareRoot() * scc.squareRoot()) : (see == 0 ? 1 : 0),
            overE4M3Bound: scales != nil && shape.count == 2 ? Double(over) / n : nil,
            sumSquaredError: see, sumSquaredReference: srr)
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
