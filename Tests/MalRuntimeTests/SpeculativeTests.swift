import Foundation
import CMalKernels
import MalCore
import MalRuntime
import MalTransforms
import MalTestSupport
import Testing

/// Speculative decoding with the MTP layer yields exactly the tokens of plain decoding.
@Suite("Speculative decoding") struct SpeculativeTests {
    static let models = [Fixtures.model("deepseek-v3-tiny"), Fixtures.model("deepseek-v3-fp8"), Fixtures.samples + "/deepseek-v3-fortunes"]

    static func settings(_ n: Int, temperature: Float = 0, topK: Int = 0, topP: Float = 1, seed: UInt64 = 0) -> Generator.Settings {
        var s = Generator.Settings()
        s.maxTokens = n
        s.temperature = temperature
        s.topK = topK
        s.topP = topP
        s.seed = seed
        s.stopAtEndTokens = false
        return s
    }

    static let samplings: [Generator.Settings] = [
        settings(40), settings(40, temperature: 0.8, seed: 1), settings(40, temperature: 0.8, seed: 2),
        settings(40, temperature: 1.2, topK: 20, seed: 3), settings(40, temperature: 0.9, topP: 0.9, seed: 4),
    ]

    static func run(
        _ path: String, drafts: Int, _ s: Generator.Settings, prompt: [Int32],
        filter: ((Int, [Int32]) -> [Int32])? = nil
    ) throws -> Generator.Result {
        let tr = try Transformer(model: try ModelLoader.open(path), contextLength: 256, threads: 2, mtp: drafts > 0)
        let g = try Generator(transformer: tr, tokenizer: try TokenizerLoader.load(path), modelPath: path, draftTokens: drafts)
        g.draftFilter = filter
        return try g.generate(prompt: prompt, settings: s)
    }

    static func prompt(_ path: String) throws -> [Int32] {
        try TokenizerLoader.load(path).encode("The secret of success is", addSpecial: true)
    }

    @Test("the plain tokens, greedy and sampled, with 1 and 2 drafts", arguments: models)
    func samePlainTokens(_ path: String) throws {
        let prompt = try SpeculativeTests.prompt(path)
        for s in SpeculativeTests.samplings {
            let plain = try SpeculativeTests.run(path, drafts: 0, s, prompt: prompt)
            for k in [1, 2] {
                let spec = try SpeculativeTests.run(path, drafts: k, s, prompt: prompt)
                #expect(spec.generated == plain.generated, "\(path), T \(s.temperature), seed \(s.seed), \(k) drafts")
                #expect(spec.mainSteps <= plain.mainSteps && spec.drafted > 0)
            }
        }
    }

    /// A wrong draft at step j forces a rejection there: the output must not change.
    @Test("a rejection at every position of a short run")
    func rejectionAnywhere() throws {
        let path = Fixtures.samples + "/deepseek-v3-fortunes"
        let prompt = try SpeculativeTests.prompt(path)
        for s in [SpeculativeTests.samplings[0], SpeculativeTests.samplings[1]] {
            var short = s
            short.maxTokens = 12
            let plain = try SpeculativeTests.run(path, drafts: 0, short, prompt: prompt).generated
            for k in [1, 2] {
                for step in 0..<12 {
                    for slot in 0..<k {
                        let r = try SpeculativeTests.run(path, drafts: k, short, prompt: prompt) { j, d in
                            guard j == step, slot < d.count else { return d }
                            var d = d
                            d[slot] = (d[slot] + 1) % 4096
                            return d
                        }
                        #expect(r.generated == plain, "\(k) drafts, wrong draft \(slot) at step \(step), T \(s.temperature)")
                    }
                }
            }
        }
    }

    @Test func aSpeculativeSessionContinuesLikeAPlainOne() throws {
        let path = Fixtures.samples + "/deepseek-v3-fortunes"
        let prompt = try SpeculativeTests.prompt(path)
        let tr = try Transformer(model: try ModelLoader.open(path), contextLength: 256, threads: 2, mtp: true)
        let g = try Generator(transformer: tr, tokenizer: try TokenizerLoader.load(path), modelPath: path, draftTokens: 2)
        let a = try g.generate(prompt: prompt, settings: SpeculativeTests.settings(9)).generated
        let b = try g.generate(prompt: g.tokenizer!.encode("\n%\n", addSpecial: false), settings: SpeculativeTests.settings(9)).generated
        let plain = try Generator(
            transformer: try Transformer(model: try ModelLoader.open(path), contextLength: 256, threads: 2),
            tokenizer: g.tokenizer, modelPath: path)
        #expect(try plain.generate(prompt: prompt, settings: SpeculativeTests.settings(9)).generated == a)
        #expect(try plain.generate(prompt: g.tokenizer!.encode("\n%\n", addSpecial: false), settings: SpeculativeTests.settings(9)).generated == b)
    }

    @Test func aModelWithoutMTPIsRefused() throws {
        let r = try runTool("malrun", [Fixtures.model("llama3-tiny"), "-p", "hi", "-n", "2", "--speculative", "mtp"])
        #expect(r.status == 1 && r.stderr.contains("multi-token-prediction layer"), "\(r.stderr)")
    }
}

/// A verify step (a few tokens in one forward) computes what one-token steps compute, bit for bit,
/// on BF16 weights in both layouts and on FP8: the small-batch kernels keep each row's summation order.
@Suite("Verify steps", .serialized) struct VerifyStepTests {
    @Test("2-4 tokens in one step give the one-token logits exactly", arguments: [false, true])
    func sameLogits(tiledEverywhere: Bool) throws {
        mal_set_bf16_tile_all(tiledEverywhere ? 1 : 0)
        defer { mal_set_bf16_tile_all(0) }
        for path in [Fixtures.samples + "/llama3-fortunes", Fixtures.samples + "/deepseek-v3-fortunes", "fp8"] {
            // FP8 E4M3 weights: the DeepSeek sample quantised in memory.
            let model: CanonicalModel =
                path == "fp8"
                ? try QuantizedModel(base: try ModelLoader.open(Fixtures.samples + "/deepseek-v3-fortunes")) : try ModelLoader.open(path)
            // One transformer for both (the layout is chosen at load; other suites may flip the switch).
            let tr = try Transformer(model: model, contextLength: 64, threads: 2)
            let prompt: [Int32] = [1, 20, 300, 41, 7, 99]
            _ = try tr.forward(prompt)
            for T in 2...4 {
                let ids = (0..<T).map { Int32(($0 * 37 + T) % 500) }
                var rows: [Float] = []
                for id in ids { rows += try tr.forward([id]) }
                tr.truncate(to: prompt.count)
                let batch = try tr.forward(ids, allLogits: true)
                tr.truncate(to: prompt.count)
                #expect(batch == rows, "\(path), tiled \(tiledEverywhere), T \(T): max |diff| \(maxAbsDiff(batch, rows))")
            }
        }
    }
}
