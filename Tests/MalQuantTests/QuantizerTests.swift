import Foundation
import MalTestSupport
import Testing
import MalArchitectures
import MalCore
import MalReaders
import MalTransforms
import MalVerify
import MalWriters

func digests(_ path: String) throws -> [String: String] {
    let c = try SafetensorsCheckpoint(path: path)
    var out: [String: String] = [:]
    for t in c.tensors { out[t.name] = "\(t.dtype.rawValue) \(t.shape) \(hex16(try c.tensor(named: t.name).withBytes { xxh64($0) }))" }
    return out
}

/// E4M3 decoding table from the fixture (independent of the codec under test).
func e4m3Table() throws -> [Float] {
    let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.fixtures + "/fp8/e4m3_decode.json"))
    let rows = (try JSONSerialization.jsonObject(with: data) as! [String: Any])["entries"] as! [[String: Any]]
    return rows.map { Float(bitPattern: UInt32(($0["f32_bits"] as! String).dropFirst(2), radix: 16)!) }
}

@Suite("FP8 block quantisation")
struct QuantizerTests {
    @Test func blockQuantReferenceIsBitExact() throws {
        let f = try SafetensorsFile(path: Fixtures.fixtures + "/fp8/block_quant_reference.safetensors")
        let w = try f.tensor(named: "weight")
        #expect(w.shape == [300, 260])
        let r = try BlockQuantizer.quantize(w, block: .deepseek, scale: .f32, threads: 2)
        #expect(r.scaleShape == [3, 3])
        #expect(Array(r.q.bytes) == (try f.tensor(named: "weight_fp8_bits").byteArray))
        #expect(Array(r.scales.bytes) == (try f.tensor(named: "weight_scale_inv").byteArray))
        let q = Tensor(name: "q", dtype: .f8e4m3, shape: [300, 260], storage: r.q)
        let s = Tensor(name: "s", dtype: .f32, shape: [3, 3], storage: r.scales)
        let d = try BlockQuantizer.dequantize(q: q, scales: s, block: .deepseek)
        #expect(Array(d.bytes) == (try f.tensor(named: "dequantized").byteArray))
    }

    @Test func quantizedSampleIsBitIdenticalToTheReleaseLayoutCopy() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let base = try HFCanonicalModel(model: try HFModel(path: Fixtures.samples + "/deepseek-v3-fortunes"))
        let q = try QuantizedModel(base: base)
        #expect(q.decisions.filter { $0.action == "quantized" }.count == 136)
        _ = try HFFolderWriter.write(q, to: dir + "/fp8")
        let mine = try digests(dir + "/fp8"), theirs = try digests(Fixtures.samples + "/deepseek-v3-fortunes-fp8")
        #expect(mine.count == theirs.count)
        #expect(mine == theirs)
        let a = try HFConfigReader.read(path: dir + "/fp8/config.json")
        let b = try HFConfigReader.read(path: Fixtures.samples + "/deepseek-v3-fortunes-fp8/config.json")
        #expect(a == b)
    }

    @Test func dequantizeReproducesTheReferenceWeightsBitForBit() throws {
        let table = try e4m3Table()
        let hf = try HFModel(path: Fixtures.model("deepseek-v3-fp8"))
        let d = try DequantizedModel(base: try HFCanonicalModel(model: hf), dtype: .f32)
        var checked = 0
        for t in hf.tensors where t.dtype == .f8e4m3 {
            let q = try hf.checkpoint.tensor(named: t.name).byteArray
            let s = try hf.checkpoint.tensor(named: t.name + "_scale_inv").withBytes { Array($0.bindMemory(to: Float.self)) }
            let rows = t.shape[0], cols = t.shape[1], sc = (cols + 127) / 128
            let canonical = DeepSeekArchitecture().toCanonical(t.name)![0].canonical
            let got = try d.load(canonical).withBytes { Array($0.bindMemory(to: Float.self)) }
            var mismatches = 0
            for r in 0..<rows {
                for c in 0..<cols {
                    let want = table[Int(q[r * cols + c])] * s[(r / 128) * sc + c / 128]
                    if got[r * cols + c].bitPattern != want.bitPattern { mismatches += 1 }
                }
            }
            #expect(mismatches == 0, "\(t.name)")
            checked += 1
        }
        #expect(checked == 72)
    }

    @Test func cliQuantizeFollowsTheFP8FixtureConventions() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let r = try runTool("malconv", ["quantize", Fixtures.model("deepseek-v3-tiny"), "-o", dir + "/q.mal"])
        #expect(r.status == 0, "\(r.stderr)")
        let e = try runTool("malconv", ["export", dir + "/q.mal", "-o", dir + "/hf", "--to", "safetensors"])
        #expect(e.status == 0, "\(e.stderr)")
        let mine = try HFModel(path: dir + "/hf"), ref = try HFModel(path: Fixtures.model("deepseek-v3-fp8"))
        #expect(mine.inventory().isClean)
        // Same quantised tensor kinds (layer and expert numbers aside), F8 weights with F32 scale_inv.
        func kinds(_ m: HFModel, _ d: DType) -> Set<String> {
            Set(
                m.tensors.filter { $0.dtype == d }.map {
                    $0.name.replacing(/\.\d+\./, with: ".N.").replacing(/\.\d+\./, with: ".N.")
                })
        }
        #expect(kinds(mine, .f8e4m3) == kinds(ref, .f8e4m3))
        #expect(Set(mine.tensors.filter { $0.name.hasSuffix("_scale_inv") }.map(\.dtype)) == [.f32])
        for t in mine.tensors where t.dtype == .f8e4m3 {
            let s = try #require(mine.checkpoint.info(t.name + "_scale_inv"))
            #expect(s.shape == [(t.shape[0] + 127) / 128, (t.shape[1] + 127) / 128])
        }
        #expect(mine.spec.quantization == ref.spec.quantization)
        // Kept tensors keep their dtype (F32 here), as the release keeps BF16.
        #expect(mine.checkpoint.info("lm_head.weight")?.dtype == .f32)
        #expect(mine.checkpoint.info("model.layers.1.mlp.gate.weight")?.dtype == .f32)
    }

    @Test func alreadyFP8PassesThroughUntouched() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let q = try QuantizedModel(base: try HFCanonicalModel(model: try HFModel(path: Fixtures.model("deepseek-v3-fp8"))))
        #expect(q.decisions.filter { $0.action == "quantized" }.isEmpty)
        #expect(q.decisions.filter { $0.action == "already FP8" }.count == 72)
        _ = try HFFolderWriter.write(q, to: dir + "/o")
        #expect(try digests(dir + "/o") == digests(Fixtures.model("deepseek-v3-fp8")))
    }

    @Test func nonFiniteWeightsStopWithNameAndIndex() throws {
        var values = [Float](repeating: 0.5, count: 64 * 40)
        values[3 * 40 + 7] = .nan
        let t = values.withUnsafeBytes { Tensor(name: "blk.0.attn_q.weight", dtype: .f32, shape: [64, 40], storage: TensorStorage(copying: $0)) }
        let e = try #require(throws: MalError.self) { try BlockQuantizer.quantize(t, block: .deepseek, scale: .f32) }
        #expect(e.kind == .nonFiniteValue && e.tensor == "blk.0.attn_q.weight" && e.description.contains("element 127"))
    }

    @Test func powerOfTwoScalesAndOtherBlockShapes() throws {
        let f = try SafetensorsFile(path: Fixtures.fixtures + "/fp8/block_quant_reference.safetensors")
        let w = try f.tensor(named: "weight")
        let x = w.withBytes { Array($0.bindMemory(to: Float.self)) }
        let p2 = try BlockQuantizer.quantize(w, block: .deepseek, scale: .ue8m0)
        for s in Array(p2.scales.bytes.bindMemory(to: Float.self)) { #expect(s.significand == 1 && s > 0) }
        let row = try BlockQuantizer.quantize(w, block: BlockShape("1x128")!, scale: .f32)
        #expect(row.scaleShape == [300, 3])
        let pc = try BlockQuantizer.quantize(w, block: BlockShape("per-channel")!, scale: .f32)
        #expect(pc.scaleShape == [300, 1])
        // Per-channel scale of row 0 is its amax / 448.
        let amax = max(x[0..<260].map(abs).max()!, 1e-4)
        #expect(pc.scales.bytes.load(as: Float.self) == amax / 448)
        withExtendedLifetime((p2, row, pc)) {}
    }

    @Test func excludeAndIncludePatterns() throws {
        let base = try HFCanonicalModel(model: try HFModel(path: Fixtures.model("deepseek-v3-tiny")))
        let q = try QuantizedModel(base: base, exclude: ["blk.0.*"])
        #expect(q.decisions.first { $0.name == "blk.0.attn_q_a.weight" }?.action == "kept")
        #expect(q.decisions.first { $0.name == "blk.1.attn_q_a.weight" }?.action == "quantized")
        let q2 = try QuantizedModel(base: base, include: ["output.weight"])
        #expect(q2.decisions.first { $0.name == "output.weight" }?.action == "quantized")
        #expect(q2.decisions.first { $0.name == "token_embd.weight" }?.action == "kept")
    }

    @Test func verifyFiguresAreSensible() throws {
        let base = try HFCanonicalModel(model: try HFModel(path: Fixtures.samples + "/llama3-fortunes"))
        let q = try QuantizedModel(base: base)
        let r = try ModelComparison.compare(reference: base, candidate: q)
        let quantised = r.tensors.filter { $0.candidateDType == "F8_E4M3" }
        #expect(quantised.count == 28)
        for m in quantised {
            #expect(m.snrDB > 25 && m.snrDB < 40, "\(m.name): \(m.snrDB) dB")
            #expect(m.cosine > 0.998 && m.overE4M3Bound == 0, "\(m.name)")
        }
        let kept = r.tensors.filter { $0.candidateDType == "BF16" }
        #expect(kept.allSatisfy { $0.maxAbsError == 0 && $0.snrDB.isInfinite })
        #expect(r.onlyInReference.isEmpty && r.onlyInCandidate.isEmpty)
    }

    @Test func verifyCommandThresholdGatesExitStatus() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        #expect(try runTool("malconv", ["quantize", Fixtures.model("llama3-tiny"), "-o", dir + "/q.mal"]).status == 0)
        let ok = try runTool("malconv", ["verify", Fixtures.model("llama3-tiny"), dir + "/q.mal", "--max-rel-rmse", "0.1"])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout.contains("TOTAL"))
        let bad = try runTool("malconv", ["verify", Fixtures.model("llama3-tiny"), dir + "/q.mal", "--max-rel-rmse", "0.001", "--json"])
        #expect(bad.status == 1 && bad.stderr.contains("exceed"))
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(bad.stdout.utf8)) as? [String: Any])
        let tensors = try #require(doc["tensors"] as? [String: Any])
        #expect((tensors["tensors"] as? [Any])?.count == 20)
        #expect(doc["evaluation"] == nil)
    }

    /// An FP8 input keeps its scale grids, so quantising it with another block shape would record a
    /// block the grids do not have (`check` said ok, the runtime refused the file): refused, with
    /// the file and tensor; the input's own block passes through, and the result runs.
    @Test func otherBlockOnAnFP8InputIsRefused() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        for input in [Fixtures.model("deepseek-v3-fp8"), dir + "/in.mal"] {
            if input.hasSuffix(".mal") {
                #expect(try runTool("malconv", ["convert", Fixtures.model("deepseek-v3-fp8"), "-o", input]).status == 0)
            }
            let bad = try runTool("malconv", ["quantize", input, "-o", dir + "/q1.mal", "--block", "1x128"])
            #expect(bad.status == 1 && bad.stderr.contains("already FP8") && bad.stderr.contains(input), "\(bad.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/q1.mal"))
            let ok = try runTool("malconv", ["quantize", input, "-o", dir + "/q2.mal", "--force"])
            #expect(ok.status == 0, "\(ok.stderr)")
            let run = try runTool("malrun", ["logits", dir + "/q2.mal", "--ids", "1,2,3", "-o", dir + "/l.safetensors", "--force"])
            #expect(run.status == 0, "\(run.stderr)")
        }
    }
}
