import CMalKernels
import MalCore

/// MLA weight absorption (DeepSeek-V2 paper §2.1.2; DeepSeek-V3 `inference/model.py`, absorb
/// mode). `kv_b` `[h·(nope+v), r]` holds per head W_UK `[nope, r]` and W_UV `[v, r]`.
///
/// - `split` (llama.cpp, mlx-lm, vLLM): `attn_k_b` `[h·r, nope]` = per-head W_UKᵀ (so
///   `q_lat[h] = W_UKᵀ q_nope[h]` is one linear layer per head) and `attn_v_b` `[h·v, r]` = per-head
///   W_UV. `kv_b` goes; everything else stays.
/// - `merged` (the paper): `attn_q_lat` `[h·r, q_in]` = per-head W_UKᵀ·W_UQ (W_UQ: the no-rope rows of
///   `q_b` or `q_proj`), `attn_q_rope` `[h·rope, q_in]` (the rope rows), and `attn_output_lat`
///   `[H, h·r]` = W_O·W_UV per head; `kv_b`, `q_b`/`q`, and `attn_output` go.
///
/// FP8 inputs are dequantised block by block and absorbed in float64 accumulation → float32;
/// the new tensors are float32 by default (exact values), or BF16 when asked.
public final class AbsorbedModel: CanonicalModel, @unchecked Sendable {
    public enum Mode: String, CaseIterable, Sendable { case split, merged }

    public let base: CanonicalModel
    public let mode: Mode
    public let dtype: DType
    public let spec: ModelSpec
    public private(set) var tensors: [CanonicalTensor] = []
    private var computed: [String: (layer: Int, kind: String)] = [:]
    private let mla: MLASpec
    private var cache: [String: Tensor] = [:]

    public init(base: CanonicalModel, mode: Mode, dtype: DType = .f32) throws {
        guard var mla = base.spec.mla else { throw MalError(.unsupported, "absorb-mla needs a DeepSeek (MLA) model, not \(base.spec.modelType)") }
        guard mla.absorbed == nil else { throw MalError(.invalidArgument, "the model is already absorbed (\(mla.absorbed!))") }
        guard dtype == .f32 || dtype == .bf16 else { throw MalError(.invalidArgument, "absorbed tensors are f32 or bf16") }
        self.base = base
        self.mode = mode
        self.dtype = dtype
        self.mla = mla
        mla.absorbed = mode.rawValue
        var s = base.spec
        s.mla = mla
        spec = s
        let h = s.heads, r = mla.kvLoraRank, nope = mla.qkNopeHeadDim, rope = mla.qkRopeHeadDim, v = mla.vHeadDim
        let qIn = mla.qLoraRank ?? s.hiddenSize
        var drop = Set<String>()
        let shapes = Dictionary(base.tensors.map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a })
        /// The inputs' shapes must be the ones the spec implies: the loops below index by the spec.
        func expect(_ name: String, _ shape: [Int]) throws {
            guard let have = shapes[name] else { throw MalError(.notFound, "absorption needs this tensor", tensor: name) }
            guard have == shape else {
                throw MalError(.invalidShape, "has shape \(have), but the model's spec implies \(shape)", tensor: name)
            }
        }
        for l in 0..<(s.layers + s.mtpLayers) {
            let b = "blk.\(l)."
            guard shapes[b + "attn_kv_b.weight"] != nil else { continue }
            try expect(b + "attn_kv_b.weight", [h * (nope + v), r])
            if mode == .merged {
                try expect(b + (mla.qLoraRank != nil ? "attn_q_b" : "attn_q") + ".weight", [h * (nope + rope), qIn])
                try expect(b + "attn_output.weight", [s.hiddenSize, h * v])
            }
            drop.insert(b + "attn_kv_b.weight"); drop.insert(b + "attn_kv_b.scale_inv")
            switch mode {
            case .split:
                add(b + "attn_k_b.weight", [h * r, nope], l, "k_b")
                add(b + "attn_v_b.weight", [h * v, r], l, "v_b")
            case .merged:
                let q = mla.qLoraRank != nil ? "attn_q_b" : "attn_q"
                for n in [b + q + ".weight", b + q + ".scale_inv", b + "attn_output.weight", b + "attn_output.scale_inv"] { drop.insert(n) }
                add(b + "attn_q_lat.weight", [h * r, qIn], l, "q_lat")
                add(b + "attn_q_rope.weight", [h * rope, qIn], l, "q_rope")
                add(b + "attn_output_lat.weight", [s.hiddenSize, h * r], l, "o_lat")
            }
        }
        tensors = base.tensors.filter { !drop.contains($0.name) } + tensors
    }

    private func add(_ name: String, _ shape: [Int], _ layer: Int, _ kind: String) {
        tensors.append(CanonicalTensor(name: name, dtype: dtype, shape: shape))
        computed[name] = (layer, kind)
    }

    /// The tensors absorption computes (`attn_k_b`, `attn_v_b` or `attn_q_lat`, `attn_q_rope`,
    /// `attn_output_lat` of every MLA layer), in tensor order.
    public var absorbedTensorNames: [String] { tensors.map(\.name).filter { computed[$0] != nil } }

    public var hfNamePrefix: String? { base.hfNamePrefix }
    public var auxNames: [String] { base.auxNames }
    public var provenance: ModelProvenance { base.provenance }
    public func aux(_ name: String) throws -> [UInt8]? { try base.aux(name) }

    /// A base weight as float32 (dequantised when it has a scale).
    func float32(_ name: String) throws -> [Float] {
        let t = try base.load(name)
        if let bt = base.tensors.first(where: { $0.name == name }), let sc = bt.scale {
            let scales = try base.load(sc), block = bt.block ?? .modelDefault(base.spec)
            return try [Float](unsafeUninitializedCapacity: t.elementCount) { buf, n in
                try BlockQuantizer.dequantize(q: t, scales: scales, block: block, into: buf.baseAddress!)
                n = t.elementCount
            }
        }
        var out = [Float](repeating: 0, count: t.elementCount)
        try t.withBytes { b in
            try out.withUnsafeMutableBufferPointer { try widenToFloat32(b.baseAddress!, dtype: t.dtype, count: t.elementCount, into: $0.baseAddress!) }
        }
        return out
    }

    /// The merged mode's two large tensors are streamed a band of rows at a time (`LatentRows`):
    /// `attn_output_lat` `[H, h·r]` is 7168 × 65,536 at DeepSeek-V3's dimensions, larger than any
    /// tensor of the input. The split mode's tensors are as small as `kv_b` and load whole.
    public func stream(_ name: String) throws -> TensorStream? {
        guard let (l, kind) = computed[name] else { return try base.stream(name) }
        guard kind == "q_lat" || kind == "o_lat" else { return nil }
        let rows = try LatentRows(self, layer: l, kind: kind)
        return TensorStream(dtype: dtype, byteCount: rows.byteCount, fill: { off, n, dst in try rows.fill(off, n, dst) }, release: { _ in })
    }

    public func load(_ name: String) throws -> Tensor {
        guard let (l, kind) = computed[name] else { return try base.load(name) }
        let h = spec.heads, r = mla.kvLoraRank, nope = mla.qkNopeHeadDim, rope = mla.qkRopeHeadDim, v = mla.vHeadDim
        let qk = nope + rope
        let b = "blk.\(l)."
        let kvb = kind == "k_b" || kind == "v_b" ? try float32(b + "attn_kv_b.weight") : []  // [h·(nope+v), r]
        var out: [Float]
        switch kind {
        case "k_b":  // per head W_UKᵀ: [r, nope]
            out = [Float](repeating: 0, count: h * r * nope)
            for hd in 0..<h { for d in 0..<nope { for c in 0..<r { out[(hd * r + c) * nope + d] = kvb[(hd * (nope + v) + d) * r + c] } } }
        case "v_b":  // per head W_UV: [v, r]
            out = [Float](repeating: 0, count: h * v * r)
            for hd in 0..<h { for d in 0..<v { for c in 0..<r { out[(hd * v + d) * r + c] = kvb[(hd * (nope + v) + nope + d) * r + c] } } }
        case "q_rope":
            let qName = mla.qLoraRank != nil ? b + "attn_q_b.weight" : b + "attn_q.weight"
            let wq = try float32(qName)  // [h·qk, qIn]
            let qIn = wq.count / (h * qk)
            out = [Float](repeating: 0, count: h * rope * qIn)
            for hd in 0..<h { for d in 0..<rope { for c in 0..<qIn { out[(hd * rope + d) * qIn + c] = wq[(hd * qk + nope + d) * qIn + c] } } }
        default:  // q_lat, o_lat: the rows of the stream, all at once
            let rows = try LatentRows(self, layer: l, kind: kind)
            out = try [Float](unsafeUninitializedCapacity: rows.rows * rows.cols) { buf, n in
                try rows.compute(0, rows.rows, into: buf.baseAddress!)
                n = rows.rows * rows.cols
            }
        }
        let shape = tensors.first { $0.name == name }!.shape
        if dtype == .bf16 {  // encoded straight into the tensor's storage: one copy of the BF16 bits
            let storage = try TensorStorage.allocate(count: out.count * 2)
            mal_f32_to_bf16(UnsafeMutableRawPointer(mutating: storage.bytes.baseAddress!).assumingMemoryBound(to: UInt16.self), out, out.count)
            return Tensor(name: name, dtype: .bf16, shape: shape, storage: storage)
        }
        return out.withUnsafeBytes { Tensor(name: name, dtype: .f32, shape: shape, storage: TensorStorage(copying: $0)) }
    }

    /// Which layout should decode faster at KV length `n`, and why. Decoding is bandwidth-bound:
    /// weight bytes (parameters) matter first, multiply-adds second.
    public static func recommendation(spec: ModelSpec, kvLength n: Int) -> String {
        let s = cost(spec: spec, mode: .split, kvLength: n), g = cost(spec: spec, mode: .merged, kvLength: n)
        let pr = Double(g.params) / Double(max(s.params, 1)), fr = Double(g.flops) / Double(max(s.flops, 1))
        switch (g.params <= s.params, g.flops <= s.flops) {
        case (true, true): return "merged: it reads no more weights and does no more work at these dimensions"
        case (false, true): return String(format: "merged saves compute but reads %.2fx the attention weights, so decoding (bandwidth-bound) is slower", pr)
        case (true, false): return String(format: "merged reads %.2fx the weights but does %.2fx the work: measure both (`malrun bench`)", pr, fr)
        case (false, false): return "split: merged has more parameters and more work at these dimensions"
        }
    }

    /// Parameters and multiply-adds per token per layer of the attention projections that
    /// absorption changes, for `mode` (DeepSeek-V2 paper's comparison; KV length `n`).
    public static func cost(spec: ModelSpec, mode: Mode, kvLength n: Int) -> (params: Int, flops: Int) {
        guard let m = spec.mla else { return (0, 0) }
        let h = spec.heads, r = m.kvLoraRank, nope = m.qkNopeHeadDim, rope = m.qkRopeHeadDim, v = m.vHeadDim
        let H = spec.hiddenSize, qIn = m.qLoraRank ?? H
        switch mode {
        case .split:
            // q_b (all rows) + k_b + v_b + o_proj; per token: q_b, q_lat per head, attention over
            // n latent positions (scores and values), v_b, o_proj.
            let params = h * (nope + rope) * qIn + h * r * nope + h * v * r + H * h * v
            let flops = h * (nope + rope) * qIn + h * r * nope + 2 * h * n * (r + rope) + h * v * r + H * h * v
            return (params, flops)
        case .merged:
            let params = h * r * qIn + h * rope * qIn + H * h * r
            let flops = h * r * qIn + h * rope * qIn + 2 * h * n * (r + rope) + H * h * r
            return (params, flops)
        }
    }
}

/// Rows of a merged-mode latent weight, computed on demand, each exactly as the whole tensor
/// computes it (the same float64 sums), so any band's bytes are the whole tensor's:
/// - `q_lat` row hd·r + c, column j: Σ_d W_UK[hd][d][c] · W_UQ[hd][d][j];
/// - `o_lat` row i, column hd·r + c: Σ_d W_O[i][hd·v + d] · W_UV[hd][d][c].
/// Holds `kv_b` as float32 and the other input (`q_b`/`q` or `attn_output`) as stored, whose rows
/// are dequantised as needed; immutable, so the writer's threads fill pieces in parallel.
final class LatentRows: @unchecked Sendable {
    let kind: String, rows: Int, cols: Int, dtype: DType
    private let kvb: [Float]
    private let input: Tensor, inputScales: Tensor?, inputBlock: BlockShape?
    private let h: Int, r: Int, nope: Int, v: Int, qk: Int

    init(_ m: AbsorbedModel, layer l: Int, kind: String) throws {
        let mla = m.spec.mla!, b = "blk.\(l)."
        h = m.spec.heads
        r = mla.kvLoraRank
        nope = mla.qkNopeHeadDim
        v = mla.vHeadDim
        qk = nope + mla.qkRopeHeadDim
        self.kind = kind
        dtype = m.dtype
        let name = kind == "q_lat" ? b + (mla.qLoraRank != nil ? "attn_q_b.weight" : "attn_q.weight") : b + "attn_output.weight"
        input = try m.base.load(name)
        let stored = m.base.tensors.first { $0.name == name }
        inputScales = try stored?.scale.map { try m.base.load($0) }
        inputBlock = stored?.scale != nil ? (stored?.block ?? .modelDefault(m.base.spec)) : nil
        if let sc = inputScales, let block = inputBlock { try BlockQuantizer.checkDequantizable(q: input, scales: sc, block: block) }
        kvb = try m.float32(b + "attn_kv_b.weight")
        rows = kind == "q_lat" ? h * r : m.spec.hiddenSize
        cols = kind == "q_lat" ? input.shape[1] : h * r
    }

    var byteCount: Int { rows * cols * (dtype.byteSize ?? 4) }

    /// Rows [ra, rb) of the stored input as float32 (FP8: float32(q) · scale, as the dequantiser).
    private func inputRows(_ ra: Int, _ rb: Int, into out: UnsafeMutablePointer<Float>) throws {
        let c = input.shape[1]
        try withExtendedLifetime(input.storage) {
            if let sc = inputScales, let block = inputBlock {
                let nb = block.scaleShape(input.shape)[1], q = input.bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
                try withExtendedLifetime(sc.storage) {
                    let s = sc.bytes.baseAddress!.assumingMemoryBound(to: Float.self)
                    for row in ra..<rb { mal_dequantize_band_e4m3(out + (row - ra) * c, q + row * c, s + (row / block.rows) * nb, 1, c, block.width(c)) }
                }
            } else {
                try widenToFloat32(input.bytes.baseAddress! + ra * c * (input.dtype.byteSize ?? 4), dtype: input.dtype, count: (rb - ra) * c, into: out)
            }
        }
    }

    /// Rows [ra, rb) of the latent weight as float32 into `out`.
    func compute(_ ra: Int, _ rb: Int, into out: UnsafeMutablePointer<Float>) throws {
        if kind == "q_lat" {
            let qIn = cols
            var wq = [Float](repeating: 0, count: nope * qIn)
            var hd = ra / r
            while hd * r < rb {
                try wq.withUnsafeMutableBufferPointer { try inputRows(hd * qk, hd * qk + nope, into: $0.baseAddress!) }
                for c in (Swift.max(ra, hd * r) - hd * r)..<(Swift.min(rb, (hd + 1) * r) - hd * r) {
                    var acc = [Double](repeating: 0, count: qIn)
                    for d in 0..<nope {
                        let uk = Double(kvb[(hd * (nope + v) + d) * r + c])
                        for j in 0..<qIn { acc[j] += uk * Double(wq[d * qIn + j]) }
                    }
                    for j in 0..<qIn { out[(hd * r + c - ra) * qIn + j] = Float(acc[j]) }
                }
                hd += 1
            }
            return
        }
        var wo = [Float](repeating: 0, count: h * v)
        for i in ra..<rb {
            try wo.withUnsafeMutableBufferPointer { try inputRows(i, i + 1, into: $0.baseAddress!) }
            for hd in 0..<h {
                var acc = [Double](repeating: 0, count: r)
                for d in 0..<v {
                    let o = Double(wo[hd * v + d])
                    let row = (hd * (nope + v) + nope + d) * r
                    for c in 0..<r { acc[c] += o * Double(kvb[row + c]) }
                }
                for c in 0..<r { out[(i - ra) * cols + hd * r + c] = Float(acc[c]) }
            }
        }
    }

    /// Bytes [offset, offset + count) of the tensor in `dtype`: the rows that hold them, computed.
    func fill(_ offset: Int, _ count: Int, _ dst: UnsafeMutableRawPointer) throws {
        let es = dtype.byteSize ?? 4, rowBytes = cols * es
        let ra = offset / rowBytes, rb = Swift.min(rows, (offset + count + rowBytes - 1) / rowBytes)
        var f = [Float](repeating: 0, count: (rb - ra) * cols)
        try f.withUnsafeMutableBufferPointer { try compute(ra, rb, into: $0.baseAddress!) }
        let skip = offset - ra * rowBytes
        if dtype == .bf16 {
            var bits = [UInt16](repeating: 0, count: f.count)
            mal_f32_to_bf16(&bits, f, f.count)
            bits.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress! + skip, byteCount: count) }
        } else {
            f.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress! + skip, byteCount: count) }
        }
    }
}
