import MalCore
import MalReaders

/// Loads the tokenizer of a model: from a `.mal` file (`aux/tokenizer.bin`, no JSON parsing) or
/// from the tokenizer files of an HF folder (or the folder of a `.safetensors` file).
public enum TokenizerLoader {
    public static func load(_ path: String) throws -> Tokenizer {
        if MalFile.isContainer(path) {
            let mal = try MalFile(path: path)
            guard let blob = try mal.aux("tokenizer.bin") else {
                throw MalError(.notFound, "the container holds no tokenizer (aux/tokenizer.bin)", file: path)
            }
            let file = path + ":aux/tokenizer.bin"
            do {
                return try Tokenizer(model: try blob.withUnsafeBytes { try TokenizerBinary.decode($0, file: file) })
            } catch let e as MalError { throw e.inFile(file) }
        }
        guard fileExists(path) || isDirectory(path) else { throw MalError(.fileNotFound, "no such file or folder", file: path) }
        let folder = isDirectory(path) ? path : parentDirectory(path)
        guard fileExists(joinPath(folder, "tokenizer.json")) else {
            throw MalError(.fileNotFound, "no tokenizer.json in the folder", file: folder)
        }
        let model = try TokenizerJSONReader.read(folder: folder)
        do {
            return try Tokenizer(model: model)
        } catch let e as MalError { throw e.inFile(joinPath(folder, "tokenizer.json")) }
    }
}
