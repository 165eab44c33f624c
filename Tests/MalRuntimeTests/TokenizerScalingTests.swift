import Foundation
import MalCore
import MalReaders
import MalRuntime
import MalTestSupport
import Testing

/// Regression guards for linear time (not benchmarks: the bounds are far above the expected
/// times, which `make bench` measures): a 1 MB line without a newline through the general regex
/// path and the hand-written scanners, and added tokens that almost match at every position.
@Suite("Tokenizer scaling") struct TokenizerScalingTests {
    static func seconds(_ body: () -> Void) -> Double {
        let t0 = monotonicSeconds()
        body()
        return monotonicSeconds() - t0
    }

    /// Words, digits, punctuation and runs of spaces without a line break, `n` bytes.
    static func line(_ n: Int) -> String {
        let words = ["alpha", "beta", "12345", "--", "  ", "(x)", "don't", "Zürich", "数据", "!?"]
        var s = "", k = 0
        while s.utf8.count < n { s += words[k % words.count] + " "; k += 1 }
        return s
    }

    @Test("a 1 MB line in linear time, general regex path and scanners", arguments: ["gpt2-bpe-2k", "llama3-bpe-2k", "deepseek-v3-bpe-2k"])
    func longLine(name: String) throws {
        let model = try TokenizerJSONReader.read(folder: Fixtures.fixtures + "/tokenizers/" + name)
        let regex = try Tokenizer(model: model, generalRegexOnly: true), fast = try Tokenizer(model: model)
        let small = Self.line(100_000), big = Self.line(1_000_000)
        var a: [Int32] = [], b: [Int32] = []
        let tSmall = Self.seconds { a = regex.encode(small) }
        let tBig = Self.seconds { b = regex.encode(big) }
        #expect(a == fast.encode(small) && b == fast.encode(big), "both paths agree")
        // Quadratic time would make 10x the text take 100x as long.
        #expect(tBig < 30 * max(tSmall, 0.01), "\(name): 100 KB \(tSmall) s, 1 MB \(tBig) s")
    }

    @Test("added tokens that nearly match everywhere are found in one pass")
    func addedTokenPrefixes() throws {
        let tok = try TokenizerLoader.load(Fixtures.fixtures + "/deepseek-v3-tiny")
        let near = String(repeating: "<｜", count: 25_000), nearBig = String(repeating: "<｜", count: 250_000)
        let tSmall = Self.seconds { _ = tok.encode(near) }
        let tBig = Self.seconds { _ = tok.encode(nearBig) }
        #expect(tBig < 30 * max(tSmall, 0.01), "25,000 near matches \(tSmall) s, 250,000 \(tBig) s")
    }
}

/// The hand-written reading of `tokenizer.json`'s vocabulary and merges gives the model the
/// generic JSON tree gives, and takes nothing it should not.
@Suite("tokenizer.json fast path") struct TokenizerJSONFastPathTests {
    @Test("fast and generic readings agree", arguments: ["gpt2-real", "gpt2-bpe-2k", "llama3-bpe-2k", "deepseek-v3-bpe-2k", "deepseek-v3-bpe-384"])
    func agree(name: String) throws {
        let folder = Fixtures.fixtures + "/tokenizers/" + name
        let fast = try TokenizerJSONReader.read(folder: folder)
        let m = try MappedFile(path: folder + "/tokenizer.json")
        let tree = try withExtendedLifetime(m) { try JSONValue.parse(m.bytes, file: "t") }
        let configPath = folder + "/tokenizer_config.json"
        let config =
            FileManager.default.fileExists(atPath: configPath)
            ? try JSONValue.parse(try String(contentsOfFile: configPath, encoding: .utf8), file: "c") : nil
        #expect(fast == (try TokenizerJSONReader.parse(tree, config: config, file: "t")))
    }

    @Test("escapes, pair merges and odd layouts read alike; duplicates and bad ids refused")
    func variants() throws {
        let dir = Fixtures.tempDir()
        defer { Fixtures.cleanup(dir) }
        func model(_ vocabAndMerges: String) throws -> TokenizerModel {
            let json = #"{"added_tokens": [], "model": {"type": "BPE", "# + vocabAndMerges + #"}, "pre_tokenizer": null}"#
            try json.write(toFile: dir + "/tokenizer.json", atomically: true, encoding: .utf8)
            return try TokenizerJSONReader.read(folder: dir)
        }
        let plain = try model(#""vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]"#)
        #expect(try model(#" "merges" : [ ["a", "b"] ] , "vocab" : { "\u0061" : 0 , "b":1, "a\u0062": 2 } "#) == plain)
        #expect(plain.merges.count == 1 && plain.merges[0] == (0, 1, 2))
        for bad in [
            #""vocab": {"a": 0, "a": 1}, "merges": []"#, #""vocab": {"a": -1}, "merges": []"#,
            #""vocab": {"a": 0}, "merges": ["a"]"#, #""vocab": {"a": 0, "b": 1}, "merges": ["a b"]"#,
            #""vocab": {"a": 0}, "merges": ["a a"],"#, #""vocab": {"a\ud800": 0}, "merges": []"#,
        ] {
            #expect(throws: MalError.self, "\(bad)") { _ = try model(bad) }
        }
    }
}

@Suite("Tokenizer threads") struct TokenizerThreadTests {
    @Test("encoding on several threads gives the ids of one", arguments: ["gpt2-real", "llama3-bpe-2k", "deepseek-v3-bpe-2k"])
    func sameIds(name: String) throws {
        let tok = try TokenizerLoader.load(Fixtures.fixtures + "/tokenizers/" + name)
        let text = TokenizerScalingTests.line(300_000) + "\n<|endoftext|> " + TokenizerScalingTests.line(200_000)
        let one = tok.encode(text)
        for t in [2, 3, 8] { #expect(tok.encode(text, threads: t) == one, "\(t) threads") }
    }
}
