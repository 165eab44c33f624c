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

    public init(
        byteCount: Int, release: (@Sendable (Range<Int>) -> Void)? = nil,
        fill: @escaping @Sendable (Int, Int, UnsafeMutableRawPointer) throws -> Void
    ) {
        self.byteCount = byteCount
        self.fill = fill
        self.release = release
    }

    /// The bytes of an in-memory tensor.
    public static func tensor(_ t: Tensor) -> ByteSource {
        let b = SharedPointer(t.bytes)
        let keep = t.storage
        return ByteSource(byteCount: b.pointer.count) { off, n, dst in
            _ = keep
            dst.copyMemory(from: b.pointer.baseAddress! + off, byteCount: n)
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
        /// Replace an existing file at the destination (at the final rename; `--force`).
        public var replaceExisting = false
        /// The codec of every tensor added without one (nil: chosen per tensor by measured gain).
        /// `.raw` writes a container whose tensors the runtime can use in place (`malrun --mmap`).
        public var codec: MalFormat.Codec?
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

    // Two sets of per-slot buffers (input, byte planes, compressed output): while one set's
    // batch is written by the writer thread, the next batch is compressed into the other.
    private let slots: Int
    private let sets: [BufferSet]
    private let outCapacity: Int
    private let contexts: [OpaquePointer]
    private let writerQueue = DispatchQueue(label: "malconv.writer")
    private let pending = [DispatchGroup(), DispatchGroup()]
    private let writeError = LockedBox<Error?>(nil)
    /// Where the next byte will land once all queued writes are done.
    private var logicalPosition = 0

    final class BufferSet: @unchecked Sendable {
        let input: [SharedPointer<UnsafeMutableRawPointer>], planes: [SharedPointer<UnsafeMutableRawPointer>], output: [SharedPointer<UnsafeMutableRawPointer>]
        init(slots: Int, chunk: Int, capacity: Int) {
            input = (0..<slots).map { _ in SharedPointer(.allocate(byteCount: chunk, alignment: 64)) }
            // + 1: an odd chunk's two nibble planes (FP8) take one byte more than the chunk.
            planes = (0..<slots).map { _ in SharedPointer(.allocate(byteCount: chunk + 1, alignment: 64)) }
            output = (0..<slots).map { _ in SharedPointer(.allocate(byteCount: capacity, alignment: 64)) }
        }
        deinit { for p in input + planes + output { p.pointer.deallocate() } }
    }

    public init(path: String, options: Options = Options()) throws {
        self.options = options
        out = try OutputFile(path: path, replace: options.replaceExisting)
        slots = max(1, options.threads) * 2
        outCapacity = MalFormat.maxStoredChunk(options.chunkSize)
        sets = (0..<2).map { _ in
            BufferSet(
                slots: max(1, options.threads) * 2, chunk: options.chunkSize,
                capacity: MalFormat.maxStoredChunk(options.chunkSize))
        }
        contexts = (0..<slots).map { _ in
            let c = ZSTD_createCCtx()!
            ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, options.level)
            return c
        }
        try out.writeZeros(MalFormat.headerSize)
        logicalPosition = out.position
    }

    deinit {
        drain()
        for c in contexts { ZSTD_freeCCtx(c) }
    }

    /// Waits for queued writes; rethrows the first write error.
    private func drain() { for g in pending { g.wait() } }

    private func checkWrites() throws {
        if let e = writeError.withLock({ $0 }) { throw e }
    }

    /// Queues `chunks` of `set` (or zero padding) for writing, in order.
    private func enqueueWrite(set: Int, buffers: [SharedPointer<UnsafeMutableRawPointer>], lengths: [Int], padding: Int) {
        let out = self.out, errors = writeError
        pending[set].enter()
        writerQueue.async { [pending] in
            defer { pending[set].leave() }
            if errors.withLock({ $0 != nil }) { return }
            do {
                try out.writeZeros(padding)
                for (b, n) in zip(buffers, lengths) { try out.write(UnsafeRawBufferPointer(start: b.pointer, count: n)) }
            } catch {
                errors.withLock { if $0 == nil { $0 = error } }
            }
        }
    }

    /// The codec a tensor of `dtype` gets unless one is forced: byte planes for floats of 2+
    /// bytes, nibble planes for FP8 E4M3 (its exponents compress, its signs and mantissas do not:
    /// one frame of each decodes about twice as fast as one zstd frame of the bytes, within 1% of
    /// its size), plain zstd otherwise. A tensor that gains under 2% is stored raw.
    static func defaultCodec(_ dtype: DType) -> MalFormat.Codec {
        if dtype == .f8e4m3 { return .zstdNibbles }
        return (dtype.byteSize ?? 1) >= 2 && dtype.isFloatingPoint ? .zstdBytePlanes : .zstd
    }

    /// Long because it is one pipelined loop: fill and compress a batch of chunks on all threads,
    /// pick the codec from the first batch, hand the batch to the writer thread; its state (the
    /// buffer sets, the codec, the offsets) would otherwise be passed between pieces.
    /// Adds a tensor. `link` names its scale tensor when `flags` has `flagQuantized`.
    @discardableResult
    public func add(
        name: String, dtype: DType, shape: [Int], source: ByteSource, flags: UInt8 = 0, link: String? = nil,
        codec forced: MalFormat.Codec? = nil
    ) throws -> Int {
        guard names.insert(name).inserted else { throw MalError(.invalidArgument, "tensor written twice", file: out.finalPath, tensor: name) }
        guard let n = elementCount(shape), let bytes = dtype.byteCount(elements: n), bytes == source.byteCount else {
            throw MalError(.invalidArgument, "shape \(shape) of \(dtype.rawValue) does not match \(source.byteCount) bytes", file: out.finalPath, tensor: name)
        }
        defer { drain() }
        let cs = options.chunkSize
        let chunkCount = (bytes + cs - 1) / cs
        let elem = dtype.byteSize ?? 1
        let forced = forced ?? options.codec
        if forced == .zstdNibbles && dtype != .f8e4m3 {
            throw MalError(.invalidArgument, "nibble planes are for F8_E4M3 only, not \(dtype.rawValue)", file: out.finalPath, tensor: name)
        }
        var codec: MalFormat.Codec = forced ?? MalWriter.defaultCodec(dtype)
        var chunks: [MalFormat.Chunk] = []
        chunks.reserveCapacity(chunkCount)
        var stored = 0
        var first = true
        var start = 0
        var batchIndex = 0
        while start < chunkCount {
            let setIndex = batchIndex % 2
            pending[setIndex].wait()  // the set's previous batch is on disk
            try checkWrites()
            let set = sets[setIndex]
            let batch = min(slots, chunkCount - start)
            let sizes = (0..<batch).map { min(cs, bytes - (start + $0) * cs) }
            let box = LockedBox(([UInt64](repeating: 0, count: batch), [Int](repeating: 0, count: batch)))
            let compress = codec != .raw
            let planes = codec == .zstdBytePlanes ? elem : 0, nibbles = codec == .zstdNibbles
            let contexts = SharedPointer(self.contexts)  // each slot's zstd context is used by one task
            let cap = outCapacity, base = start
            try parallelFor(batch, threads: options.threads) { i in
                let n = sizes[i]
                let buf = set.input[i].pointer
                try source.fill((base + i) * cs, n, buf)
                let h = xxh64(UnsafeRawBufferPointer(start: buf, count: n))
                var len = n
                if compress {
                    // Byte planes are compressed as one zstd frame each (concatenated): each plane
                    // gets its own entropy tables, worth ~5% on BF16 over one frame for all planes.
                    var parts: [(UnsafeRawPointer, Int)] = [(UnsafeRawPointer(buf), n)]
                    if planes > 0 {
                        mal_shuffle(set.planes[i].pointer.assumingMemoryBound(to: UInt8.self), buf.assumingMemoryBound(to: UInt8.self), n / planes, planes)
                        let p = UnsafeRawPointer(set.planes[i].pointer)
                        parts = (0..<planes).map { (p + $0 * (n / planes), n / planes) }
                    } else if nibbles {
                        mal_e4m3_split(set.planes[i].pointer.assumingMemoryBound(to: UInt8.self), buf.assumingMemoryBound(to: UInt8.self), n)
                        let p = UnsafeRawPointer(set.planes[i].pointer), h = (n + 1) / 2
                        parts = [(p, h), (p + h, h)]
                    }
                    len = 0
                    for (src, size) in parts {
                        let r = ZSTD_compress2(contexts.pointer[i], set.output[i].pointer + len, cap - len, src, size)
                        if ZSTD_isError(r) != 0 {
                            throw MalError(.ioError, "zstd: \(String(cString: ZSTD_getErrorName(r)))", tensor: nil)
                        }
                        len += r
                    }
                }
                box.withLock {
                    $0.0[i] = h; $0.1[i] = len
                }
            }
            var (hashes, lengths) = box.withLock { $0 }
            source.release?((start * cs)..<min(bytes, (start + batch) * cs))
            if first && forced == nil && compress {
                // Measured gain on the first batch decides the codec for the whole tensor.
                let raw = sizes.reduce(0, +), comp = lengths.reduce(0, +)
                if Double(raw - comp) < options.minGain * Double(raw) {
                    codec = .raw
                    lengths = sizes
                }
            }
            var padding = 0
            if first && codec == .raw {
                padding = (MalFormat.rawAlignment - logicalPosition % MalFormat.rawAlignment) % MalFormat.rawAlignment
                logicalPosition += padding
            }
            first = false
            for i in 0..<batch {
                chunks.append(MalFormat.Chunk(offset: UInt64(logicalPosition), storedLength: UInt32(lengths[i]), hash: hashes[i]))
                logicalPosition += lengths[i]
                stored += lengths[i]
            }
            enqueueWrite(
                set: setIndex, buffers: codec == .raw ? Array(set.input[0..<batch]) : Array(set.output[0..<batch]),
                lengths: lengths, padding: padding)
            start += batch
            batchIndex += 1
        }
        drain()
        try checkWrites()
        if chunkCount == 0 { codec = .raw }
        let entry = MalFormat.Entry(
            name: name, dtype: dtype, codec: codec, flags: flags, shape: shape, chunkSize: UInt32(cs),
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
        entries.append(
            MalFormat.Entry(
                name: name, dtype: e.dtype, codec: .alias, shape: e.shape, chunkSize: 0, link: UInt32(t),
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
        drain()
        try checkWrites()
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
