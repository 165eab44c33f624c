#if canImport(Glibc)
import Glibc
#endif
import CMalKernels
import MalCore

/// Linear layers of random weights for kernel benchmarks (malbench).
public enum MatvecProbe {
    public static func make(rows: Int, cols: Int) throws -> [(String, LinearWeight)] {
        let arena = WeightArena()
        var out: [(String, LinearWeight)] = []
        for d in [DType.f32, .bf16] {
            let n = rows * cols * (d.byteSize ?? 4)
            let s = try TensorStorage.allocate(count: n)
            memset(UnsafeMutableRawPointer(mutating: s.bytes.baseAddress!), 0x3c, n)
            out.append(
                (
                    d.rawValue,
                    try LinearWeight(
                        tensor: Tensor(name: "w", dtype: d, shape: [rows, cols], storage: s), scale: nil,
                        block: .deepseek, bias: nil, arena: arena)
                ))
        }
        let q = try TensorStorage.allocate(count: rows * cols)
        memset(UnsafeMutableRawPointer(mutating: q.bytes.baseAddress!), 0x3c, rows * cols)
        let sc = try TensorStorage.allocate(count: (rows / 128) * (cols / 128) * 4)
        memset(UnsafeMutableRawPointer(mutating: sc.bytes.baseAddress!), 0x3c, (rows / 128) * (cols / 128) * 4)
        out.append(
            (
                "F8_E4M3",
                try LinearWeight(
                    tensor: Tensor(name: "w", dtype: .f8e4m3, shape: [rows, cols], storage: q),
                    scale: Tensor(name: "s", dtype: .f32, shape: [rows / 128, cols / 128], storage: sc),
                    block: .deepseek, bias: nil, arena: arena)
            ))
        return out
    }
}
