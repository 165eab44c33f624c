import MalCore

/// Which canonical tensors are Linear weights of attention, MLP, experts and shared experts:
/// what DeepSeek's FP8 release quantises. Everything else (embeddings, output head, norms, biases,
/// router gate, correction bias, MTP projection and head) keeps its dtype.
public enum QuantizationPolicy {
    static let linearKinds: Set<String> = [
        "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_a", "attn_q_b", "attn_kv_a_mqa", "attn_kv_b",
        "attn_k_b", "attn_v_b", "ffn_gate", "ffn_up", "ffn_down", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps",
        "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp",
    ]

    /// nil when the tensor is a linear weight to quantise by default, else why it is kept.
    public static func keepReason(_ name: String) -> String? {
        let parts = name.split(separator: ".").map(String.init)
        if name.hasSuffix(".bias") { return "bias" }
        if name.hasSuffix(".scale_inv") { return "scale" }
        guard parts.first == "blk", parts.count >= 4, parts.last == "weight" else {
            if name.hasPrefix("token_embd") || name.hasPrefix("position_embd") { return "embedding" }
            if name.hasPrefix("output_norm") { return "norm" }
            if name.hasPrefix("output.") { return "output head" }
            return "not a linear layer"
        }
        if parts[2] == "nextn" { return "MTP projection/head/norm (kept like DeepSeek's release)" }
        let kind = parts[2]
        if kind.hasSuffix("_norm") { return "norm" }
        if kind == "ffn_gate_inp" { return "router gate" }
        if kind == "exp_probs_b" { return "routing bias" }
        return linearKinds.contains(kind) ? nil : "not a linear layer"
    }
}

/// A model with its Linear weights block-quantised to FP8 E4M3 (`BlockQuantizer`), seen as a
/// `CanonicalModel`: each quantised weight is followed by its `.scale_inv` tensor.
public final class QuantizedModel: CanonicalModel, @unchecked Sendable {
    public struct Decision: Sendable, Codable {
        public var name: String
        public var action: String  // "quantized", "kept", "already FP8"
        public var reason: String
    }

    public let base: CanonicalModel
    public let block: BlockShape
    public let scale: ScaleFormat
    public let threads: Int
    public let spec: ModelSpec
    public private(set) var tensors: [CanonicalTensor] = []
    public private(set) var decisions: [Decision] = []
    private var quantized: [String: (weight: String, shape: [Int])] = [:]  // scale name -> weight
    private var cache: (name: String, q: TensorStorage, scales: TensorStorage, shape: [Int])?
    /// Weights handed out as streams, for their scale grids.
    private var streamed: [String: QuantizingStream] = [:]
    /// The streams' band buffers, reused from weight to weight.
    private let buffers = SizedBufferPool()

    /// - Parameter block: the block of the weights it quantises; nil: the block of the input's FP8
    ///   weights when it has some (a file keeps one block), else DeepSeek-V3's 128×128. Weights
    ///   that are FP8 already pass through with their own block, which must then be `block`:
    ///   re-quantising them would round twice, so that is refused.
    public init(
        base: CanonicalModel, block requested: BlockShape? = nil, scale: ScaleFormat = .f32, include: [String] = [],
        exclude: [String] = [], threads: Int = availableCores
    ) throws {
        let inputBlock = base.tensors.first { $0.scale != nil }?.block
        let block = requested ?? inputBlock ?? .deepseek
        self.base = base
        self.block = block
        self.scale = scale
        self.threads = threads
        var s = base.spec
        s.quantization = QuantizationSpec(
            method: "fp8", format: "e4m3", activationScheme: "dynamic",
            weightBlockSize: [block.rows, block.cols], scaleFormat: scale == .ue8m0 ? "ue8m0" : nil)
        spec = s
        let names = Set(base.tensors.map(\.name))
        for t in base.tensors {
            if t.scale != nil, let own = t.block ?? inputBlock, own != block {
                throw MalError(
                    .invalidArgument,
                    "is already FP8 in \(own) blocks, not the \(block) blocks asked for (--block \(block)); re-quantising would round "
                        + "twice: leave --block out to keep the input's blocks, or dequantize first (malconv dequantize)", tensor: t.name)
            }
            if t.scale != nil || t.dtype.isFP8 {
                decisions.append(Decision(name: t.name, action: "already FP8", reason: "passed through untouched"))
                tensors.append(t)
                continue
            }
            if t.name.hasSuffix(".scale_inv") { tensors.append(t); continue }
            let excluded = exclude.contains { globMatch($0, t.name) }
            let included = include.contains { globMatch($0, t.name) }
            let reason = QuantizationPolicy.keepReason(t.name)
            var want = (reason == nil || included) && !excluded
            var why = excluded ? "excluded by --exclude" : (reason ?? "linear weight")
            if want && !(t.shape.count == 2 && [.f32, .f16, .bf16].contains(t.dtype)) {
                want = false
                why = "not a 2-D F32/F16/BF16 tensor"
            }
            if want && t.aliasOf != nil {
                want = false
                why = "alias of \(t.aliasOf!)"
            }
            guard want else {
                decisions.append(Decision(name: t.name, action: "kept", reason: why))
                tensors.append(t)
                continue
            }
            let scaleName = String(t.name.dropLast(".weight".count)) + ".scale_inv"
            guard t.name.hasSuffix(".weight"), !names.contains(scaleName) else {
                decisions.append(Decision(name: t.name, action: "kept", reason: "no room for a .scale_inv name"))
                tensors.append(t)
                continue
            }
            let sshape = block.scaleShape(t.shape)
            decisions.append(Decision(name: t.name, action: "quantized", reason: included && reason != nil ? "included by --include" : "linear weight"))
            tensors.append(CanonicalTensor(name: t.name, dtype: .f8e4m3, shape: t.shape, scale: scaleName, block: block))
            tensors.append(CanonicalTensor(name: scaleName, dtype: .f32, shape: sshape))
            quantized[scaleName] = (t.name, t.shape)
        }
    }

    public var hfNamePrefix: String? { base.hfNamePrefix }
    public var auxNames: [String] { base.auxNames }
    public var provenance: ModelProvenance { base.provenance }
    public func aux(_ name: String) throws -> [UInt8]? { try base.aux(name) }

    func compute(_ weight: String) throws -> (q: TensorStorage, scales: TensorStorage, shape: [Int]) {
        if let c = cache, c.name == weight { return (c.q, c.scales, c.shape) }
        let src = try base.load(weight)
        let r = try BlockQuantizer.quantize(src, block: block, scale: scale, threads: threads)
        cache = (weight, r.q, r.scales, r.scaleShape)
        return (r.q, r.scales, r.scaleShape)
    }

    /// Kept and already-FP8 tensors stream from the input. A weight to quantise streams too when
    /// its input does: band by band (`QuantizingStream`), so a writer never holds the whole weight;
    /// its scale grid, which the writer asks for next, was filled on the way.
    public func stream(_ name: String) throws -> TensorStream? {
        if quantized[name] != nil { return nil }
        if let t = tensors.first(where: { $0.name == name }), t.dtype == .f8e4m3, t.scale.map({ quantized[$0] != nil }) == true {
            guard let src = try base.stream(name), QuantizingStream.accepts(src, shape: t.shape) else { return nil }
            let s = QuantizingStream(name: name, shape: t.shape, source: src, block: block, scale: scale, threads: threads, buffers: buffers)
            streamed[name] = s
            return s.stream
        }
        return try base.stream(name)
    }

    public func load(_ name: String) throws -> Tensor {
        if let w = quantized[name] {
            if let s = streamed.removeValue(forKey: w.weight) {
                return Tensor(name: name, dtype: .f32, shape: s.scaleShape, storage: try s.scales())
            }
            // Asked for before its weight (an HF folder's shards put F32 tensors first, for
            // alignment): the grid alone, a band at a time, so the weight is never held whole.
            if let src = try base.stream(w.weight), QuantizingStream.accepts(src, shape: w.shape) {
                let s = QuantizingStream(name: w.weight, shape: w.shape, source: src, block: block, scale: scale, threads: threads, buffers: buffers)
                return Tensor(name: name, dtype: .f32, shape: s.scaleShape, storage: try s.scales())
            }
            let r = try compute(w.weight)
            return Tensor(name: name, dtype: .f32, shape: r.shape, storage: r.scales)
        }
        if let t = tensors.first(where: { $0.name == name }), t.dtype == .f8e4m3, t.scale.map({ quantized[$0] != nil }) == true {
            let r = try compute(name)
            return Tensor(name: name, dtype: .f8e4m3, shape: t.shape, storage: r.q)
        }
        return try base.load(name)
    }
}

/// A model whose block-quantised weights are turned back into `dtype` (F32 or BF16):
/// `float32(q) × scale_inv`, then rounded to BF16 when asked. Scale tensors disappear.
public final class DequantizedModel: CanonicalModel, @unchecked Sendable {
    public let base: CanonicalModel
    public let dtype: DType
    public let threads: Int
    public let spec: ModelSpec
    public private(set) var tensors: [CanonicalTensor] = []
    /// Dequantised weight → its scale grid, block and shape.
    private var scaled: [String: (scale: String, block: BlockShape, shape: [Int])] = [:]
    /// The streams' buffers, reused from weight to weight.
    private let buffers = SizedBufferPool()

    public init(base: CanonicalModel, dtype: DType = .bf16, threads: Int = availableCores) throws {
        guard dtype == .f32 || dtype == .bf16 else { throw MalError(.invalidArgument, "dequantise to f32 or bf16, not \(dtype.rawValue)") }
        self.base = base
        self.dtype = dtype
        self.threads = threads
        var s = base.spec
        s.quantization = nil
        s.declaredDType = dtype == .bf16 ? "bfloat16" : "float32"
        spec = s
        let scales = Set(base.tensors.compactMap(\.scale))
        for t in base.tensors where !scales.contains(t.name) {
            if let sc = t.scale {
                scaled[t.name] = (sc, t.block ?? .modelDefault(base.spec), t.shape)
                tensors.append(CanonicalTensor(name: t.name, dtype: dtype, shape: t.shape, aliasOf: t.aliasOf))
            } else {
                tensors.append(t)
            }
        }
    }

    public var hfNamePrefix: String? { base.hfNamePrefix }
    public var auxNames: [String] { base.auxNames }
    public var provenance: ModelProvenance { base.provenance }
    public func aux(_ name: String) throws -> [UInt8]? { try base.aux(name) }

    /// Kept tensors stream from the input; a dequantised weight streams rows at a time
    /// (`DequantizingStream`) when its E4M3 bytes do.
    public func stream(_ name: String) throws -> TensorStream? {
        guard let sc = scaled[name] else { return try base.stream(name) }
        // The shape from the table built once (a container's `tensors` is rebuilt on every call).
        guard let src = try base.stream(name), src.dtype == .f8e4m3, src.byteCount == elementCount(sc.shape) else { return nil }
        let s = try base.load(sc.scale)
        try BlockQuantizer.checkDequantizable(name: name, dtype: src.dtype, shape: sc.shape, scales: s, block: sc.block)
        return DequantizingStream(q: sc.shape, source: src, scales: s, block: sc.block, dtype: dtype, threads: threads, buffers: buffers).stream
    }

    public func load(_ name: String) throws -> Tensor {
        guard let sc = scaled[name] else { return try base.load(name) }
        let q = try base.load(name), s = try base.load(sc.scale)
        let f = try BlockQuantizer.dequantize(q: q, scales: s, block: sc.block, threads: threads)
        if dtype == .f32 { return Tensor(name: name, dtype: .f32, shape: q.shape, storage: f) }
        let n = q.elementCount
        let out = try TensorStorage.allocate(count: n * 2)
        FloatCast.cast(
            f.bytes.baseAddress!, from: .f32, UnsafeMutableRawPointer(mutating: out.bytes.baseAddress!), to: .bf16, count: n,
            scratch: nil)
        return withExtendedLifetime(f) { Tensor(name: name, dtype: .bf16, shape: q.shape, storage: out) }
    }
}
