import Foundation
import MalCore
import MalRuntime
import MalTestSupport
import Testing

/// The generation library: the same tokens as the reference continuations, continuation of a
/// session, the context-full rule and cancellation.
@Suite("Generator") struct GeneratorTests {
    static func generator(_ folder: String, context: Int? = nil) throws -> Generator {
        let path = Fixtures.samples + "/" + folder
        let tr = try Transformer(model: try ModelLoader.open(path), contextLength: context, threads: 2)
        return try Generator(transformer: tr, tokenizer: try TokenizerLoader.load(path), modelPath: path)
    }

    static func greedy(_ n: Int) -> Generator.Settings {
        var s = Generator.Settings()
        s.maxTokens = n
        s.stopAtEndTokens = false
        return s
    }

    @Test(
        "greedy continuations of the trained samples",
        arguments: [
            ("gpt2-fortunes", "gpt2"), ("llama3-fortunes", "llama3"),
            ("deepseek-v3-fortunes", "deepseek"),
        ])
    func referenceContinuations(folder: String, key: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.samples + "/evaluation.json"))
        let gens = ((try JSONSerialization.jsonObject(with: data) as! [String: Any])[key] as! [String: Any])["generations"] as! [[String: Any]]
        let g = try GeneratorTests.generator(folder)
        for case let ref in gens {
            let want = (ref["greedy_ids"] as! [Int]).map(Int32.init)
            g.reset()
            var text = ""
            let r = try g.generate(prompt: (ref["prompt_ids"] as! [Int]).map(Int32.init), settings: GeneratorTests.greedy(want.count)) {
                text += $1
                return true
            }
            #expect(r.generated == want && r.stop == .maxTokens)
            #expect(text == g.tokenizer!.decode(want))
        }
    }

    @Test func aSessionContinuesWhereItStopped() throws {
        let g = try GeneratorTests.generator("llama3-fortunes")
        let prompt = g.tokenizer!.encode("The secret of success is", addSpecial: true)
        let whole = try g.generate(prompt: prompt, settings: GeneratorTests.greedy(12)).generated
        g.reset()
        let first = try g.generate(prompt: prompt, settings: GeneratorTests.greedy(5))
        let second = try g.generate(prompt: [], settings: GeneratorTests.greedy(7))
        #expect(first.generated + second.generated == whole)
        #expect(second.promptTokens == 1, "only the pending last token is run")
        #expect(g.tokens == prompt + whole)
    }

    @Test func aFullContextStillYieldsOneMoreToken() throws {
        let probe = try GeneratorTests.generator("gpt2-fortunes")
        let prompt = probe.tokenizer!.encode("Never", addSpecial: true)
        let g = try GeneratorTests.generator("gpt2-fortunes", context: prompt.count + 3)
        let r = try g.generate(prompt: prompt, settings: GeneratorTests.greedy(10))
        #expect(r.generated.count == 4 && r.stop == .contextFull)
        #expect(g.remainingContext == 0)
        #expect(throws: MalError.self) { _ = try g.generate(prompt: [1], settings: GeneratorTests.greedy(1)) }
    }

    @Test func theCallbackStopsGeneration() throws {
        let g = try GeneratorTests.generator("deepseek-v3-fortunes")
        let prompt = g.tokenizer!.encode("A friend", addSpecial: true)
        var seen = 0
        let r = try g.generate(prompt: prompt, settings: GeneratorTests.greedy(20)) { id, _ in
            if id >= 0 { seen += 1 }
            return seen < 3
        }
        #expect(r.generated.count == 3 && r.stop == .cancelled)
        let more = try g.generate(prompt: [], settings: GeneratorTests.greedy(2))
        g.reset()
        let whole = try g.generate(prompt: prompt, settings: GeneratorTests.greedy(5)).generated
        #expect(r.generated + more.generated == whole)
    }
}
