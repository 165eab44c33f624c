import MalCore

/// The timed runs of one throughput test and their statistics, as llama-bench reports them:
/// tokens/s of each run, their mean ± standard deviation (n − 1), and the same in nanoseconds.
public struct ThroughputSamples: Sendable {
    /// Tokens each run processed or generated.
    public let tokens: Int
    public private(set) var seconds: [Double] = []

    public init(tokens: Int) { self.tokens = tokens }

    public mutating func add(seconds s: Double) { seconds.append(s) }

    public var tokensPerSecond: [Double] { seconds.map { Double(tokens) / $0 } }
    public var nanoseconds: [Int] { seconds.map { Int($0 * 1e9) } }
    public var mean: Double { Self.mean(tokensPerSecond) }
    public var standardDeviation: Double { Self.deviation(tokensPerSecond) }
    public var meanNanoseconds: Int { nanoseconds.reduce(0, +) / max(nanoseconds.count, 1) }
    public var deviationNanoseconds: Int {
        let m = Double(meanNanoseconds), ns = nanoseconds
        return ns.count > 1 ? Int((ns.map { (Double($0) - m) * (Double($0) - m) }.reduce(0, +) / Double(ns.count - 1)).squareRoot()) : 0
    }

    static func mean(_ x: [Double]) -> Double { x.reduce(0, +) / Double(max(x.count, 1)) }
    static func deviation(_ x: [Double]) -> Double {
        let m = mean(x)
        return x.count > 1 ? (x.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(x.count - 1)).squareRoot() : 0
    }
}

/// llama-bench's tests on a loaded model, from an empty context: prompt processing (`pp`: one
/// forward over `prompt` tokens) or generation (`tg`: `generate` one-token steps), after `depth`
/// untimed context tokens, `repetitions` timed runs after one warm-up. Token ids are random and
/// seeded; every step gets a new one (as llama-bench does), so an MoE router does not pick the
/// same experts each step.
public enum Throughput {
    public static func measure(
        _ tr: Transformer, prompt: Int, generate: Int, depth: Int, repetitions: Int,
        random rng: inout SplitMix64
    ) throws -> ThroughputSamples {
        let vocab = Int32(tr.spec.vocabSize)
        var samples = ThroughputSamples(tokens: prompt > 0 ? prompt : generate)
        for rep in 0...repetitions {
            let tokens = (0..<max(prompt, generate, 1)).map { _ in Int32.random(in: 0..<vocab, using: &rng) }
            tr.reset()
            if depth > 0 { _ = try tr.forward((0..<depth).map { _ in Int32.random(in: 0..<vocab, using: &rng) }) }
            let t0 = monotonicSeconds()
            if prompt > 0 {
                _ = try tr.forward(tokens)
            } else {
                for i in 0..<generate { _ = try tr.forward([tokens[i]]) }
            }
            if rep > 0 { samples.add(seconds: monotonicSeconds() - t0) }
        }
        return samples
    }

    /// Greedy generation of `n` tokens after `prompt` through a `Generator` with `drafts` MTP
    /// drafts per step (0: none), timed per run; also the share of drafts accepted and the tokens
    /// per main-model step of the last run.
    public static func speculativeGeneration(
        _ tr: Transformer, tokenizer: Tokenizer?, path: String, prompt: [Int32], n: Int, drafts: Int,
        repetitions: Int
    ) throws -> (samples: ThroughputSamples, acceptance: Double, tokensPerStep: Double) {
        let g = try Generator(transformer: tr, tokenizer: tokenizer, modelPath: path, draftTokens: drafts)
        var s = Generator.Settings()
        s.maxTokens = n
        s.stopAtEndTokens = false
        var samples = ThroughputSamples(tokens: n)
        var acceptance = 0.0, perStep = 0.0
        for rep in 0...repetitions {
            g.reset()
            let r = try g.generate(prompt: prompt, settings: s)
            guard rep > 0 else { continue }
            samples.add(seconds: r.generationSeconds)
            acceptance = r.acceptanceRate
            perStep = r.tokensPerStep
        }
        return (samples, acceptance, perStep)
    }

    /// Median time of one main-model step over k + 1 new tokens divided by that of a 1-token
    /// step, both after the same 16 cached positions (each rolled back after it runs). The two
    /// kinds of step alternate, so a drift of the machine's speed touches both alike.
    public static func verifyStepRatio(_ tr: Transformer, k: Int, repetitions: Int) throws -> Double {
        let vocab = tr.spec.vocabSize
        tr.reset()
        _ = try tr.forward((0..<16).map { Int32($0 % vocab) })
        func step(_ count: Int, _ i: Int) throws -> Double {
            let ids = (0..<count).map { Int32((i * 7 + $0 * 13) % vocab) }
            let t0 = monotonicSeconds()
            _ = try tr.forward(ids, allLogits: true, keepHidden: true)
            let t = monotonicSeconds() - t0
            tr.truncate(to: 16)
            return t
        }
        for i in 0..<3 { _ = try step(1, i); _ = try step(k + 1, i) }  // warm up
        var one: [Double] = [], many: [Double] = []
        for i in 0..<repetitions {
            one.append(try step(1, i))
            many.append(try step(k + 1, i))
        }
        return many.sorted()[repetitions / 2] / one.sorted()[repetitions / 2]
    }
}
