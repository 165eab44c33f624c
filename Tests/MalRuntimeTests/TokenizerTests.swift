import Foundation
import MalTestSupport
import Testing
import MalCore
import MalReaders
@testable import MalRuntime

struct TokenizerCase: Sendable {
    var text: String
    var ids: [Int32]
    var idsWithSpecial: [Int32]
    var decoded: String
}

func loadCases(_ path: String, key: String? = nil) throws -> [TokenizerCase] {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let doc = try JSONSerialization.jsonObject(with: data) as! [String: Any]
    let list = (key.map { doc[$0] } ?? doc["cases"]) as! [[String: Any]]
    return list.map {
        TokenizerCase(
            text: $0["text"] as! String, ids: ($0["ids"] as! [Int]).map(Int32.init),
            idsWithSpecial: ($0["ids_with_special"] as! [Int]).map(Int32.init), decoded: $0["decoded"] as! String)
    }
}

let tokenizerFolders = ["gpt2-bpe-2k", "llama3-bpe-2k", "deepseek-v3-bpe-2k", "deepseek-v3-bpe-384", "gpt2-real"]

@Suite("Byte-level BPE tokenizer (exact against HF tokenizers)")
struct TokenizerTests {
    func check(_ tok: Tokenizer, _ cases: [TokenizerCase], _ label: String) {
        var failures = 0
        for c in cases {
            let ids = tok.encode(c.text)
            let withSpecial = tok.encode(c.text, addSpecial: true)
            if ids != c.ids || withSpecial != c.idsWithSpecial || tok.decode(c.ids) != c.decoded {
                failures += 1
                Issue.record(
                    "\(label): \(c.text.debugDescription): got \(ids) / \(withSpecial), want \(c.ids) / \(c.idsWithSpecial); decoded \(tok.decode(c.ids).debugDescription)"
                )
            }
        }
        #expect(failures == 0)
    }

    @Test("every case of the tokenizer fixtures", arguments: tokenizerFolders)
    func fixtureCases(name: String) throws {
        let folder = Fixtures.fixtures + "/tokenizers/" + name
        let tok = try Tokenizer(model: try TokenizerJSONReader.read(folder: folder))
        let cases = try loadCases(folder + "/cases.json")
        #expect(cases.count == 48)
        check(tok, cases, name)
    }

    @Test("the general regex path gives the same ids as the fast scanners", arguments: tokenizerFolders)
    func generalRegexPath(name: String) throws {
        let folder = Fixtures.fixtures + "/tokenizers/" + name
        let tok = try Tokenizer(model: try TokenizerJSONReader.read(folder: folder), generalRegexOnly: true)
        check(tok, try loadCases(folder + "/cases.json"), name + " (regex)")
    }

    @Test("the tokenizer of every model fixture", arguments: Fixtures.models)
    func modelFixtureCases(model: String) throws {
        let tok = try Tokenizer(model: try TokenizerJSONReader.read(folder: Fixtures.model(model)))
        check(tok, try loadCases(Fixtures.model(model) + "/reference.json", key: "tokenizer_cases"), model)
    }

    @Test func binaryFormRoundTrips() throws {
        let m = try TokenizerJSONReader.read(folder: Fixtures.fixtures + "/tokenizers/llama3-bpe-2k")
        let blob = try TokenizerBinary.encode(m)
        let back = try blob.withUnsafeBytes { try TokenizerBinary.decode($0, file: "blob") }
        #expect(back == m)
        // A truncated blob is an error, not a crash.
        for n in [0, 7, 12, blob.count / 2, blob.count - 1] {
            #expect(throws: MalError.self) { try Array(blob[0..<n]).withUnsafeBytes { try TokenizerBinary.decode($0, file: "blob") } }
        }
    }

    @Test func streamingDecoderNeverSplitsACharacter() throws {
        let tok = try Tokenizer(model: try TokenizerJSONReader.read(folder: Fixtures.fixtures + "/tokenizers/gpt2-bpe-2k"))
        let text = "emoji: 😀 👍🏽 日本語のテキスト café"
        let ids = tok.encode(text)
        var d = StreamingDecoder(tokenizer: tok)
        var out = ""
        for id in ids {
            let piece = d.push(id)
            #expect(!piece.contains("\u{FFFD}"), "broken character after token \(id)")
            out += piece
        }
        out += d.finish()
        #expect(out == text)
    }

    @Test func unsupportedComponentsAreNamed() throws {
        let base = try JSONValue.parse(
            String(contentsOfFile: Fixtures.fixtures + "/tokenizers/gpt2-bpe-2k/tokenizer.json", encoding: .utf8),
            file: "tokenizer.json")
        guard case var .object(pairs) = base else { Issue.record("not an object"); return }
        let i = pairs.firstIndex { $0.0 == "pre_tokenizer" }!
        pairs[i].1 = .object([("type", .string("Metaspace")), ("replacement", .string("▁"))])
        let e = try #require(throws: MalError.self) { try TokenizerJSONReader.parse(.object(pairs), config: nil, file: "tokenizer.json") }
        #expect(e.kind == .unsupported && e.description.contains("Metaspace"))
    }
}

@Suite("Tokenizer inside .mal and on the command line")
struct TokenizerContainerTests {
    @Test("the tokenizer stored by convert gives the same ids", arguments: ["gpt2-tiny", "llama3-tiny", "deepseek-v3-tiny"])
    func storedTokenizer(model: String) throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let r = try runTool("malconv", ["convert", Fixtures.model(model), "-o", dir + "/m.mal"])
        #expect(r.status == 0, "\(r.stderr)")
        let fromMal = try TokenizerLoader.load(dir + "/m.mal")
        let fromJSON = try TokenizerLoader.load(Fixtures.model(model))
        #expect(fromMal.model == fromJSON.model)
        for c in try loadCases(Fixtures.model(model) + "/reference.json", key: "tokenizer_cases") {
            #expect(fromMal.encode(c.text, addSpecial: true) == c.idsWithSpecial)
        }
        // Exported HF folders get the JSON files, not the binary blob.
        #expect(try runTool("malconv", ["export", dir + "/m.mal", "-o", dir + "/hf"]).status == 0)
        #expect(!FileManager.default.fileExists(atPath: dir + "/hf/tokenizer.bin"))
    }

    @Test func tokenizeAndDetokenizeCommands() throws {
        let real = Fixtures.fixtures + "/tokenizers/gpt2-real"
        let t = try runTool("malrun", ["tokenize", real, "--text", "Hello world"])
        #expect(t.status == 0 && t.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[15496, 995]")
        let d = try runTool("malrun", ["detokenize", real, "--ids", "15496,995"])
        #expect(d.stdout == "Hello world\n")
        let s = try runTool("malrun", ["tokenize", Fixtures.model("llama3-tiny"), "--text", "Hello world", "--special"])
        let ids = try JSONSerialization.jsonObject(with: Data(s.stdout.utf8)) as! [Int]
        #expect(ids.first == 2000)
        let bad = try runTool("malrun", ["detokenize", real, "--ids", "1,99999999"])
        #expect(bad.status == 1 && bad.stderr.contains("99999999"))
    }
}

@Suite("BPE merge order")
struct BPEMergerTests {
    /// The heap path (long words) and the linear scan (short words) merge identically.
    @Test func heapAndLinearAgree() throws {
        let m = try TokenizerJSONReader.read(folder: Fixtures.fixtures + "/tokenizers/gpt2-real")
        let tok = try Tokenizer(model: m)
        let table = MergeTable(m.merges)
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("the quick brown fox jumps over the lazy dog ing tion er".utf8)
        for _ in 0..<200 {
            let n = Int.random(in: 49...400, using: &rng)
            let word = (0..<n).map { _ in alphabet.randomElement(using: &rng)! }
            var a = word.map { tok.model.tokens.firstIndex(of: [$0]).map(Int32.init)! }
            var b = a
            var merger = BPEMerger()
            merger.merge(&a, table)  // heap (n > 48)
            merger.linear(&b, table)
            #expect(a == b)
        }
    }
}

/// The command line of tokenize / detokenize: values starting with '-', standard input, invalid
/// UTF-8, a missing model path, JSON output.
@Suite("tokenize and detokenize commands") struct TokenizeCommandTests {
    static let model = Fixtures.samples + "/gpt2-fortunes"

    /// Runs a tool with `input` on standard input.
    static func run(_ args: [String], input: String? = nil) throws -> (status: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("malrun")
        p.arguments = args
        let i = Pipe(), o = Pipe(), e = Pipe()
        p.standardInput = i
        p.standardOutput = o
        p.standardError = e
        try p.run()
        if let input { i.fileHandleForWriting.write(Data(input.utf8)) }
        try i.fileHandleForWriting.close()
        let out = String(decoding: o.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: e.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, out, err)
    }

    @Test func valuesStdinUTF8AndPaths() throws {
        let tok = try TokenizerLoader.load(TokenizeCommandTests.model)
        let m = TokenizeCommandTests.model
        let dash = try TokenizeCommandTests.run(["tokenize", m, "--text", "-5"])
        #expect(dash.status == 0 && dash.out == "\(tok.encode("-5"))\n", "\(dash)")
        let stdin = try TokenizeCommandTests.run(["tokenize", m, "--file", "-"], input: "hi there\n")
        #expect(stdin.status == 0 && stdin.out.contains(tok.encode("hi there\n").map(String.init).joined(separator: ", ")), "\(stdin)")
        let dev = try TokenizeCommandTests.run(["tokenize", m, "--file", "/dev/stdin"], input: "x")
        #expect(dev.status == 0 && dev.out == "[\(tok.encode("x").map(String.init).joined(separator: ", "))]\n", "\(dev)")
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        FileManager.default.createFile(atPath: dir + "/bad.txt", contents: Data([0x61, 0x62, 0xFF, 0x63]))
        let bad = try TokenizeCommandTests.run(["tokenize", m, "--file", dir + "/bad.txt"])
        #expect(bad.status == 1 && bad.err.contains("invalid UTF-8") && bad.err.contains("at byte 2") && bad.err.contains("bad.txt"), "\(bad)")
        #expect(try TokenizeCommandTests.run(["tokenize", m, "--file", dir + "/bad.txt", "--lossy"]).status == 0)
        let missing = try TokenizeCommandTests.run(["tokenize", "/nonexistent/model", "--text", "hi"])
        #expect(missing.status == 1 && missing.err.contains("/nonexistent/model: no such file or folder"), "\(missing)")
        let neg = try TokenizeCommandTests.run(["detokenize", m, "--ids", "-1"])
        #expect(neg.status == 1 && neg.err.contains("'-1' is not a token id"), "\(neg)")
        let ids = tok.encode("a\n\"b\"\t")
        let json = try TokenizeCommandTests.run(["detokenize", m, "--ids", ids.map(String.init).joined(separator: ","), "--json"])
        let text = try JSONSerialization.jsonObject(with: Data(json.out.utf8), options: .fragmentsAllowed) as? String
        #expect(text == "a\n\"b\"\t", "\(json)")
    }
}

/// Added tokens are found through a trie: a text of their shared prefix repeated runs in linear
/// time whatever their number, and the matches are leftmost-longest as before.
@Suite("Added tokens in one pass") struct AddedTokenTests {
    static func tokenizer(extra: Int) throws -> Tokenizer {
        var m = try TokenizerJSONReader.read(folder: Fixtures.fixtures + "/tokenizers/deepseek-v3-bpe-2k")
        let base = Int32(m.tokens.count)
        for i in 0..<extra {
            m.addedTokens.append(
                .init(
                    id: base + Int32(i), content: "<｜tok\(i)｜>", special: true, lstrip: false, rstrip: false,
                    singleWord: false, normalized: false))
        }
        m.tokens += [[UInt8]?](repeating: nil, count: extra)
        return try Tokenizer(model: m)
    }

    @Test func longestMatchAmongAThousand() throws {
        let tok = try AddedTokenTests.tokenizer(extra: 1000)
        let base = Int32(tok.vocabularySize - 1000)
        // "<｜tok12｜>" must win over nothing shorter, and "<｜tok1｜>" is its own token.
        let ids = tok.encode("a<｜tok12｜>b<｜tok1｜><｜tok999｜>")
        #expect(ids.contains(base + 12) && ids.contains(base + 1) && ids.contains(base + 999), "\(ids)")
        #expect(!ids.contains(base + 120))
    }

    @Test func aRepeatedPrefixIsLinear() throws {
        let tok = try AddedTokenTests.tokenizer(extra: 1000)
        let text = String(repeating: "<｜", count: 100_000)
        let start = Date()
        let ids = tok.encode(text)
        // A regression guard, not a benchmark: matching 1000 tokens one by one took minutes here.
        #expect(Date().timeIntervalSince(start) < 20, "\(Date().timeIntervalSince(start)) s")
        #expect(!ids.isEmpty && tok.decode(ids) == text)
    }
}
