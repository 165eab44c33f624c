import Foundation
import MalTestSupport
import Testing
import MalCore
import MalReaders

@Suite("malconv inspect")
struct InspectCommandTests {
    static let expectedArch = [
        "gpt2-tiny": "gpt2", "llama3-tiny": "llama", "deepseek-v3-tiny": "deepseek_v3",
        "deepseek-v3-fp8": "deepseek_v3", "deepseek-v2-lite-tiny": "deepseek_v2",
    ]

    @Test("--json reports the architecture and the sum of tensor element counts", arguments: Fixtures.models)
    func inspectJSON(model: String) throws {
        let r = try runTool("malconv", ["inspect", Fixtures.model(model), "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let doc = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        #expect(doc["architecture"] as? String == Self.expectedArch[model])
        var total = 0
        let m = try HFModel(path: Fixtures.model(model))
        for f in m.checkpoint.files {
            total += try Fixtures.headerOracle(f.path).filter { !$0.key.hasSuffix("_scale_inv") }.values
                .reduce(0) { $0 + $1.shape.reduce(1, *) }
        }
        #expect(doc["parameters"] as? Int == total)
        let inv = doc["inventory"] as! [String: Any]
        #expect((inv["missing"] as! [Any]).isEmpty && (inv["unexpected"] as! [Any]).isEmpty)
    }

    @Test func inspectText() throws {
        let r = try runTool("malconv", ["inspect", Fixtures.model("deepseek-v3-fp8")])
        #expect(r.status == 0)
        #expect(r.stdout.contains("deepseek_v3") && r.stdout.contains("fp8 e4m3") && r.stdout.contains("2976848"))
    }

    /// A .mal file (named anything) is recognised by its magic bytes: spec, sizes per dtype and
    /// codec, provenance; --json agrees with the checkpoint's parameter count; a truncated copy
    /// fails with exit 1 and names the file.
    @Test func inspectContainer() throws {
        let dir = Fixtures.tempDir()
        defer { Fixtures.cleanup(dir) }
        let mal = dir + "/m.mal", renamed = dir + "/model.bin"
        let conv = try runTool("malconv", ["convert", Fixtures.model("deepseek-v3-fp8"), "-o", mal])
        #expect(conv.status == 0, "\(conv.stderr)")
        try FileManager.default.copyItem(atPath: mal, toPath: renamed)
        let text = try runTool("malconv", ["inspect", renamed, "--tensors"])
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains("container      MAL") && text.stdout.contains("deepseek_v3") && text.stdout.contains("F8_E4M3"))
        #expect(text.stdout.contains("made by        malconv") && text.stdout.contains("model.layers") == false)
        let r = try runTool("malconv", ["inspect", mal, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let hf = try #require(
            try JSONSerialization.jsonObject(with: Data(try runTool("malconv", ["inspect", Fixtures.model("deepseek-v3-fp8"), "--json"]).stdout.utf8))
                as? [String: Any])
        #expect(doc["parameters"] as? Int == hf["parameters"] as? Int)
        #expect(doc["architecture"] as? String == "deepseek_v3")
        let stored = try #require(doc["storedBytes"] as? Int), file = try #require(doc["fileBytes"] as? Int)
        #expect(stored > 0 && stored < file)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: mal))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: renamed))
        let bad = try runTool("malconv", ["inspect", renamed])
        #expect(bad.status == 1 && bad.stderr.contains(renamed) && bad.stdout.isEmpty, "\(bad.stderr)")
    }

    @Test func inspectMissingPathFails() throws {
        let r = try runTool("malconv", ["inspect", "/nonexistent/model"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("/nonexistent/model") && r.stdout.isEmpty)
    }

    @Test func inspectReportsMissingTensors() throws {
        // A config promising more layers than the file holds: exit 2 and the missing names.
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        try FileManager.default.copyItem(atPath: Fixtures.model("gpt2-tiny") + "/model.safetensors", toPath: dir + "/model.safetensors")
        var cfg = try String(contentsOfFile: Fixtures.model("gpt2-tiny") + "/config.json", encoding: .utf8)
        cfg = cfg.replacingOccurrences(of: "\"n_layer\": 2", with: "\"n_layer\": 3")
        try cfg.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        let r = try runTool("malconv", ["inspect", dir])
        #expect(r.status == 2)
        #expect(r.stdout.contains("missing     transformer.h.2.attn.c_attn.weight"))
    }

    @Test func helpIsAvailable() throws {
        let r = try runTool("malconv", ["inspect", "--help"])
        #expect(r.status == 0 && r.stdout.contains("--json"))
    }
}
