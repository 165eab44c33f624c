import Foundation
import Testing
import MalCore
import MalReaders
import MalTransforms
@testable import MalRuntime

/// Reference tensors of a fixture (`reference.safetensors`) as float32 / int32 arrays.
struct Reference {
    let file: SafetensorsFile
    init(_ model: String) throws { file = try SafetensorsFile(path: Fixtures.model(model) + "/reference.safetensors") }
    func floats(_ name: String) throws -> (values: [Float], shape: [Int]) {
        let t = try file.tensor(named: name)
        return (t.withBytes { Array($0.bindMemory(to: Float.self)) }, t.shape)
    }
    func ints(_ name: String) throws -> [Int32] {
        try file.tensor(named: name).withBytes { Array($0.bindMemory(to: Int32.self)) }
    }
    var sequenceCount: Int { file.tensors.filter { $0.name.hasPrefix("input_ids.") }.count }
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "\(a.count) vs \(b.count)")
    var m: Float = 0
    for i in a.indices { m = max(m, abs(a[i] - b[i])) }
    return m
}

let denseModels = ["gpt2-tiny", "llama3-tiny"]

@Suite("Transformer runtime (GPT-2, Llama 3) against transformers")
struct TransformerTests {
    func check(_ model: CanonicalModel, _ name: String, tolerance: Float = 1e-4) throws {
        let ref = try Reference(name)
        let tr = try Transformer(model: model, threads: 2)
        for i in 0..<ref.sequenceCount {
            let ids = try ref.ints("input_ids.\(i)")
            let want = try ref.floats("logits.\(i)")
            tr.reset()
            let got = try tr.forward(ids, allLogits: true)
            let d = maxAbsDiff(got, want.values)
            #expect(d <= tolerance, "\(name) sequence \(i): max |Δlogit| \(d)")
        }
        // Greedy continuation, token by token through the KV cache.
        let seq = try ref.ints("input_ids.0")
        let greedy = try ref.ints("greedy_ids")
        tr.reset()
        var logits = try tr.forward(seq)
        var out: [Int32] = []
        for _ in 0..<greedy.count {
            let next = Int32(logits.indices.max { logits[$0] < logits[$1] }!)
            out.append(next)
            logits = try tr.forward([next])
        }
        #expect(out == greedy, "\(name): greedy \(out) vs \(greedy)")
    }

    @Test("HF folder: logits within 1e-4 and greedy ids exact", arguments: denseModels)
    func hfFolder(name: String) throws {
        try check(try ModelLoader.open(Fixtures.model(name)), name)
    }

    @Test("after convert: logits within 1e-4 and greedy ids exact", arguments: denseModels)
    func converted(name: String) throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        #expect(try runTool("malconv", ["convert", Fixtures.model(name), "-o", dir + "/m.mal"]).status == 0)
        try check(try ModelLoader.open(dir + "/m.mal"), name)
    }

    @Test("hidden states of every layer", arguments: denseModels)
    func hiddenStates(name: String) throws {
        let ref = try Reference(name)
        let (want, shape) = try ref.floats("hidden_states.0")
        let tr = try Transformer(model: try ModelLoader.open(Fixtures.model(name)), threads: 2)
        let T = shape[1], H = shape[2]
        var got: [Int: [Float]] = [:]
        _ = try tr.forward(try ref.ints("input_ids.0"), allLogits: true) { k, states in got[k] = states }
        for k in 0..<shape[0] {
            let slice = Array(want[(k * T * H)..<((k + 1) * T * H)])
            let d = maxAbsDiff(try #require(got[k]), slice)
            #expect(d <= 1e-4, "\(name) hidden state \(k): max |Δ| \(d)")
        }
    }
}
