import ArgumentParser
import Foundation
import MalCore
import MalRuntime

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print the token ids of a text as a JSON array.",
        discussion: "MODEL is a .mal file, an HF model folder, or a folder holding only tokenizer files.")

    @Argument(help: "Model (.mal or folder).")
    var model: String

    @Option(help: "Text to tokenize.")
    var text: String?

    @Option(help: "File whose contents to tokenize.")
    var file: String?

    @Flag(help: "Apply the post-processor (e.g. add BOS), as HF's encode() does by default.")
    var special = false

    func validate() throws {
        guard (text == nil) != (file == nil) else { throw ValidationError("give exactly one of --text or --file") }
    }

    func run() throws {
        do {
            let tok = try TokenizerLoader.load(model)
            let input: String
            if let text { input = text } else {
                guard let data = FileManager.default.contents(atPath: file!) else {
                    throw MalError(.fileNotFound, "cannot read", file: file!)
                }
                input = String(decoding: data, as: UTF8.self)
            }
            let ids = tok.encode(input, addSpecial: special)
            print("[" + ids.map(String.init).joined(separator: ", ") + "]")
        } catch let e as MalError {
            printError("error: \(e)")
            throw ExitCode(1)
        }
    }
}

struct DetokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detokenize",
        abstract: "Print the text of comma-separated token ids.")

    @Argument(help: "Model (.mal or folder).")
    var model: String

    @Option(help: "Token ids, e.g. 15496,995.")
    var ids: String

    func run() throws {
        do {
            let tok = try TokenizerLoader.load(model)
            var list: [Int32] = []
            for part in ids.split(separator: ",") {
                let s = part.trimmingCharacters(in: .whitespaces)
                guard let v = Int32(s), v >= 0, Int(v) < tok.vocabularySize else {
                    throw MalError(.invalidArgument, "'\(s)' is not a token id of this vocabulary (0..<\(tok.vocabularySize))")
                }
                list.append(v)
            }
            print(tok.decode(list))
        } catch let e as MalError {
            printError("error: \(e)")
            throw ExitCode(1)
        }
    }
}
