import MalCore

/// A `.mal` file is a canonical model as it stands: its entries are canonical tensors, quantised
/// ones linked to their scale grids, aliases to their targets; its provenance is the recorded one.
extension MalFile: CanonicalModel {
    public var hfNamePrefix: String? { metadata.hfNamePrefix }
    public var tensors: [CanonicalTensor] {
        modelEntries.map { e in
            let quantized = e.flags & MalFormat.flagQuantized != 0
            return CanonicalTensor(
                name: e.name, dtype: e.dtype, shape: e.shape, scale: quantized ? entries[Int(e.link)].name : nil,
                aliasOf: e.codec == .alias ? entries[Int(e.link)].name : nil,
                block: quantized ? metadata.block(of: e.name) : nil)
        }
    }
    public func load(_ name: String) throws -> Tensor { try tensor(named: name) }

    /// Compressed tensors decode in place (raw ones are better read where they lie, `load`).
    public func decode(_ name: String, into allocate: (Int) throws -> UnsafeMutableRawPointer) throws -> Bool {
        guard let e = entry(name).map(resolved), e.codec != .raw, e.codec != .alias, e.chunkSize > 0 else { return false }
        try decode(e, into: try allocate(Int(e.rawLength)), threads: availableCores, verify: true)
        return true
    }

    /// A tensor a range at a time: the chunks that overlap the range are decoded (and checked)
    /// into the caller's buffer, so a transform or writer that passes a tensor through holds a few
    /// chunks of it, never the whole tensor; the compressed chunks' pages are dropped as they go.
    public func stream(_ name: String) throws -> TensorStream? {
        guard let e = entry(name).map(resolved), e.codec != .alias, e.chunkSize > 0 else { return nil }
        let chunk = Int(e.chunkSize), total = Int(e.rawLength)
        let pool = BufferPool(size: chunk), scratch = BufferPool(size: chunk)
        let file = SharedPointer(self)
        return TensorStream(
            dtype: e.dtype, byteCount: total,
            fill: { offset, count, dst in
                var at = offset
                while at < offset + count {
                    let i = at / chunk, start = i * chunk, end = min(total, start + chunk)
                    let take = min(end, offset + count) - at
                    if at == start && take == end - start {  // the whole chunk: straight into place
                        try file.pointer.decodeChunk(e, i, into: dst + (at - offset), pool: pool, verify: true, streaming: true)
                    } else {
                        let buf = scratch.get()
                        defer { scratch.put(buf) }
                        try file.pointer.decodeChunk(e, i, into: buf, pool: pool, verify: true, streaming: true)
                        (dst + (at - offset)).copyMemory(from: buf + (at - start), byteCount: take)
                    }
                    at += take
                }
            },
            release: { _ in })
    }
    /// Checks every raw tensor's chunks against their XXH64 where they lie (one thread, in file
    /// order, read ahead); the first mismatch names the tensor, chunk and offset.
    public func deferredCheck() -> (@Sendable () throws -> Void)? {
        guard defersRawChecks else { return nil }
        let raw = entries.filter { $0.codec == .raw }.sorted { ($0.chunks.first?.offset ?? 0) < ($1.chunks.first?.offset ?? 0) }
        return { [self] in
            for e in raw {
                for (i, c) in e.chunks.enumerated() {
                    readAhead.consumer(at: Int(c.offset) + Int(c.storedLength))
                    try checkStoredChunk(e, i)
                }
            }
        }
    }

    public var provenance: ModelProvenance {
        ModelProvenance(recorded: metadata.provenance.sources, droppedTensors: metadata.provenance.droppedTensors)
    }
}
