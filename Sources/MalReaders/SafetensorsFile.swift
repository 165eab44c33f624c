import MalCore

/// One `.safetensors` file, memory-mapped and validated.
///
/// Layout (safetensors spec): `u64 LE N`, N bytes of JSON header, then the data section.
/// Validation follows the reference Rust reader (`SafeTensors::read_metadata` +
/// `Metadata::validate`): header size ≤ 100 MB and inside the file, well-formed JSON, known
/// dtypes, shape × element size = byte length (checked arithmetic), offsets inside the data
/// section, and after sorting by offset every tensor starts where the previous one ended, the
/// first at 0 and the last at the end of the file (no holes, no overlaps, nothing unindexed).
public final class SafetensorsFile: @unchecked Sendable {
    public static let maxHeaderSize = 100_000_000

    public let path: String
    public let mapping: MappedFile
    public let headerSize: Int
    /// Tensors in data order (sorted by offset).
    public let tensors: [TensorInfo]
    public let metadata: [(String, String)]
    private let byName: [String: Int]

    public var dataStart: Int { 8 + headerSize }

    public convenience init(path: String) throws {
        try self.init(mapping: MappedFile(path: path), displayName: path)
    }

    /// Checks the file as the reference reader does. Long because it applies the rules of
    /// `safetensors`' `validate` one after another in their order, each with its own error.
    /// - Parameter displayName: the name errors and `TensorInfo.file` use (a shard's file name).
    public init(mapping: MappedFile, displayName: String) throws {
        let file = displayName
        self.path = mapping.path
        self.mapping = mapping
        let bytes = mapping.bytes
        guard bytes.count >= 8 else {
            throw MalError(.headerTooSmall, "file is \(bytes.count) bytes, smaller than the 8-byte header length", file: file, offset: 0)
        }
        let n = bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian
        guard n <= UInt64(SafetensorsFile.maxHeaderSize) else {
            throw MalError(
                .headerTooLarge, "header length \(n) exceeds the \(SafetensorsFile.maxHeaderSize)-byte limit",
                file: file, offset: 0)
        }
        let headerLen = Int(n)
        guard 8 + headerLen <= bytes.count else {
            throw MalError(
                .invalidHeaderLength, "header length \(n) runs past the end of the \(bytes.count)-byte file",
                file: file, offset: 0)
        }
        headerSize = headerLen
        let header = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + headerLen)])
        var scanner = SafetensorsHeaderScanner(bytes: header, base: 8, file: file)
        let parsed = try scanner.parse()
        metadata = parsed.metadata

        let dataStart = 8 + headerLen
        let dataLength = bytes.count - dataStart
        var infos: [TensorInfo] = []
        infos.reserveCapacity(parsed.entries.count)
        var ranges: [(begin: Int, end: Int, index: Int)] = []
        ranges.reserveCapacity(parsed.entries.count)
        for e in parsed.entries {
            guard let dtype = DType(rawValue: e.dtypeName) else {
                throw MalError(
                    .unknownDType, "unknown dtype '\(e.dtypeName)' (known: \(DType.allCases.map(\.rawValue).joined(separator: ", ")))",
                    file: file, tensor: e.name, offset: e.dtypeOffset)
            }
            guard let count = elementCount(e.shape) else {
                throw MalError(
                    .shapeOverflow, "shape \(e.shape) has more elements than fit in 64 bits",
                    file: file, tensor: e.name, offset: e.entryOffset)
            }
            let (bits, overflow) = count.multipliedReportingOverflow(by: dtype.bitSize)
            if overflow {
                throw MalError(
                    .shapeOverflow, "shape \(e.shape) of \(dtype.rawValue) has a byte size that does not fit in 64 bits",
                    file: file, tensor: e.name, offset: e.entryOffset)
            }
            if bits % 8 != 0 {
                throw MalError(
                    .misalignedSlice, "\(count) elements of \(dtype.bitSize)-bit \(dtype.rawValue) do not end on a byte boundary",
                    file: file, tensor: e.name, offset: e.entryOffset)
            }
            if e.end < e.begin {
                throw MalError(
                    .offsetsReversed, "data_offsets [\(e.begin), \(e.end)] end before they begin",
                    file: file, tensor: e.name, offset: e.entryOffset)
            }
            let size = e.end - e.begin
            if size != bits / 8 {
                throw MalError(
                    .tensorSizeMismatch,
                    "data_offsets span \(size) bytes but shape \(e.shape) of \(dtype.rawValue) needs \(bits / 8)",
                    file: file, tensor: e.name, offset: e.entryOffset)
            }
            if e.end > dataLength {
                throw MalError(
                    .offsetOutOfFile,
                    "data_offsets [\(e.begin), \(e.end)] run past the end of the \(dataLength)-byte data section",
                    file: file, tensor: e.name, offset: dataStart + min(e.begin, dataLength))
            }
            ranges.append((e.begin, e.end, infos.count))
            infos.append(
                TensorInfo(
                    name: e.name, dtype: dtype, shape: e.shape, byteCount: size,
                    fileOffset: dataStart + e.begin, file: file))
        }
        ranges.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var expected = 0
        var previous: String?
        for r in ranges {
            let name = infos[r.index].name
            if r.begin < expected {
                throw MalError(
                    .overlappingTensors,
                    "data [\(r.begin), \(r.end)) overlaps tensor '\(previous ?? "?")' which ends at \(expected)",
                    file: file, tensor: name, offset: dataStart + r.begin)
            }
            if r.begin > expected {
                throw MalError(
                    .holeInData,
                    "bytes [\(expected), \(r.begin)) of the data section belong to no tensor (a hole before this tensor)",
                    file: file, tensor: name, offset: dataStart + expected)
            }
            expected = r.end
            previous = name
        }
        if expected != dataLength {
            throw MalError(
                .incompleteData,
                "the data section has \(dataLength) bytes but the tensors cover \(expected): the file is not fully indexed",
                file: file, offset: dataStart + expected)
        }
        tensors = ranges.map { infos[$0.index] }
        var map: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { map[t.name] = i }
        byName = map
    }

    public func info(_ name: String) -> TensorInfo? { byName[name].map { tensors[$0] } }

    /// The tensor's bytes: a view into the mapping when suitably aligned for its element type,
    /// otherwise an aligned copy (the format does not promise alignment).
    public func tensor(_ info: TensorInfo) -> Tensor {
        let slice = UnsafeRawBufferPointer(rebasing: mapping.bytes[info.fileOffset..<(info.fileOffset + info.byteCount)])
        let align = max(info.dtype.byteSize ?? 1, 1)
        let aligned = slice.baseAddress.map { Int(bitPattern: $0) % align == 0 } ?? true
        let storage = aligned ? TensorStorage(borrowing: slice, owner: mapping) : TensorStorage(copying: slice)
        return Tensor(name: info.name, dtype: info.dtype, shape: info.shape, storage: storage)
    }

    public func tensor(named name: String) throws -> Tensor {
        guard let info = info(name) else {
            throw MalError(.notFound, "no such tensor", file: path, tensor: name)
        }
        return tensor(info)
    }
}
