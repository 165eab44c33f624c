import Foundation
import MalCore
import MalRuntime
import MalTestSupport
import Testing

/// Every Unicode scalar value through the GPT-2, Llama 3 and DeepSeek-V3 pre-tokenizers, in a
/// context that shows its class from several sides, against HF tokenizers' splits
/// (`Tests/Unicode/pretokenizer-sweep.json`, written by `make_sweep.py`): the character classes
/// are the oracle's (`UnicodeClassTable`), not those of the Swift runtime's Unicode version.
@Suite("Unicode sweep") struct UnicodeSweepTests {
    @Test("all 1,112,064 scalars split as HF tokenizers splits them")
    func sweep() throws {
        let path = Fixtures.packageRoot + "/Tests/Unicode/pretokenizer-sweep.json"
        let m = try MappedFile(path: path)
        let doc = try withExtendedLifetime(m) { try JSONValue.parse(m.bytes, file: path) }
        let names = doc["pretokenizers"]!.arrayValue!.map { $0.stringValue! }
        let context = doc["context"]!.stringValue!
        let tokenizers = try names.map { try TokenizerLoader.load(Fixtures.fixtures + "/tokenizers/" + $0) }
        let runs = doc["runs"]!.arrayValue!.map { $0.arrayValue!.map { $0.intValue! } }
        let parts = context.components(separatedBy: "{c}")
        // Chunks of runs in parallel: 3.3 million pre-tokenizations.
        let chunks = stride(from: 0, to: runs.count, by: 64).map { $0..<min($0 + 64, runs.count) }
        final class Tally: @unchecked Sendable {
            let lock = NSLock()
            var mismatches: [String] = [], checked = 0
        }
        let tally = Tally()
        DispatchQueue.concurrentPerform(iterations: chunks.count) { k in
            var bad: [String] = [], n = 0
            for run in runs[chunks[k]] {
                for v in run[0]...run[1] {
                    guard let u = Unicode.Scalar(UInt32(v)) else { continue }
                    let text = parts.joined(separator: String(u))
                    n += 1
                    for (t, tok) in tokenizers.enumerated() {
                        var mask = 0
                        for r in tok.preTokenize(text) { mask |= 1 << r.lowerBound }
                        if mask != run[2 + t] && bad.count < 5 {
                            bad.append(
                                String(
                                    format: "U+%04X under %@: pieces start at %@, HF at %@", v, names[t],
                                    String(mask, radix: 2), String(run[2 + t], radix: 2)))
                        }
                    }
                }
            }
            tally.lock.withLock {
                tally.mismatches += bad; tally.checked += n
            }
        }
        #expect(tally.checked == 1_112_064)
        #expect(tally.mismatches.isEmpty, "mismatches (first few per chunk):\n\(tally.mismatches.prefix(10).joined(separator: "\n"))")
    }

    /// The cases the issue found (Unicode 17 characters Swift 6.3 knows and the oracle does not),
    /// and the one non-ASCII case fold of Llama 3's `(?i:'s)`: U+017F.
    @Test("known differences of the Swift runtime's Unicode data")
    func knownCases() throws {
        let gpt2 = try TokenizerLoader.load(Fixtures.fixtures + "/tokenizers/gpt2-real")
        #expect(gpt2.encode("\u{088F}'s") == [156, 95, 237, 6, 82])
        #expect(gpt2.encode("x \u{20C1} y") == [87, 2343, 225, 223, 331])
        #expect(gpt2.encode("hi \u{1FA8A}!") == [5303, 12520, 103, 232, 0])
        let llama = try TokenizerLoader.load(Fixtures.fixtures + "/tokenizers/llama3-bpe-2k")
        #expect(llama.encode("it'\u{017F} ok", addSpecial: true) == [2000, 305, 6, 129, 123, 276, 74])
        #expect(llama.preTokenize("it'\u{017F} ok") == [0..<2, 2..<4, 4..<7])
    }
}
