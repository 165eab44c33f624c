import ArgumentParser
import Foundation
import MalCommandLine
import MalCore
import MalRuntime

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print the token ids of a text as a JSON array.",
        discussion: "MODEL is a .mal file, an HF model folder, or a folder holding only tokenizer files.")

    @Argument(help: "Model (.mal or folder).")
    var model: String

    @Option(parsing: .unconditional, help: "Text to tokenize (may start with '-').")
    var text: String?

    @Option(help: "File whose contents to tokenize ('-': standard input; pipes and /dev/stdin work too).")
    var file: String?

    @Flag(help: "Apply the post-processor (e.g. add BOS), as HF's encode() does by default.")
    var special = false

    @Flag(help: "Replace invalid UTF-8 in --file with U+FFFD instead of stopping at it.")
    var lossy = false

    @Option(help: "Threads for a long text (the ids are those of one thread).")
    var threads: Int = availableCores

    func validate() throws {
        guard (text == nil) != (file == nil) else { throw ValidationError("give exactly one of --text or --file") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        try runReporting {
            let tok = try TokenizerLoader.load(model)
            let input: String
            if let text { input = text } else { input = try TextInput.read(file!, lossy: lossy) }
            let ids = tok.encode(input, addSpecial: special, threads: threads)
            print("[" + ids.map(String.init).joined(separator: ", ") + "]")
        }
    }
}

struct DetokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detokenize",
        abstract: "Print the text of comma-separated token ids.")

    @Argument(help: "Model (.mal or folder).")
    var model: String

    @Option(parsing: .unconditional, help: "Token ids, e.g. 15496,995.")
    var ids: String

    @Flag(help: "Print the text as one JSON string (exact for scripts: newlines and control characters escaped).")
    var json = false

    func run() throws {
        try runReporting {
            let tok = try TokenizerLoader.load(model)
            var list: [Int32] = []
            for part in ids.split(separator: ",") {
                let s = part.trimmingCharacters(in: .whitespaces)
                guard let v = Int32(s), v >= 0, Int(v) < tok.vocabularySize else {
                    throw MalError(.invalidArgument, "'\(s)' is not a token id of this vocabulary (0..<\(tok.vocabularySize))")
                }
                list.append(v)
            }
            let text = tok.decode(list)
            if json {
                var out = ""
                JSONValue.writeString(text, to: &out)
                print(out)
            } else {
                print(text)
            }
        }
    }
}

/// The text of `--file`: a path, or `-` for standard input; read whole (pipes and character
/// devices included), and UTF-8 checked: invalid bytes are an error naming the first one's offset,
/// unless `lossy`.
enum TextInput {
    static func read(_ path: String, lossy: Bool) throws -> String {
        let handle = path == "-" ? FileHandle.standardInput : FileHandle(forReadingAtPath: path)
        guard let handle else {
            throw MalError(
                fileExists(path) || isDirectory(path) ? .ioError : .fileNotFound,
                isDirectory(path) ? "is a folder, not a file" : fileExists(path) ? "cannot read" : "no such file", file: path)
        }
        let bytes = [UInt8](handle.readDataToEndOfFile())
        if !lossy, let bad = firstInvalidUTF8(bytes) {
            throw MalError(
                .invalidArgument, "invalid UTF-8 (--lossy replaces it with U+FFFD)",
                file: path == "-" ? "standard input" : path, offset: bad)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Offset of the first byte that is not part of a well-formed UTF-8 sequence, or nil.
    static func firstInvalidUTF8(_ bytes: [UInt8]) -> Int? {
        var parser = Unicode.UTF8.ForwardParser()
        var it = bytes.makeIterator()
        var offset = 0
        while true {
            switch parser.parseScalar(from: &it) {
            case let .valid(s): offset += s.count
            case .error: return offset
            case .emptyInput: return nil
            }
        }
    }
}
