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
    let keep: [TensorStorage]
    public var bias: [Float]?

    var kernelType: Int32 {
        switch dtype {
        case .bf16: return Int32(MAL_W_BF16)
        case .f16: return Int32(MAL_W_F16)
        case .f8e4m3: return Int32(MAL_W_E4M3)
        default: return Int32(MAL_W_F32)
        }
    }

    /// Bytes read per use (weights + scales): what bounds decoding speed.
    public var byteCount: Int { rows * cols * (dtype.byteSize ?? 4) + (scales != nil ? ((rows + blockRows - 1) / blockRows) * ((cols + blockCols - 1) / blockCols) * 4 : 0) }

    init(tensor t: Tensor, scale: Tensor?, block: BlockShape, bias: [Float]?) throws {
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
            scales = s.bytes.baseAddress!.assumingMemoryBound(to: Float.self)
            keep = [t.storage, s.storage]
        } else {
            scales = nil
            keep = [t.storage]
        }
        data = t.bytes.baseAddress!
        blockRows = block.rows
        blockCols = block.width(cols)
        self.bias = bias
    }

    /// y = W x (+ bias) for one input, rows split across `threads`.
    public func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, threads: Int) {
        let chunks = Swift.min(threads, Swift.max(1, rows / 64))
        let per = (rows + chunks - 1) / chunks
        let me = self, xs = SendableConstPointer(x), ys = SendableMutablePointer(y)
        try! parallelFor(chunks, threads: threads) { k in
            let r0 = k * per, r1 = Swift.min(me.rows, r0 + per)
            if r0 >= r1 { return }
            switch me.dtype {
            case .f32: mal_matvec_f32(ys.p, me.data.assumingMemoryBound(to: Float.self), xs.p, me.cols, r0, r1)
            case .bf16: mal_matvec_bf16(ys.p, me.data.assumingMemoryBound(to: UInt16.self), xs.p, me.cols, r0, r1)
            case .f16: mal_matvec_f16(ys.p, me.data.assumingMemoryBound(to: UInt16.self), xs.p, me.cols, r0, r1)
            default: mal_matvec_e4m3(ys.p, me.data.assumingMemoryBound(to: UInt8.self), me.scales, xs.p, me.cols, me.blockRows, me.blockCols, r0, r1)
            }
        }
        if let bias { for r in 0..<rows { y[r] += bias[r] } }
    }

    /// Y[t] = W X[t] (+ bias) for T inputs (prompt processing): each weight row is decoded once.
    public func apply(batch X: UnsafePointer<Float>, _ Y: UnsafeMutablePointer<Float>, count T: Int, threads: Int) {
        if T == 1 { apply(X, Y, threads: threads); return }
        let chunks = Swift.min(threads * 4, Swift.max(1, rows / 16))
        let per = ((rows + chunks - 1) / chunks + 3) / 4 * 4
        let me = self, xs = SendableConstPointer(X), ys = SendableMutablePointer(Y)
        try! parallelFor(chunks, threads: threads) { k in
            let r0 = k * per, r1 = Swift.min(me.rows, r0 + per)
            if r0 >= r1 { return }
            mal_matmul(ys.p, me.data, me.kernelType, me.scales, xs.p, T, me.rows, me.cols, me.blockRows, me.blockCols, r0, r1)
        }
        if let bias { for t in 0..<T { for r in 0..<rows { Y[t * rows + r] += bias[r] } } }
    }
}

struct SendableConstPointer: @unchecked Sendable { let p: UnsafePointer<Float>; init(_ p: UnsafePointer<Float>) { self.p = p } }
struct SendableMutablePointer: @unchecked Sendable { let p: UnsafeMutablePointer<Float>; init(_ p: UnsafeMutablePointer<Float>) { self.p = p } }

/// Reads weights of a `CanonicalModel` by canonical name for the runtime.
struct WeightLoader {
    let model: CanonicalModel
    let block: BlockShape
    private let byName: [String: CanonicalTensor]

    init(model: CanonicalModel) {
        self.model = model
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

    /// A 1-D float tensor (norm weights, biases) as float32.
    func vector(_ name: String) throws -> [Float] {
        let t = try tensor(name)
        var out = [Float](repeating: 0, count: t.elementCount)
        try t.withBytes { b in try out.withUnsafeMutableBufferPointer { try widenToFloat32(b.baseAddress!, dtype: t.dtype, count: t.elementCount, into: $0.baseAddress!) } }
        return out
    }

    func optionalVector(_ name: String) throws -> [Float]? { has(name) ? try vector(name) : nil }

    func linear(_ base: String, bias: Bool = false) throws -> LinearWeight {
        let t = try tensor(base + ".weight")
        let scale = byName[base + ".weight"]?.scale.map { try? model.load($0) } ?? nil
        let b = bias ? try optionalVector(base + ".bias") : nil
        return try LinearWeight(tensor: t, scale: scale, block: block, bias: b)
    }
}
