import MalCore

/// Reads weights of a `CanonicalModel` by canonical name for the runtime.
struct WeightLoader {
    let model: CanonicalModel
    let arena: WeightArena?
    /// The precision every weight of this model runs at.
    let precision = PrecisionSetting()
    private let byName: [String: CanonicalTensor]

    init(model: CanonicalModel, arena: WeightArena?) {
        self.model = model
        self.arena = arena
        var m: [String: CanonicalTensor] = [:]
        for t in model.tensors { m[t.name] = t }
        byName = m
    }

    func has(_ name: String) -> Bool { byName[name] != nil }

    /// The block of a quantised weight's scale grid (its own, else the model's).
    func block(of name: String) -> BlockShape { byName[name]?.block ?? .modelDefault(model.spec) }

    func tensor(_ name: String) throws -> Tensor {
        guard byName[name] != nil else { throw MalError(.notFound, "the model has no tensor '\(name)'", tensor: name) }
        return try model.load(name)
    }

    /// A tensor whose shape the spec fixes: a file whose tensors disagree with its own spec is an
    /// error here, never an out-of-bounds read in a kernel.
    func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        let t = try tensor(name)
        guard [.f32, .bf16, .f16, .f8e4m3].contains(t.dtype) else {
            throw MalError(
                .unsupported,
                "has dtype \(t.dtype.rawValue); the runtime reads F32, BF16, F16 and F8_E4M3 weights "
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
        try t.withBytes { b in
            try out.withUnsafeMutableBufferPointer { try widenToFloat32(b.baseAddress!, dtype: t.dtype, count: t.elementCount, into: $0.baseAddress!) }
        }
        return out
    }

    func optionalVector(_ name: String, count: Int) throws -> [Float]? { has(name) ? try vector(name, count: count) : nil }

    /// The Linear weight `base.weight` of shape [rows (out), cols (in)], its FP8 scale grid if any,
    /// and `base.bias` [rows] when `bias` and present.
    func linear(_ base: String, rows: Int, cols: Int, bias: Bool = false) throws -> LinearWeight {
        let t = try tensor(base + ".weight", shape: [rows, cols])
        let scale = byName[base + ".weight"]?.scale.map { try? model.load($0) } ?? nil
        let b = bias ? try optionalVector(base + ".bias", count: rows) : nil
        return try withExtendedLifetime((t, scale)) {
            try LinearWeight(tensor: t, scale: scale, block: block(of: base + ".weight"), bias: b, arena: arena, precision: precision)
        }
    }
}
