import Foundation
import MalCore
import MalReaders
import MalTestSupport

extension Fixtures {
    /// Tensors and shapes of a safetensors file read with Foundation's JSON parser: an
    /// independent oracle for the reader under test.
    static func headerOracle(_ path: String) throws -> [String: (dtype: String, shape: [Int])] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let n = data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        let json = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + Int(n)))) as! [String: Any]
        var out: [String: (String, [Int])] = [:]
        for (k, v) in json where k != "__metadata__" {
            let d = v as! [String: Any]
            out[k] = (d["dtype"] as! String, (d["shape"] as! [NSNumber]).map(\.intValue))
        }
        return out
    }
}

/// Builds a safetensors file from a header text and a data section.
func safetensorsBytes(header: String, data: [UInt8], declaredLength: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    var out: [UInt8] = []
    let n = declaredLength ?? UInt64(h.count)
    for i in 0..<8 { out.append(UInt8((n >> (8 * UInt64(i))) & 0xFF)) }
    return out + h + data
}

func writeFile(_ path: String, _ bytes: [UInt8]) {
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
}
