import Foundation

/// The fixed partner files of the two tokenizer targets (`Fuzz/Partners`, written by `make_seeds.py`), and the text each built tokenizer encodes: specials, byte-level
/// edge cases, CJK, emoji, contractions, digits and whitespace runs.
enum SeedTokenizer {
    static let partners: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path + "/Partners"
    }()
    static let json = read(partners + "/tokenizer.json")
    static let config = read(partners + "/tokenizer_config.json")
    static let text = "<|endoftext|>Hello, world! It's 12345 ünïcödé 日本語 🙂‍↔️\r\n\t  x<|endoftext|><s> '' "

    static func read(_ path: String) -> String {
        guard let s = try? String(contentsOfFile: path, encoding: .utf8) else { fatalError("missing seed file \(path): run Fuzz/make_seeds.py") }
        return s
    }
}
