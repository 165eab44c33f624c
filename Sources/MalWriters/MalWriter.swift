import CMalKernels
import CZstd
import Foundation
import MalCore

/// Produces a tensor's output bytes on demand: `fill(offset, count, dst)` writes bytes
/// [offset, offset+count) of the tensor. Chunks are filled in parallel, so `fill` must be
/// thread-safe; `release` is called after each batch so a streaming source can drop its pages.
public struct ByteSource: @unchecked Sendable {
    public let byteCount: Int
    public let fill: @Sendable (Int, Int, UnsafeMutableRawPointer) throws -> Void
    public let release: (@Sendable (Range<Int>) -> Void)?

    public init(byteCount: Int, release: (@Sendable (Range<Int>) -> Void)? = nil,
                fill: @escaping @Sendable (Int, Int, UnsafeMutableRawPointer) throws -> Void) {
        self.byteCount = byteCount
        self.fill = fill
        self.release = release
    }

    /// The bytes of an in-memory tensor.
    public static func tensor(_ t: Tensor) -> ByteSource {
        let b = SendableBytes(t.bytes)
        let keep = t.storage
        return ByteSource(byteCount: b.buffer.count) { off, n, dst in
            _ = keep
            dst.copyMemory(from: b.buffer.baseAddress! + off, byteCount: n)
        }
    }

    public static func bytes(_ data: [UInt8]) -> ByteSource {
        ByteSource(byteCount: data.count) { off, n, dst in
            data.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress! + off, byteCount: n) }
        }
    }
}

/// Writes a `.mal` container (`Formats/MAL.md`), one tensor at a time.
///
/// Each tensor is cut into chunks (1 MiB by default) that are filled, hashed, split into byte
/// planes (16/32/64-bit floats) and zstd-compressed on all threads, a batch at a time, so memory
/// is a few chunks per thread whatever the model size. The codec is chosen per tensor by measured
/// gain: if the first batch compresses by less than `minGain`, the tensor is stored raw and
/// 64-byte aligned (mappable without a copy).
public final class MalWriter {
    public struct Options: Sendable {
        public var level: Int32 = 1
        public var threads: Int = availableCores
        public var chunkSize: Int = MalFormat.defaultChunkSize
        /// Smallest relative saving worth compressing for (else raw).
        public var minGain: Double = 0.02
        public init() {}
    }

    /// What happened to one tensor (for summaries and benchmarks).
    public struct Record: Sendable {
        public var name: String
        public var dtype: DType
        public var codec: MalFormat.Codec
        public var rawBytes: Int
        public var storedBytes: Int
    }

    public let options: Options
    let out: OutputFile
    var entries: [MalFormat.Entry] = []
    var pendingLinks: [(entry: Int, target: String)] = []
    public private(set) var records: [Record] = []
    private var names = Set<String>()

    // Per-slot buffers reused across tensors: input, byte planes, compressed output.
    private let slots: Int
    private let inBufs: [SendableRawPointer]
    private let planeBufs: [SendableRawPointer]
    private let outBufs: [SendableRawPointer]
    private let outCapacity: Int
    private let contexts: [OpaquePointer]

    public init(path: String, options: Options = Options()) throws {
        self.options = options
        out = try OutputFile(path: path)
        slots = max(1, options.threads) * 2
        outCapacity = Int(ZSTD_compressBound(options.chunkSize))
        inBufs = (0..<slots).map { _ in SendableRawPointer(.allocate(byteCount: options.chunkSize, alignment: 64)) }
        planeBufs = (0..<slots).map { _ in SendableRawPointer(.allocate(byteCount: options.chunkSize, alignment: 64)) }
        outBufs = (0..<slots).map { _ in SendableRawPointer(.allocate(byteCount: Int(ZSTD_compressBound(options.chunkSize)), alignment: 64)) }
        contexts = (0..<slots).map { _ in
            let c = ZSTD_createCCtx()!
            ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, options.level)
            return c
        }
        try out.writeZeros(MalFormat.headerSize)
    }

    deinit {
        for p in inBufs + planeBufs + outBufs { p.pointer.deallocate() }
        for c in contexts { ZSTD_freeCCtx(c) }
    }

    /// Adds a tensor. `link` names its scale tensor when `flags` has `flagQuantized`.
    @discardableResult
    public func add(name: String, dtype: DType, shape: [Int], source: ByteSource, flags: UInt8 = 0, link: String? = nil,
                    codec forced: MalFormat.Codec? = nil) throws -> Int {
        guard names.insert(name).inserted else { throw MalError(.invalidArgument, "tensor written twice", file: out.finalPath, tensor: name) }
        guard let n = elementCount(shape), let bytes = dtype.byteCount(elements: n), bytes == source.byteCount else {
            throw MalError(.invalidArgument, "shape \(shape) of \(dtype.rawValue) does not match \(source.byteCount) bytes", file: out.finalPath, tensor: name)
        }
        let cs = options.chunkSize
        let chunkCount = (bytes + cs - 1) / cs
        let elem = dtype.byteSize ?? 1
        var codec: MalFormat.Codec = forced ?? ((elem >= 2 && dtype.isFloatingPoint) ? .zstdBytePlanes : .zstd)
        var chunks: [MalFormat.Chunk] = []
        chunks.reserveCapacity(chunkCount)
        var stored = 0
        var first = true
        var start = 0
        while start < chunkCount {
            let batch = min(slots, chunkCount - start)
            let sizes = (0..<batch).map { min(cs, bytes - (start + $0) * cs) }
            var hashes = [UInt64](repeating: 0, count: batch)
            var lengths = [Int](repeating: 0, count: batch)
            let hashBox = LockedBox((hashes, lengths))
            let compress = codec != .raw
            let planes = codec == .zstdBytePlanes ? elem : 0
            let inBufs = self.inBufs, planeBufs = self.planeBufs, outBufs = self.outBufs, contexts = SendableContexts(contexts)
            let cap = outCapacity, base = start
            try parallelFor(batch, threads: options.threads) { i in
                let n = sizes[i]
                let buf = inBufs[i].pointer
                try source.fill((base + i) * cs, n, buf)
                let h = xxh64(UnsafeRawBufferPointer(start: buf, count: n))
                var len = n
                if compress {
                    var src = UnsafeRawPointer(buf)
                    if planes > 0 {
                        mal_shuffle(planeBufs[i].pointer.assumingMemoryBound(to: UInt8.self), buf.assumingMemoryBound(to: UInt8.self), n / planes, planes)
                        src = UnsafeRawPointer(planeBufs[i].pointer)
                    }
                    let r = ZSTD_compress2(contexts.items[i], outBufs[i].pointer, cap, src, n)
                    if ZSTD_isError(r) != 0 {
                        throw MalError(.ioError, "zstd: \(String(cString: ZSTD_getErrorName(r)))", tensor: nil)
                    }
                    len = r
                }
                hashBox.withLock { $0.0[i] = h; $0.1[i] = len }
            }
            (hashes, lengths) = hashBox.withLock { $0 }
            if first && forced == nil && compress {
                // Measured gain on the first batch decides the codec for the whole tensor.
                let raw = sizes.reduce(0, +), comp = lengths.reduce(0, +)
                if Double(raw - comp) < options.minGain * Double(raw) {
                    codec = .raw
                    lengths = sizes
                }
            }
            if first && codec == .raw {
                let pad = (MalFormat.rawAlignment - out.position % MalFormat.rawAlignment) % MalFormat.rawAlignment
                try out.writeZeros(pad)
            }
            first = false
            for i in 0..<batch {
                let offset = out.position
                let buf = codec == .raw ? inBufs[i].pointer : outBufs[i].pointer
                try out.write(UnsafeRawBufferPointer(start: buf, count: lengths[i]))
                chunks.append(MalFormat.Chunk(offset: UInt64(offset), storedLength: UInt32(lengths[i]), hash: hashes[i]))
                stored += lengths[i]
            }
            source.release?((start * cs)..<min(bytes, (start + batch) * cs))
            start += batch
        }
        if chunkCount == 0 { codec = .raw }
        let entry = MalFormat.Entry(name: name, dtype: dtype, codec: codec, flags: flags, shape: shape, chunkSize: UInt32(cs),
                                    rawLength: UInt64(bytes), hash: MalFormat.tensorHash(chunks.map(\.hash)), chunks: chunks)
        entries.append(entry)
        if let link { pendingLinks.append((entries.count - 1, link)) }
        records.append(Record(name: name, dtype: dtype, codec: codec, rawBytes: bytes, storedBytes: stored))
        return entries.count - 1
    }

    /// Adds `name` as an alias of the already written tensor `target` (tied or shared weights).
    public func addAlias(name: String, target: String) throws {
        guard names.insert(name).inserted else { throw MalError(.invalidArgument, "tensor written twice", file: out.finalPath, tensor: name) }
        guard let t = entries.firstIndex(where: { $0.name == target }), entries[t].codec != .alias else {
            throw MalError(.invalidArgument, "alias target '\(target)' has not been written", file: out.finalPath, tensor: name)
        }
        let e = entries[t]
        entries.append(MalFormat.Entry(name: name, dtype: e.dtype, codec: .alias, shape: e.shape, chunkSize: 0, link: UInt32(t),
                                       rawLength: e.rawLength, hash: e.hash, chunks: []))
        records.append(Record(name: name, dtype: e.dtype, codec: .alias, rawBytes: Int(e.rawLength), storedBytes: 0))
    }

    /// Writes metadata, table and header, then renames the file into place.
    public func finish(metadata: MalMetadata) throws {
        for (i, target) in pendingLinks {
            guard let t = entries.firstIndex(where: { $0.name == target }) else {
                throw MalError(.invalidArgument, "linked tensor '\(target)' was not written", file: out.finalPath, tensor: entries[i].name)
            }
            entries[i].link = UInt32(t)
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let meta = [UInt8](try enc.encode(metadata))
        var h = MalFormat.Header()
        h.metadataOffset = UInt64(out.position)
        h.metadataLength = UInt64(meta.count)
        h.metadataHash = xxh64(meta)
        try out.write(meta)
        var w = ByteWriter()
        w.u32(UInt32(entries.count))
        w.u32(0)
        for e in entries { e.encode(into: &w) }
        h.tableOffset = UInt64(out.position)
        h.tableLength = UInt64(w.data.count)
        h.tableHash = xxh64(w.data)
        try out.write(w.data)
        h.fileLength = UInt64(out.position)
        try out.pwrite(h.encoded(), at: 0)
        try out.commit()
    }

    public func abandon() { out.abandon() }

    public var bytesWritten: Int { out.position }
}

struct SendableContexts: @unchecked Sendable {
    let items: [OpaquePointer]
    init(_ c: [OpaquePointer]) { items = c }
}
