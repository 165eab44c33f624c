import CMalKernels

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
