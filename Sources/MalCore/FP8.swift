import CMalKernels

/// Runs an element-wise C codec over an array.
func convertArray<A, B>(_ x: [A], fill: B, _ codec: (UnsafePointer<A>, UnsafeMutablePointer<B>, Int) -> Void) -> [B] {
    var out = [B](repeating: fill, count: x.count)
    x.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { d in
        if let sp = s.baseAddress, let dp = d.baseAddress { codec(sp, dp, x.count) }
    } }
    return out
}

/// FP8 number codecs (OCP FP8). E4M3 is the "fn" variant of DeepSeek-V3 and torch
/// (`float8_e4m3fn`): bias 7, max ±448, no infinities, NaN = S.1111.111.
public enum FP8 {
    /// float32 → E4M3, round to nearest even. `saturate` clamps to ±448 first (torch's cast, what a
    /// quantiser emits); otherwise |x| > 464 and ±inf become NaN (ml_dtypes). NaN stays NaN.
    public static func encodeE4M3(_ x: [Float], saturate: Bool = true) -> [UInt8] {
        convertArray(x, fill: 0) { mal_f32_to_e4m3($1, $0, $2, saturate ? 1 : 0) }
    }

    public static func decodeE4M3(_ b: [UInt8]) -> [Float] { convertArray(b, fill: 0) { mal_e4m3_to_f32($1, $0, $2) } }

    /// float32 → E5M2 (IEEE-like: overflow to ±inf unless `saturate`).
    public static func encodeE5M2(_ x: [Float], saturate: Bool = false) -> [UInt8] {
        convertArray(x, fill: 0) { mal_f32_to_e5m2($1, $0, $2, saturate ? 1 : 0) }
    }

    public static func decodeE5M2(_ b: [UInt8]) -> [Float] { convertArray(b, fill: 0) { mal_e5m2_to_f32($1, $0, $2) } }
}

/// BF16 and F16 codecs over arrays (round to nearest even; NaN → quiet NaN 0x7fc0 with its sign).
public enum HalfFloat {
    public static func encodeBF16(_ x: [Float]) -> [UInt16] { convertArray(x, fill: 0) { mal_f32_to_bf16($1, $0, $2) } }
    public static func decodeBF16(_ b: [UInt16]) -> [Float] { convertArray(b, fill: 0) { mal_bf16_to_f32($1, $0, $2) } }
    public static func encodeF16(_ x: [Float]) -> [UInt16] { convertArray(x, fill: 0) { mal_f32_to_f16($1, $0, $2) } }
    public static func decodeF16(_ b: [UInt16]) -> [Float] { convertArray(b, fill: 0) { mal_f16_to_f32($1, $0, $2) } }
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
