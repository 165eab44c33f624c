import Foundation
import MalRuntime

/// Time per sampled token over a Llama-3-sized vocabulary (128,256 logits), for a flat
/// distribution (a random model: the nucleus holds most of the vocabulary) and a peaked one
/// (a trained model's usual shape), per sampler setting.
enum SamplerBench {
    static func run() {
        var g = SystemRandomNumberGenerator()
        let vocab = 128_256
        let flat = (0..<vocab).map { _ in Float.random(in: -1...1, using: &g) }
        let peaked = (0..<vocab).map { _ in Float.random(in: 0...1, using: &g) * Float.random(in: 0...1, using: &g) * 20 - 10 }
        let settings: [(String, Sampler)] = [
            ("greedy", Sampler(seed: 1)),
            ("temperature 0.8", Sampler(temperature: 0.8, seed: 1)),
            ("temperature 0.8, top-p 0.95", Sampler(temperature: 0.8, topP: 0.95, seed: 1)),
            ("temperature 0.8, top-k 40", Sampler(temperature: 0.8, topK: 40, seed: 1)),
            ("temperature 0.8, min-p 0.05", Sampler(temperature: 0.8, minP: 0.05, seed: 1)),
        ]
        print("# malbench sampler: \(vocab) logits, best of 20 draws")
        for (name, s0) in settings {
            var line = name.padding(toLength: 30, withPad: " ", startingAt: 0)
            for (kind, logits) in [("flat", flat), ("peaked", peaked)] {
                let s = s0
                var best = Double.infinity
                for _ in 0..<20 {
                    let t = Date()
                    _ = s.sample(logits, history: [], position: 0)
                    best = min(best, Date().timeIntervalSince(t))
                }
                line += String(format: " | %@ %.2f ms", kind, best * 1e3)
            }
            print(line)
        }
    }
}
