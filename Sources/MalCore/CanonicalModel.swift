import MalCore
import MalReaders

/// A tensor of a model under its canonical name, before its bytes are read.
public struct CanonicalTensor: Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    /// Set for a quantised weight: the canonical name of its scale tensor.
    public var scale: String?
    /// Set when the tensor is byte-identical to another one (tied or shared weights).
    public var aliasOf: String?

    public init(name: String, dtype: DType, shape: [Int], scale: String? = nil, aliasOf: String? = nil) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.scale = scale
        self.aliasOf = aliasOf
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

    public init(dtype: DType, byteCount: Int, fill: @escaping @Sendable (Int, Int, UnsafeMutableRawPointer) throws -> Void,
                release: @escaping @Sendable (Range<Int>) -> Void) {
        self.dtype = dtype
        self.byteCount = byteCount
        self.fill = fill
        self.release = release
    }
}

/// A model seen through canonical names: what the writers consume. Two sources implement it:
/// an HF checkpoint mapped through the name tables (`HFCanonicalModel`) and a `.mal` file.
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
    /// Names of auxiliary files (config.json, tokenizer.json, ...) and their bytes.
    var auxNames: [String] { get }
    func aux(_ name: String) throws -> [UInt8]?
}

extension CanonicalModel {
    public func stream(_ name: String) throws -> TensorStream? { nil }
}

extension MalFile: CanonicalModel {
    public var hfNamePrefix: String? { metadata.hfNamePrefix }
    public var tensors: [CanonicalTensor] {
        modelEntries.map { e in
            CanonicalTensor(name: e.name, dtype: e.dtype, shape: e.shape,
                            scale: e.flags & MalFormat.flagQuantized != 0 ? entries[Int(e.link)].name : nil,
                            aliasOf: e.codec == .alias ? entries[Int(e.link)].name : nil)
        }
    }
    public func load(_ name: String) throws -> Tensor { try tensor(named: name) }
}
