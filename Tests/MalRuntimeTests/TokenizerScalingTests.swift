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
