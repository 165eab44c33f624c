import CMalKernels
import MalCore

/// Reads weights of a `CanonicalModel` by canonical name for the runtime.
struct WeightLoader {
    let model: CanonicalModel
    let arena: WeightArena?
    /// The precision every weight of this model runs at.
    let precision = PrecisionSetting()
    private let byName: [String: CanonicalTensor]
    /// Reports (MiB loaded, MiB of weights) after each tensor.
    let progress: ((Int, Int) -> Void)?
    private final class Count { var bytes = 0 }
    private let loaded = Count()
    private let totalBytes: Int

    init(model: CanonicalModel, arena: WeightArena?, progress: ((Int, Int) -> Void)? = nil) {
        self.model = model
        self.arena = arena
        self.progress = progress
        totalBytes = progress == nil ? 0 : model.weightBytes
        var m: [String: CanonicalTensor] = [:]
        for t in model.tensors { m[t.name] = t }
        byName = m
    }

    func has(_ name: String) -> Bool { byName[name] != nil }

    /// The block of a quantised weight's scale grid (its own, else the model's).
    func block(of name: String) -> BlockShape { byName[name]?.block ?? .modelDefault(model.spec) }

    func tensor(_ name: String) throws -> Tensor {
        guard byName[name] != nil else { throw MalError(.notFound, "the model has no tensor '\(name)'", tensor: name) }
        let t = try model.load(name)
        report(t.bytes.count)
        return t
    }

    private func report(_ bytes: Int) {
        guard let progress else { return }
        loaded.bytes += bytes
        progress(loaded.bytes >> 20, max(totalBytes, loaded.bytes) >> 20)
    }

    /// A tensor whose shape the spec fixes: a file whose tensors disagree with its own spec is an
    /// error here, never an out-of-bounds read in a kernel.
    func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        let t = try tensor(name)
        try check(name, dtype: t.dtype, shape: t.shape, expected: shape)
        return t
    }

    private func check(_ name: String, dtype: DType, shape: [Int], expected: [Int]) throws {
        guard [.f32, .bf16, .f16, .f8e4m3].contains(dtype) else {
            throw MalError(
                .unsupported,
                "has dtype \(dtype.rawValue); the runtime reads F32, BF16, F16 and F8_E4M3 weights "
                    + "(`malconv convert --dtype f32|bf16|f16` casts float tensors)", tensor: name)
        }
        guard shape == expected else {
            throw MalError(.invalidShape, "has shape \(shape), but the model's spec implies \(expected)", tensor: name)
        }
    }

    /// A weight decoded straight into the arena, when the model can and the kernels read it as
    /// stored (not for BF16 that the loader re-lays out in tiles); nil otherwise.
    private func placed(_ name: String, shape: [Int]) throws -> Tensor? {
        guard let arena, let meta = byName[name] else { return nil }
        try check(name, dtype: meta.dtype, shape: meta.shape, expected: shape)
        if meta.dtype == .bf16 && mal_bf16_use_tiled(shape[1]) != 0 { return nil }
        var view = UnsafeRawBufferPointer(start: nil, count: 0)
        let done = try model.decode(name) { n in
            let p = try arena.allocate(n)
            view = UnsafeRawBufferPointer(start: p, count: n)
            return p
        }
        guard done else { return nil }
        guard view.count == shape[0] * shape[1] * (meta.dtype.byteSize ?? 4) else {
            throw MalError(.invalidShape, "decodes to \(view.count) bytes, not those of \(meta.dtype.rawValue) \(shape)", tensor: name)
        }
        report(view.count)
        return Tensor(name: name, dtype: meta.dtype, shape: meta.shape, storage: TensorStorage(borrowing: view, owner: arena))
    }

    /// A float tensor of `count` elements (norm weights, biases; `shape` when it is not 1-D) as float32.
    func vector(_ name: String, count: Int, shape: [Int]? = nil) throws -> [Float] {
        let t = try tensor(name, shape: shape ?? [count])
        var out = [Float](repeating: 0, count: t.elementCount)
        try t.withBytes { b in
            try out.withUnsafeMutableBufferPointer { try widenToFloat32(b.baseAddress!, dtype: t.dtype, count: t.elementCount, into: $0.baseAddress!) }
        }
        return out
    }

    func optionalVector(_ name: String, count: Int) throws -> [Float]? { has(name) ? try vector(name, count: count) : nil }

    /// The Linear weight `base.weight` of shape [rows (out), cols (in)], its FP8 scale grid if any,
    /// and `base.bias` [rows] when `bias` and present.
    func linear(_ base: String, rows: Int, cols: Int, bias: Bool = false) throws -> LinearWeight {
        let inArena = try placed(base + ".weight", shape: [rows, cols])
        let t = try inArena ?? tensor(base + ".weight", shape: [rows, cols])
        let scale = byName[base + ".weight"]?.scale.map { try? model.load($0) } ?? nil
        let b = bias ? try optionalVector(base + ".bias", count: rows) : nil
        return try withExtendedLifetime((t, scale)) {
            try LinearWeight(
                tensor: t, scale: scale, block: block(of: base + ".weight"), bias: b, arena: arena, inArena: inArena != nil,
                precision: precision)
        }
    }
}
