import Foundation
import MalTestSupport
import Testing
import MalCore
import MalReaders

/// Loads a tensor of a fixture file as raw bytes.
func fixtureTensor(_ file: String, _ name: String) throws -> [UInt8] {
    let f = try SafetensorsFile(path: Fixtures.fixtures + "/fp8/" + file)
    return try f.tensor(named: name).byteArray
}

func floats(_ b: [UInt8]) -> [Float] { b.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) } }
func u16s(_ b: [UInt8]) -> [UInt16] { b.withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) } }

@Suite("Number codecs (bit-exact against the fixtures)")
struct CodecTests {
    @Test func e4m3EncodeSatfiniteMatchesEveryVector() throws {
        let input = floats(try fixtureTensor("e4m3_encode.safetensors", "input"))
        let expected = try fixtureTensor("e4m3_encode.safetensors", "expected_satfinite")
        let isNaN = try fixtureTensor("e4m3_encode.safetensors", "input_is_nan")
        #expect(input.count == 100_000)
        let got = FP8.encodeE4M3(input, saturate: true)
        var mismatches = 0
        for i in input.indices {
            if isNaN[i] != 0 { if got[i] & 0x7F != 0x7F { mismatches += 1 }; continue }
            if got[i] != expected[i] { mismatches += 1 }
        }
        #expect(mismatches == 0)
    }

    @Test func e4m3EncodeNonSaturatingMatchesMLDtypes() throws {
        let input = floats(try fixtureTensor("e4m3_encode.safetensors", "input"))
        let expected = try fixtureTensor("e4m3_encode.safetensors", "expected")
        let got = FP8.encodeE4M3(input, saturate: false)
        var mismatches = 0
        for i in input.indices where got[i] != expected[i] {
            // Any NaN encoding is fine for NaN results.
            if got[i] & 0x7F == 0x7F && expected[i] & 0x7F == 0x7F { continue }
            mismatches += 1
        }
        #expect(mismatches == 0)
    }

    @Test func e4m3DecodeAll256() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.fixtures + "/fp8/e4m3_decode.json"))
        let json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let rows = json["entries"] as! [[String: Any]]
        #expect(rows.count == 256)
        let all = (0..<256).map { UInt8($0) }
        let decoded = FP8.decodeE4M3(all)
        for (i, row) in rows.enumerated() {
            let code = row["bits"] as! Int
            #expect(code == i)
            if row["is_nan"] as? Bool == true {
                #expect(decoded[code].isNaN, "code \(code)")
            } else {
                let bits = UInt32((row["f32_bits"] as! String).dropFirst(2), radix: 16)!
                #expect(decoded[code].bitPattern == bits, "code \(code)")
            }
        }
        // Every non-NaN value encodes back to its own code.
        let back = FP8.encodeE4M3(decoded, saturate: true)
        for c in 0..<256 where c & 0x7F != 0x7F { #expect(back[c] == UInt8(c), "code \(c)") }
    }

    @Test func bf16RoundMatchesEveryVector() throws {
        let input = floats(try fixtureTensor("bf16_round.safetensors", "input"))
        let expected = u16s(try fixtureTensor("bf16_round.safetensors", "expected"))
        let isNaN = try fixtureTensor("bf16_round.safetensors", "input_is_nan")
        let got = HalfFloat.encodeBF16(input)
        var mismatches = 0
        for i in input.indices {
            if isNaN[i] != 0 { if got[i] & 0x7FFF <= 0x7F80 { mismatches += 1 }; continue }
            if got[i] != expected[i] { mismatches += 1 }
        }
        #expect(mismatches == 0)
    }

    @Test func exhaustiveBF16() {
        // Every BF16 value decodes exactly and encodes back to itself (NaNs to a quiet NaN).
        let all = (0...0xFFFF).map { UInt16($0) }
        let f = HalfFloat.decodeBF16(all)
        let back = HalfFloat.encodeBF16(f)
        for i in all.indices {
            if f[i].isNaN { #expect(back[i] == (all[i] & 0x8000) | 0x7FC0) } else { #expect(back[i] == all[i]) }
        }
        // Midpoints between neighbours round to the even one.
        for v in stride(from: 0, to: 0x7F7F, by: 37) {
            let lo = Float(bitPattern: UInt32(v) << 16), mid = Float(bitPattern: UInt32(v) << 16 | 0x8000)
            _ = lo
            let r = HalfFloat.encodeBF16([mid])[0]
            #expect(r == UInt16(v) + UInt16(v & 1))
        }
    }

    @Test func exhaustiveF16() {
        let all = (0...0xFFFF).map { UInt16($0) }
        let f = HalfFloat.decodeF16(all)
        let back = HalfFloat.encodeF16(f)
        for i in all.indices where !f[i].isNaN { #expect(back[i] == all[i]) }
        #expect(HalfFloat.encodeF16([65520])[0] == 0x7C00)  // overflow rounds to inf
        #expect(HalfFloat.encodeF16([65519])[0] == 0x7BFF)
    }

    @Test func e5m2RoundTripsAndRounds() {
        let all = (0...255).map { UInt8($0) }
        let f = FP8.decodeE5M2(all)
        let back = FP8.encodeE5M2(f)
        for i in all.indices where !f[i].isNaN { #expect(back[i] == all[i], "code \(i)") }
        #expect(f[0x7B] == 57344 && f[0x7C] == .infinity && f[0x01] == Float(sign: .plus, exponent: -16, significand: 1))
        #expect(FP8.encodeE5M2([61440])[0] == 0x7C)  // tie above max: to inf (even)
        #expect(FP8.encodeE5M2([61439])[0] == 0x7B)
        #expect(FP8.encodeE5M2([1e6], saturate: true)[0] == 0x7B)
    }

    /// NonFiniteScan agrees with the decoded value's `isFinite` for every 8- and 16-bit code and
    /// float32's specials, and finds the first one on both sides of its 1024-element blocks.
    /// F64 sources cast to every 16/32-bit target by rounding the double once to float32 (exact
    /// for these values), then as from F32; beyond float32's range they become ±inf.
    @Test func castsFromF64() {
        let xs: [Double] = [0, -0.0, 1, -2.5, 1.0 / 3, 65504, 70000, 1e39, -1e39, 3.0e-41, .nan]
        for to in [DType.f32, .bf16, .f16] {
            let want32 = xs.map { Float($0) }
            var want = [UInt8](repeating: 0, count: xs.count * (to.byteSize ?? 4))
            var got = want
            var scratch = [Float](repeating: 0, count: xs.count)
            want32.withUnsafeBytes { src in
                want.withUnsafeMutableBytes { FloatCast.cast(src.baseAddress!, from: .f32, $0.baseAddress!, to: to, count: xs.count, scratch: nil) }
            }
            xs.withUnsafeBytes { src in
                scratch.withUnsafeMutableBufferPointer { sc in
                    got.withUnsafeMutableBytes {
                        FloatCast.cast(src.baseAddress!, from: .f64, $0.baseAddress!, to: to, count: xs.count, scratch: sc.baseAddress!)
                    }
                }
            }
            #expect(got == want, "F64 -> \(to)")
        }
        #expect(Float(1e39) == .infinity && FloatCast.supported.contains(.f64))
    }

    @Test func nonFiniteScanFindsEveryNaNAndInfinity() {
        func scan<T>(_ v: [T], _ d: DType) -> Int? { v.withUnsafeBytes { NonFiniteScan.firstIndex($0.baseAddress!, dtype: d, count: v.count) } }
        let codes16 = (0...0xFFFF).map { UInt16($0) }
        for (d, decoded) in [(DType.bf16, HalfFloat.decodeBF16(codes16)), (.f16, HalfFloat.decodeF16(codes16))] {
            for i in codes16.indices { #expect((scan([codes16[i]], d) == 0) == !decoded[i].isFinite, "\(d) code \(i)") }
        }
        let codes8 = (0...255).map { UInt8($0) }
        for (d, decoded) in [(DType.f8e4m3, FP8.decodeE4M3(codes8)), (.f8e5m2, FP8.decodeE5M2(codes8))] {
            for i in codes8.indices { #expect((scan([codes8[i]], d) == 0) == !decoded[i].isFinite, "\(d) code \(i)") }
        }
        for (v, bad) in [
            (Float.nan, true), (.infinity, true), (-.infinity, true), (.greatestFiniteMagnitude, false),
            (-.leastNonzeroMagnitude, false), (0, false),
        ] {
            #expect((scan([v], .f32) == 0) == bad && (scan([Double(v)], .f64) == 0) == bad)
        }
        for at in [0, 1023, 1024, 2999] {
            var f = [Float](repeating: 1, count: 3000)
            f[at] = .nan
            if at < 2999 { f[2999] = .infinity }
            #expect(scan(f, .f32) == at)
            #expect(scan(f.map { HalfFloat.encodeBF16([$0])[0] }, .bf16) == at)
        }
        #expect(scan([Float](repeating: 3, count: 5000), .f32) == nil && scan([Int32](repeating: -1, count: 9), .i32) == nil)
    }
}
