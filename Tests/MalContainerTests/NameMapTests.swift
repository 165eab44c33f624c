import Foundation
import MalTestSupport
import Testing
import MalCore
import MalTransforms

@Suite("Canonical names")
struct NameMapTests {
    /// Every HF tensor of every fixture maps to canonical names and back to itself.
    @Test("HF → canonical → HF is the identity", arguments: Fixtures.models)
    func bothDirections(model: String) throws {
        let spec = try HFConfigReaderShim.spec(Fixtures.model(model))
        let names = try HFConfigReaderShim.tensorNames(Fixtures.model(model))
        let prefix = names.contains { $0.hasPrefix("transformer.") } ? "transformer." : ""
        var canonical = Set<String>()
        for n in names {
            let maps = try #require(CanonicalNames.toCanonical(n, arch: spec.architecture, gpt2Prefix: prefix), "\(n)")
            for m in maps {
                #expect(canonical.insert(m.canonical).inserted, "two HF names map to \(m.canonical)")
                let back = try #require(CanonicalNames.toHF(m.canonical, arch: spec.architecture, gpt2Prefix: prefix))
                #expect(back.hf == n && back.layout == m.layout)
            }
        }
    }

    @Test func unknownNamesDoNotMap() {
        #expect(CanonicalNames.toCanonical("model.layers.0.self_attn.q_norm.weight", arch: .llama) == nil)
        #expect(CanonicalNames.toCanonical("model.layers.x.mlp.up_proj.weight", arch: .llama) == nil)
        #expect(CanonicalNames.toCanonical("model.layers.01.mlp.up_proj.weight", arch: .llama) == nil)
        #expect(CanonicalNames.toHF("blk.0.unknown.weight", arch: .deepseekV3) == nil)
    }

    /// Formats/NAMES.md documents every rule of the name tables (it is generated from them).
    @Test func namesDocumentCoversEveryRule() throws {
        let doc = try String(contentsOfFile: Fixtures.packageRoot + "/Formats/NAMES.md", encoding: .utf8)
        for arch in Architecture.allCases {
            for r in CanonicalNames.rules(for: arch) {
                #expect(doc.contains("`\(r.hf)` | `\(r.canonical)`"), "\(arch): \(r.hf) → \(r.canonical) missing from NAMES.md")
            }
        }
    }
}
