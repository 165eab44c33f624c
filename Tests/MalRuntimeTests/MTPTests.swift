import Foundation
import MalCore
import MalReaders
import MalRuntime
import MalTestSupport
import MalTransforms
import MalWriters
import Testing

/// The multi-token-prediction layer against transformers' `MtpModel` (`mtp_logits.0` of the
/// DeepSeek-V3 fixtures), in every form a model can take on its way through malconv.
@Suite("Multi-token prediction") struct MTPTests {
    /// MTP logits of sequence 0: main forward, then row i from token i+1 (the main model's greedy
    /// choice after the last token) and the main hidden state at i.
    static func mtpLogits(_ model: CanonicalModel, ids: [Int32]) throws -> (main: [Float], mtp: [Float], next: [Int32]) {
        let tr = try Transformer(model: model, threads: 2, mtp: true)
        let logits = try tr.forward(ids, allLogits: true, keepHidden: true)
        let vocab = logits.count / ids.count
        let last = logits[((ids.count - 1) * vocab)...]
        let greedy = Int32(last.indices.max { last[$0] < last[$1] }! - (ids.count - 1) * vocab)
        let next = Array(ids.dropFirst()) + [greedy]
        return (logits, try tr.mtpForward(next: next, hidden: tr.finalHidden, allLogits: true).logits, next)
    }

    static func write(_ model: CanonicalModel, _ path: String) throws {
        _ = try ContainerExport.write(model, to: path, options: MalWriter.Options(), command: "test", optionValues: [:])
    }

    @Test("mtp_logits within 1e-4 of transformers", arguments: ["deepseek-v3-tiny", "deepseek-v3-fp8"])
    func matchesTransformers(_ name: String) throws {
        let ref = try Reference(name)
        let ids = try ref.ints("input_ids.0"), want = try ref.floats("mtp_logits.0").values
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let hf = try HFCanonicalModel(model: try HFModel(path: Fixtures.model(name)))
        try MTPTests.write(hf, dir + "/m.mal")
        try MTPTests.write(try QuantizedModel(base: try MalFile(path: dir + "/m.mal")), dir + "/q.mal")
        try MTPTests.write(try AbsorbedModel(base: try MalFile(path: dir + "/m.mal"), mode: .split, dtype: .f32), dir + "/split.mal")
        try MTPTests.write(try AbsorbedModel(base: try MalFile(path: dir + "/m.mal"), mode: .merged, dtype: .f32), dir + "/merged.mal")
        var forms: [(String, CanonicalModel)] = [
            ("HF folder", hf), ("converted", try MalFile(path: dir + "/m.mal")),
            ("absorbed split", try MalFile(path: dir + "/split.mal")),
            ("absorbed merged", try MalFile(path: dir + "/merged.mal")),
        ]
        // Quantising leaves the FP8 fixture's weights unchanged (they pass through).
        if name == "deepseek-v3-fp8" { forms.append(("quantize round trip", try MalFile(path: dir + "/q.mal"))) }
        for (form, model) in forms {
            let r = try MTPTests.mtpLogits(model, ids: ids)
            #expect(r.next == (try ref.ints("mtp_input_ids.0")), "\(name), \(form)")
            #expect(maxAbsDiff(r.mtp, want) <= 1e-4, "\(name), \(form): \(maxAbsDiff(r.mtp, want))")
        }
    }

    @Test func logitsCommandWritesMTPLogits() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let ref = try Reference("deepseek-v3-tiny")
        let ids = try ref.ints("input_ids.0").map(String.init).joined(separator: ",")
        let r = try runTool("malrun", ["logits", Fixtures.model("deepseek-v3-tiny"), "--ids", ids, "--mtp", "-o", dir + "/l.safetensors"])
        #expect(r.status == 0, "\(r.stderr)")
        let f = try SafetensorsFile(path: dir + "/l.safetensors")
        let got = try f.tensor(named: "mtp_logits").withBytes { Array($0.bindMemory(to: Float.self)) }
        #expect(maxAbsDiff(got, try ref.floats("mtp_logits.0").values) <= 1e-4)
        let none = try runTool("malrun", ["logits", Fixtures.model("llama3-tiny"), "--ids", "1,2", "--mtp", "-o", dir + "/n.safetensors"])
        #expect(none.status == 1 && none.stderr.contains("no multi-token-prediction layer"), "\(none.stderr)")
    }

    /// The MTP layer through the rest of malconv: its Linear weights are FP8 after quantize (as in
    /// DeepSeek's release), dequantize and export keep it (export's HF folder gives the reference
    /// MTP logits), and --drop-mtp leaves it out with the bytes it saved.
    @Test func survivesEveryTransformAndCanBeDropped() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let tiny = Fixtures.model("deepseek-v3-tiny")
        #expect(try runTool("malconv", ["convert", tiny, "-o", dir + "/t.mal"]).status == 0)
        #expect(try runTool("malconv", ["export", dir + "/t.mal", "-o", dir + "/exported"]).status == 0)
        let ref = try Reference("deepseek-v3-tiny")
        let r = try MTPTests.mtpLogits(try HFCanonicalModel(model: try HFModel(path: dir + "/exported")), ids: try ref.ints("input_ids.0"))
        #expect(maxAbsDiff(r.mtp, try ref.floats("mtp_logits.0").values) <= 1e-4, "after export")

        let sample = Fixtures.samples + "/deepseek-v3-fortunes"
        let q = try runTool("malconv", ["quantize", sample, "-o", dir + "/q.mal", "--json"])
        #expect(q.status == 0, "\(q.stderr)")
        let qm = try MalFile(path: dir + "/q.mal")
        let mtpAttn = try #require(qm.tensors.first { $0.name == "blk.4.attn_q_a.weight" })
        #expect(mtpAttn.dtype == .f8e4m3 && qm.spec.mtpLayers == 1)
        #expect(try runTool("malconv", ["dequantize", dir + "/q.mal", "-o", dir + "/d.mal"]).status == 0)
        let l = try runTool("malrun", ["logits", dir + "/d.mal", "--ids", "1,2,3", "--mtp", "-o", dir + "/l.safetensors"])
        #expect(l.status == 0, "\(l.stderr)")

        let dropped = try runTool("malconv", ["convert", sample, "-o", dir + "/nomtp.mal", "--drop-mtp", "--json"])
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(dropped.stdout.utf8)) as? [String: Any])
        let info = try #require(doc["dropped_mtp"] as? [String: Any])
        let full = try MalFile(path: dir + "/t.mal"), none = try MalFile(path: dir + "/nomtp.mal")
        #expect((info["tensors"] as? Int ?? 0) > 0 && (info["bytes"] as? Int ?? 0) > 1_000_000)
        #expect(none.spec.mtpLayers == 0 && !none.tensors.contains { $0.name.hasPrefix("blk.4.") } && full.spec.mtpLayers == 1)
        let refused = try runTool("malrun", [dir + "/nomtp.mal", "-p", "hi", "-n", "2", "--speculative", "mtp"])
        #expect(refused.status == 1 && refused.stderr.contains("no multi-token-prediction layer"), "\(refused.stderr)")
        let qd = try runTool("malconv", ["quantize", sample, "-o", dir + "/qd", "--drop-mtp"])
        #expect(qd.status == 0 && qd.stderr.contains("left out the multi-token-prediction layer"), "\(qd.stderr)")
        let cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/qd/config.json"))) as? [String: Any]
        #expect(cfg?["num_nextn_predict_layers"] as? Int == 0)
        #expect(try runTool("malconv", ["inspect", dir + "/qd"]).status == 0)
    }
}
