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
    public var provenance: ModelProvenance {
        ModelProvenance(recorded: metadata.provenance.sources, droppedTensors: metadata.provenance.droppedTensors)
    }
}
