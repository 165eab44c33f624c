/// A tensor of a model under its canonical name, before its bytes are read.
public struct CanonicalTensor: Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    /// Set for a quantised weight: the canonical name of its scale tensor.
    public var scale: String?
    /// Set when the tensor is byte-identical to another one (tied or shared weights).
    public var aliasOf: String?
    /// A quantised weight's block: which rows and columns each value of its scale grid covers
    /// (the grid's shape alone does not say: 192 rows in two blocks may be 128 + 64 or 96 + 96).
    public var block: BlockShape?

    public init(name: String, dtype: DType, shape: [Int], scale: String? = nil, aliasOf: String? = nil, block: BlockShape? = nil) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.scale = scale
        self.aliasOf = aliasOf
        self.block = block
    }

    /// Bytes of its data, nil when the shape's size overflows (a hostile table).
    public var byteCount: Int? { elementCount(shape).flatMap { dtype.byteCount(elements: $0) } }
}

/// A tensor's bytes read a range at a time: `fill(offset, count, into)` writes bytes
/// `[offset, offset + count)` of the tensor, `release(range)` lets go of what was read (a mapped
/// source drops its pages), so a writer never holds a whole tensor.
public struct TensorStream: @unchecked Sendable {
    public let dtype: DType
    public let byteCount: Int
    public let fill: @Sendable (Int, Int, UnsafeMutableRawPointer) throws -> Void
    public let release: @Sendable (Range<Int>) -> Void

    /// How far before a piece a reader of consecutive pieces releases: a mapped source's page
    /// faults map up to 64 KiB around the faulting page (the kernel's fault-around), so each
    /// piece's first reads map the end of the piece before, already released. Without reaching
    /// back, that residue stayed resident: 94 MB over Llama-3.1-8B's quantisation in 128-row bands.
    public static let releaseReach = 64 << 10

    /// `release` for a reader that is done with `range` and with everything before it: reaches
    /// back `releaseReach` over what fault-around mapped of the piece before.
    public func releaseRead(_ range: Range<Int>) { release(max(0, range.lowerBound - Self.releaseReach)..<range.upperBound) }

    public init(
        dtype: DType, byteCount: Int, fill: @escaping @Sendable (Int, Int, UnsafeMutableRawPointer) throws -> Void,
        release: @escaping @Sendable (Range<Int>) -> Void
    ) {
        self.dtype = dtype
        self.byteCount = byteCount
        self.fill = fill
        self.release = release
    }
}

/// Where a model's bytes come from, for the container's provenance record: source files already
/// hashed (a `.mal` input carries its own record), files still to hash (an HF checkpoint's
/// shards), and the parameter-free buffers left out on the way.
public struct ModelProvenance: Sendable {
    public var recorded: [MalMetadata.SourceFile]
    public var unhashedFiles: [String]
    public var droppedTensors: [String]

    public init(recorded: [MalMetadata.SourceFile] = [], unhashedFiles: [String] = [], droppedTensors: [String] = []) {
        self.recorded = recorded
        self.unhashedFiles = unhashedFiles
        self.droppedTensors = droppedTensors
    }
}

/// A model seen through canonical names: what the transforms, writers and the runtime consume.
/// The sources are an HF checkpoint mapped through the name tables (`HFCanonicalModel`) and a
/// `.mal` file (`MalFile`); the transforms (quantise, dequantise, absorb, drop MTP) wrap one and
/// forward what they do not change, provenance included, so no consumer needs to know which it has.
public protocol CanonicalModel: AnyObject {
    var spec: ModelSpec { get }
    /// GPT-2's HF name prefix (`transformer.` or ""), nil for other architectures.
    var hfNamePrefix: String? { get }
    var tensors: [CanonicalTensor] { get }
    /// The tensor's bytes (fully materialised; one tensor at a time is the memory bound).
    func load(_ name: String) throws -> Tensor
    /// The tensor as a stream when it can be read without materialising it (a checkpoint's
    /// tensor, or one a transform passes through untouched); nil: `load` it.
    func stream(_ name: String) throws -> TensorStream?
    /// Decodes the tensor straight into memory from `allocate(byteCount)` when the model can,
    /// so a loader that keeps weights in its own memory writes each byte once (no intermediate
    /// copy, whose fresh pages the kernel must zero too); false, having allocated nothing: `load`
    /// it.
    func decode(_ name: String, into allocate: (Int) throws -> UnsafeMutableRawPointer) throws -> Bool
    /// The checks `load` left out (a container opened for mapped use hands out its raw tensors
    /// unchecked, so a cached model loads at once), to run while the model does (it throws what it
    /// finds); nil: none.
    func deferredCheck() -> (@Sendable () throws -> Void)?
    /// Names of auxiliary files (config.json, tokenizer.json, ...) and their bytes.
    var auxNames: [String] { get }
    func aux(_ name: String) throws -> [UInt8]?
    /// Where the bytes come from (empty for a model built in memory).
    var provenance: ModelProvenance { get }
}

extension CanonicalModel {
    public func stream(_ name: String) throws -> TensorStream? { nil }
    public func decode(_ name: String, into allocate: (Int) throws -> UnsafeMutableRawPointer) throws -> Bool { false }
    public func deferredCheck() -> (@Sendable () throws -> Void)? { nil }
    public var provenance: ModelProvenance { ModelProvenance() }
}

extension CanonicalModel {
    /// The weights: every tensor but the auxiliary files.
    public var weightTensors: [CanonicalTensor] { tensors.filter { !$0.name.hasPrefix(MalFormat.auxPrefix) } }

    /// Parameters stored: elements of every weight but FP8 scale grids, aliases counted once; nil
    /// when a (hostile) table's sizes do not fit in an Int.
    public var parameterCount: Int? {
        weightTensors.filter { !$0.name.hasSuffix(".scale_inv") && $0.aliasOf == nil }.reduce(Optional(0)) { acc, t in
            acc.flatMap { a in elementCount(t.shape).flatMap { a.addingReportingOverflow($0).overflow ? nil : a + $0 } }
        }
    }

    /// Bytes of the weights as stored (scale grids included, aliases once), as llama-bench
    /// reports a model's size.
    public var weightBytes: Int {
        weightTensors.filter { $0.aliasOf == nil }.reduce(0) { $0 + ($1.byteCount ?? 0) }
    }
}
