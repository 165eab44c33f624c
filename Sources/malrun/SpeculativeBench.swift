import MalCore
import MalRuntime

/// The measurements of `malrun bench --speculative mtp`.
enum SpeculativeBench {
    struct Generation {
        var ts: [Double] = [], ns: [Int] = []
        var acceptance = 0.0, tokensPerStep = 0.0
        var mean: Double { ts.reduce(0, +) / Double(max(ts.count, 1)) }
        var sd: Double {
            ts.count > 1 ? (ts.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(ts.count - 1)).squareRoot() : 0
        }
        var meanNs: Int { ns.reduce(0, +) / max(ns.count, 1) }
        var sdNs: Int {
            let m = Double(meanNs)
            return ns.count > 1 ? Int((ns.map { (Double($0) - m) * (Double($0) - m) }.reduce(0, +) / Double(ns.count - 1)).squareRoot()) : 0
        }
    }

    /// Greedy generation of `n` tokens after `prompt` with `drafts` MTP drafts per step (0: none);
    /// the first repetition warms up and is not counted.
    static func generation(_ tr: Transformer, tokenizer: Tokenizer?, path: String, prompt: [Int32], n: Int, drafts: Int,
                           repetitions: Int) throws -> Generation {
        let g = try Generator(transformer: tr, tokenizer: tokenizer, modelPath: path, draftTokens: drafts)
        var s = Generator.Settings()
        s.maxTokens = n
        s.stopAtEndTokens = false
        var out = Generation()
        for rep in 0...repetitions {
            g.reset()
            let r = try g.generate(prompt: prompt, settings: s)
            guard rep > 0 else { continue }
            out.ts.append(Double(r.generated.count) / r.generationSeconds)
            out.ns.append(Int(r.generationSeconds * 1e9))
            out.acceptance = r.acceptanceRate
            out.tokensPerStep = r.tokensPerStep
        }
        return out
    }

    /// Median time of one main-model step over k + 1 new tokens divided by that of a 1-token
    /// step, both after the same 16 cached positions (each rolled back after it runs).
    static func verifyStepRatio(_ tr: Transformer, k: Int, vocab: Int, repetitions: Int) throws -> Double {
        tr.reset()
        _ = try tr.forward((0..<16).map { Int32($0 % vocab) })
        func median(_ count: Int) throws -> Double {
            var times: [Double] = []
            for i in 0..<repetitions {
                let ids = (0..<count).map { Int32((i * 7 + $0 * 13) % vocab) }
                let t0 = monotonicSeconds()
                _ = try tr.forward(ids, allLogits: true, keepHidden: true)
                times.append(monotonicSeconds() - t0)
                tr.truncate(to: 16)
            }
            return times.sorted()[times.count / 2]
        }
        _ = try median(1)      // warm up
        let one = try median(1), many = try median(k + 1)
        return many / one
    }
}
