import MalCore

/// A model without its multi-token-prediction layers (`--drop-mtp`): every tensor of the layers
/// from `spec.layers` on leaves, the spec says `mtpLayers: 0`, and the carried `config.json` says
/// `num_nextn_predict_layers: 0`, so what is written loads as the plain model it now is.
public final class WithoutMTP: CanonicalModel, @unchecked Sendable {
    public let base: CanonicalModel
    public let spec: ModelSpec
    public let tensors: [CanonicalTensor]
    /// What was left out: tensor count and stored bytes (aliases count no bytes).
    public let droppedTensors: Int
    public let droppedBytes: Int

    public init(base: CanonicalModel) {
        self.base = base
        var s = base.spec
        let first = s.layers
        s.mtpLayers = 0
        spec = s
        func isMTP(_ name: String) -> Bool {
            let parts = name.split(separator: ".", maxSplits: 2)
            return parts.count >= 2 && parts[0] == "blk" && (Int(parts[1]).map { $0 >= first } ?? false)
        }
        let (drop, keep) = (base.tensors.filter { isMTP($0.name) }, base.tensors.filter { !isMTP($0.name) })
        tensors = keep
        droppedTensors = drop.count
        droppedBytes = drop.filter { $0.aliasOf == nil }.reduce(0) { $0 + ($1.byteCount ?? 0) }
    }

    public var hfNamePrefix: String? { base.hfNamePrefix }
    public var auxNames: [String] { base.auxNames }
    public var provenance: ModelProvenance { base.provenance }

    public func aux(_ name: String) throws -> [UInt8]? {
        guard let bytes = try base.aux(name) else { return nil }
        guard name == "config.json" else { return bytes }
        let cfg = try bytes.withUnsafeBytes { try JSONValue.parse($0, file: "config.json") }
        guard case let .object(pairs) = cfg else { return bytes }
        let edited = JSONValue.object(pairs.map { $0.0 == "num_nextn_predict_layers" ? ($0.0, .int(0)) : $0 })
        return Array(edited.prettySerialized.utf8)
    }

    public func load(_ name: String) throws -> Tensor { try base.load(name) }
    public func stream(_ name: String) throws -> TensorStream? { try base.stream(name) }
}
