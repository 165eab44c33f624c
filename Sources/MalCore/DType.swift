/// Element types of the safetensors format (spec: `Dtype` in huggingface/safetensors `tensor.rs`).
///
/// `bitSize` drives every byte-length computation; sub-byte types (F4, F6) must end on a byte
/// boundary, which `byteCount(elements:)` enforces.
public enum DType: String, CaseIterable, Sendable, Codable, Comparable {
    case bool = "BOOL"
    case f4 = "F4"
    case f6e2m3 = "F6_E2M3"
    case f6e3m2 = "F6_E3M2"
    case u8 = "U8"
    case i8 = "I8"
    case f8e5m2 = "F8_E5M2"
    case f8e4m3 = "F8_E4M3"
    case f8e8m0 = "F8_E8M0"
    case f8e4m3fnuz = "F8_E4M3FNUZ"
    case f8e5m2fnuz = "F8_E5M2FNUZ"
    case i16 = "I16"
    case u16 = "U16"
    case f16 = "F16"
    case bf16 = "BF16"
    case i32 = "I32"
    case u32 = "U32"
    case f32 = "F32"
    case c64 = "C64"
    case f64 = "F64"
    case i64 = "I64"
    case u64 = "U64"

    /// Size of one element in bits.
    public var bitSize: Int {
        switch self {
        case .f4: return 4
        case .f6e2m3, .f6e3m2: return 6
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3, .f8e8m0, .f8e4m3fnuz, .f8e5m2fnuz: return 8
        case .i16, .u16, .f16, .bf16: return 16
        case .i32, .u32, .f32: return 32
        case .c64, .f64, .i64, .u64: return 64
        }
    }

    /// Bytes per element for byte-aligned types, nil for sub-byte types.
    public var byteSize: Int? { bitSize % 8 == 0 ? bitSize / 8 : nil }

    public var isFloatingPoint: Bool {
        switch self {
        case .bool, .u8, .i8, .i16, .u16, .i32, .u32, .i64, .u64: return false
        default: return true
        }
    }

    /// The FP8 formats a block quantiser can emit or a kernel can decode.
    public var isFP8: Bool {
        switch self {
        case .f8e4m3, .f8e5m2, .f8e4m3fnuz, .f8e5m2fnuz: return true
        default: return false
        }
    }

    /// Position in the spec's increasing-alignment order (the writer's sort key).
    public var alignmentRank: Int { DType.allCases.firstIndex(of: self)! }

    public static func < (a: DType, b: DType) -> Bool { a.alignmentRank < b.alignmentRank }

    /// Number of bytes `elements` values occupy, or nil on overflow or a sub-byte tail.
    public func byteCount(elements: Int) -> Int? {
        let (bits, overflow) = elements.multipliedReportingOverflow(by: bitSize)
        if overflow || bits % 8 != 0 { return nil }
        return bits / 8
    }
}

/// Product of a shape's dimensions with overflow detection (nil on overflow or a negative dim).
public func elementCount(_ shape: [Int]) -> Int? {
    var n = 1
    for d in shape {
        if d < 0 { return nil }
        let (p, o) = n.multipliedReportingOverflow(by: d)
        if o { return nil }
        n = p
    }
    return n
}
