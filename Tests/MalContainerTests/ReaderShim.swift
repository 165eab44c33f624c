import MalCore
import MalReaders

enum HFConfigReaderShim {
    static func spec(_ folder: String) throws -> ModelSpec { try HFConfigReader.read(path: folder + "/config.json") }
    static func tensorNames(_ folder: String) throws -> [String] { try SafetensorsCheckpoint(path: folder).tensors.map(\.name) }
}
