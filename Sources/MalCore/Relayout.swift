/// Layout changes between HF and canonical tensors (element size agnostic: bytes are moved, not
/// converted, so every change is exactly invertible).
public enum Relayout {
    /// Columns [colStart, colStart+colCount) of a row-major `[rows, cols]` matrix, transposed:
    /// the result is `[colCount, rows]`. With colStart 0 and colCount cols this is a transpose.
    public static func transposedColumns(
        _ src: UnsafeRawBufferPointer, rows: Int, cols: Int, colStart: Int, colCount: Int,
        elementSize es: Int
    ) -> TensorStorage {
        let out = UnsafeMutableRawPointer.allocate(byteCount: max(colCount * rows * es, 1), alignment: 64)
        let s = src.baseAddress!
        // Blocked to stay in cache on both sides.
        let tile = 64
        var r0 = 0
        while r0 < rows {
            let r1 = min(rows, r0 + tile)
            var c0 = 0
            while c0 < colCount {
                let c1 = min(colCount, c0 + tile)
                for r in r0..<r1 {
                    for c in c0..<c1 {
                        (out + (c * rows + r) * es).copyMemory(from: s + (r * cols + colStart + c) * es, byteCount: es)
                    }
                }
                c0 = c1
            }
            r0 = r1
        }
        return TensorStorage(adopting: out, count: colCount * rows * es)
    }

    /// Inverse of `transposedColumns` for a list of parts: each part `[outs_k, rows]` becomes
    /// columns of a row-major `[rows, sum(outs_k)]` matrix (GPT-2's fused Conv1D layout).
    public static func concatTransposed(_ parts: [(bytes: UnsafeRawBufferPointer, outs: Int)], rows: Int, elementSize es: Int) -> TensorStorage {
        let cols = parts.reduce(0) { $0 + $1.outs }
        let out = UnsafeMutableRawPointer.allocate(byteCount: max(rows * cols * es, 1), alignment: 64)
        var colStart = 0
        for p in parts {
            let s = p.bytes.baseAddress!
            for o in 0..<p.outs {
                for r in 0..<rows {
                    (out + (r * cols + colStart + o) * es).copyMemory(from: s + (o * rows + r) * es, byteCount: es)
                }
            }
            colStart += p.outs
        }
        return TensorStorage(adopting: out, count: rows * cols * es)
    }
}
