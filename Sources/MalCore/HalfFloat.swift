import CMalKernels

/// BF16 and F16 codecs over arrays (round to nearest even; NaN → quiet NaN 0x7fc0 with its sign).
public enum HalfFloat {
    public static func encodeBF16(_ x: [Float]) -> [UInt16] { convertArray(x, fill: 0) { mal_f32_to_bf16($1, $0, $2) } }
    public static func decodeBF16(_ b: [UInt16]) -> [Float] { convertArray(b, fill: 0) { mal_bf16_to_f32($1, $0, $2) } }
    public static func encodeF16(_ x: [Float]) -> [UInt16] { convertArray(x, fill: 0) { mal_f32_to_f16($1, $0, $2) } }
    public static func decodeF16(_ b: [UInt16]) -> [Float] { convertArray(b, fill: 0) { mal_f16_to_f32($1, $0, $2) } }
}

/// Runs an element-wise C codec over an array.
func convertArray<A, B>(_ x: [A], fill: B, _ codec: (UnsafePointer<A>, UnsafeMutablePointer<B>, Int) -> Void) -> [B] {
    var out = [B](repeating: fill, count: x.count)
    x.withUnsafeBufferPointer { s in
        out.withUnsafeMutableBufferPointer { d in
            if let sp = s.baseAddress, let dp = d.baseAddress { codec(sp, dp, x.count) }
        }
    }
    return out
}
