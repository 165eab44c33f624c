import CMalKernels

/// Element-wise dtype casts between the 16/32-bit float formats, and from F64 (round to nearest
/// even; NaN stays NaN, overflow becomes ±inf). FP8 codecs live with the block quantiser.
public enum FloatCast {
    /// Types `cast` converts from; it converts to all of them but F64.
    public static let supported: Set<DType> = [.f64, .f32, .f16, .bf16]

    /// Converts `count` elements from `src` (dtype `from`) into `dst` (dtype `to`).
    /// `scratch` must hold `count` floats when neither side is F32.
    public static func cast(
        _ src: UnsafeRawPointer, from: DType, _ dst: UnsafeMutableRawPointer, to: DType, count: Int,
        scratch: UnsafeMutablePointer<Float>?
    ) {
        if from == to { dst.copyMemory(from: src, byteCount: count * (from.byteSize ?? 1)); return }
        let f32: UnsafePointer<Float>
        switch from {
        case .f32: f32 = src.assumingMemoryBound(to: Float.self)
        case .bf16:
            let out = to == .f32 ? dst.assumingMemoryBound(to: Float.self) : scratch!
            mal_bf16_to_f32(out, src.assumingMemoryBound(to: UInt16.self), count)
            f32 = UnsafePointer(out)
        case .f16:
            let out = to == .f32 ? dst.assumingMemoryBound(to: Float.self) : scratch!
            mal_f16_to_f32(out, src.assumingMemoryBound(to: UInt16.self), count)
            f32 = UnsafePointer(out)
        case .f64:
            let out = to == .f32 ? dst.assumingMemoryBound(to: Float.self) : scratch!
            for i in 0..<count { out[i] = Float(src.loadUnaligned(fromByteOffset: i * 8, as: Double.self)) }
            f32 = UnsafePointer(out)
        default: preconditionFailure("FloatCast from \(from)")
        }
        switch to {
        case .f32: break
        case .bf16: mal_f32_to_bf16(dst.assumingMemoryBound(to: UInt16.self), f32, count)
        case .f16: mal_f32_to_f16(dst.assumingMemoryBound(to: UInt16.self), f32, count)
        default: preconditionFailure("FloatCast to \(to)")
        }
    }
}

/// Finds NaN and infinity in stored float tensors: `convert` stops at the first one (a broken
/// checkpoint, or a cast to F16 that overflowed) instead of writing a model that computes NaN.
public enum NonFiniteScan {
    /// The dtypes it checks (those with NaN or infinity codes).
    public static let covered: Set<DType> = [.f64, .f32, .f16, .bf16, .f8e4m3, .f8e5m2]

    /// Index of the first NaN or infinity among `count` elements of `dtype` at `p`; nil when there is
    /// none or the dtype has no such codes.
    public static func firstIndex(_ p: UnsafeRawPointer, dtype: DType, count: Int) -> Int? {
        let i: Int64
        switch dtype {
        case .f32: i = mal_first_nonfinite_f32(p.assumingMemoryBound(to: Float.self), count)
        case .bf16: i = mal_first_nonfinite_16(p.assumingMemoryBound(to: UInt16.self), count, 0x7F80)
        case .f16: i = mal_first_nonfinite_16(p.assumingMemoryBound(to: UInt16.self), count, 0x7C00)
        case .f8e4m3: i = mal_first_nonfinite_8(p.assumingMemoryBound(to: UInt8.self), count, 0x7F)
        case .f8e5m2: i = mal_first_nonfinite_8(p.assumingMemoryBound(to: UInt8.self), count, 0x7C)
        case .f64:
            return (0..<count).first { !p.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self).isFinite }
        default: return nil
        }
        return i < 0 ? nil : Int(i)
    }

    /// Index of the first NaN or infinity in `values`, or nil.
    public static func firstIndex(_ values: [Float]) -> Int? {
        values.withUnsafeBytes { firstIndex($0.baseAddress!, dtype: .f32, count: values.count) }
    }
}

/// Converts `count` elements of a float tensor (F32, F16, BF16, F8_E4M3, F8_E5M2) to float32.
public func widenToFloat32(_ src: UnsafeRawPointer, dtype: DType, count: Int, into dst: UnsafeMutablePointer<Float>) throws {
    switch dtype {
    case .f32: dst.update(from: src.assumingMemoryBound(to: Float.self), count: count)
    case .bf16: mal_bf16_to_f32(dst, src.assumingMemoryBound(to: UInt16.self), count)
    case .f16: mal_f16_to_f32(dst, src.assumingMemoryBound(to: UInt16.self), count)
    case .f8e4m3: mal_e4m3_to_f32(dst, src.assumingMemoryBound(to: UInt8.self), count)
    case .f8e5m2: mal_e5m2_to_f32(dst, src.assumingMemoryBound(to: UInt8.self), count)
    default: throw MalError(.unsupported, "cannot read \(dtype.rawValue) as float")
    }
}
