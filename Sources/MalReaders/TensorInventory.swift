import MalCore

/// The missing / unexpected / mis-shaped report of a checkpoint against its spec.
public struct TensorInventory: Sendable, Codable, Equatable {
    public struct Misshaped: Sendable, Codable, Equatable {
        public var name: String
        public var expected: [Int]
        public var found: [Int]
    }

    public var missing: [String] = []
    public var unexpected: [String] = []
    public var misshaped: [Misshaped] = []
    /// Buffers that carry no parameters (causal masks, rotary caches); skipped, not errors.
    public var ignored: [String] = []
    /// FP8 block-scale tensors (`<weight>_scale_inv`) matched to their weight.
    public var scaleTensors: Int = 0

    public var isClean: Bool { missing.isEmpty && unexpected.isEmpty && misshaped.isEmpty }

    /// Compares `tensors` with what `spec` implies. FP8 weights must come with a float32
    /// `<name>_scale_inv` of shape `[ceil(out/b0), ceil(in/b1)]` (b from `weight_block_size`,
    /// 128×128 by default, as in the DeepSeek-V3 release).
    public static func check(spec: ModelSpec, tensors: [TensorInfo]) -> TensorInventory {
        let expected = HFTensorLayout.expected(spec, tensorNames: tensors.map(\.name))
        var byName: [String: TensorInfo] = [:]
        for t in tensors { byName[t.name] = t }
        var report = TensorInventory()
        var known = Set<String>()
        for e in expected {
            known.insert(e.name)
            guard let t = byName[e.name] else {
                if !e.optional { report.missing.append(e.name) }
                continue
            }
            if t.shape != e.shape { report.misshaped.append(.init(name: e.name, expected: e.shape, found: t.shape)) }
        }
        let block = spec.quantization?.weightBlockSize ?? [128, 128]
        for t in tensors where known.contains(t.name) && t.dtype.isFP8 && t.shape.count == 2 {
            let scaleName = t.name + "_scale_inv"
            known.insert(scaleName)
            guard let s = byName[scaleName] else { report.missing.append(scaleName); continue }
            report.scaleTensors += 1
            let bc = block[1] == 0 ? max(t.shape[1], 1) : block[1]  // [1, 0]: per channel
            let want = [(t.shape[0] + block[0] - 1) / block[0], (t.shape[1] + bc - 1) / bc]
            if s.shape != want { report.misshaped.append(.init(name: scaleName, expected: want, found: s.shape)) }
        }
        for t in tensors where !known.contains(t.name) {
            if HFTensorLayout.isIgnorable(t.name) { report.ignored.append(t.name) } else { report.unexpected.append(t.name) }
        }
        return report
    }
}
