/// Shape of one quantisation block: `rows × cols`; `cols == 0` means a whole row (per-channel).
public struct BlockShape: Equatable, Sendable, CustomStringConvertible {
    public var rows: Int
    public var cols: Int
    public init(rows: Int, cols: Int) { self.rows = rows; self.cols = cols }

    public static let deepseek = BlockShape(rows: 128, cols: 128)

    /// The model-wide block: `quantization_config.weight_block_size` of the spec, else DeepSeek-V3's
    /// 128×128. A tensor's own block (`CanonicalTensor.block`) overrides it.
    public static func modelDefault(_ spec: ModelSpec) -> BlockShape {
        if let b = spec.quantization?.weightBlockSize, b.count == 2 { return BlockShape(rows: b[0], cols: b[1]) }
        return .deepseek
    }

    public var array: [Int] { [rows, cols] }

    /// Parses `128x128`, `1x128`, `per-channel`.
    public init?(_ s: String) {
        if s == "per-channel" { self.init(rows: 1, cols: 0); return }
        let parts = s.lowercased().split(separator: "x")
        guard parts.count == 2, let r = Int(parts[0]), let c = Int(parts[1]), r > 0, c > 0, r <= 1 << 20, c <= 1 << 20 else { return nil }
        self.init(rows: r, cols: c)
    }

    public var description: String { cols == 0 ? "per-channel" : "\(rows)x\(cols)" }

    /// Block columns for a matrix of `cols` columns.
    public func width(_ matrixCols: Int) -> Int { cols == 0 ? max(matrixCols, 1) : cols }

    /// Shape of the scale grid of an `[out, in]` weight.
    public func scaleShape(_ shape: [Int]) -> [Int] {
        [(shape[0] + rows - 1) / rows, (shape[1] + width(shape[1]) - 1) / width(shape[1])]
    }
}
