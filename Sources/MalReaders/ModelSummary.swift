import MalCore

/// What `malconv inspect` reports about a checkpoint: a stable, Codable document.
public struct ModelSummary: Codable, Sendable {
    public struct DTypeBytes: Codable, Sendable, Equatable {
        public var dtype: String
        public var tensors: Int
        public var elements: Int
        public var bytes: Int
    }

    public var path: String
    public var files: [String]
    public var architecture: String
    public var spec: ModelSpec
    /// Sum of element counts of all stored tensors (what transformers' `num_parameters` gives for
    /// the loaded tensors); FP8 scale tensors are counted separately.
    public var parameters: Int
    public var scaleElements: Int
    /// Parameter count implied by the config alone (tied head counted once, MTP included).
    public var specParameters: Int
    public var tensorCount: Int
    public var dataBytes: Int
    public var bytesByDType: [DTypeBytes]
    public var quantization: QuantizationSpec?
    public var fp8Tensors: Int
    public var inventory: TensorInventory

    public init(model: HFModel) {
        path = model.path
        files = model.checkpoint.files.map { baseName($0.path) }
        architecture = model.spec.modelType
        spec = model.spec
        let inv = model.inventory()
        inventory = inv
        let scaleNames = Set(model.tensors.filter { $0.name.hasSuffix("_scale_inv") }.map(\.name))
        parameters = model.tensors.filter { !scaleNames.contains($0.name) }.reduce(0) { $0 + $1.elementCount }
        scaleElements = model.tensors.filter { scaleNames.contains($0.name) }.reduce(0) { $0 + $1.elementCount }
        specParameters = HFTensorLayout.parameterCount(model.spec)
        tensorCount = model.tensors.count
        dataBytes = model.checkpoint.dataBytes
        var by: [DType: DTypeBytes] = [:]
        for t in model.tensors {
            by[t.dtype, default: DTypeBytes(dtype: t.dtype.rawValue, tensors: 0, elements: 0, bytes: 0)].tensors += 1
            by[t.dtype]!.elements += t.elementCount
            by[t.dtype]!.bytes += t.byteCount
        }
        bytesByDType = by.keys.sorted().map { by[$0]! }
        quantization = model.spec.quantization
        fp8Tensors = model.tensors.filter { $0.dtype.isFP8 }.count
    }
}
