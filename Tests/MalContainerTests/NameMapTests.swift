import Foundation
import MalTestSupport
import Testing
import MalArchitectures
import MalCore

@Suite("Canonical names")
struct NameMapTests {
    /// Every HF tensor of every fixture maps to canonical names and back to itself.
    @Test("HF → canonical → HF is the identity", arguments: Fixtures.models)
    func bothDirections(model: String) throws {
        let spec = try HFConfigReaderShim.spec(Fixtures.model(model))
        let names = try HFConfigReaderShim.tensorNames(Fixtures.model(model))
        let arch = try ArchitectureRegistry.architecture(of: spec)
        let prefix = arch.hfNamePrefix(tensorNames: names)
        var canonical = Set<String>()
        for n in names {
            let maps = try #require(arch.toCanonical(n, hfNamePrefix: prefix), "\(n)")
            for m in maps {
                #expect(canonical.insert(m.canonical).inserted, "two HF names map to \(m.canonical)")
                let back = try #require(arch.toHF(m.canonical, hfNamePrefix: prefix))
                #expect(back.hf == n && back.layout == m.layout)
            }
        }
    }

    @Test func unknownNamesDoNotMap() {
        let llama = LlamaArchitecture(), deepseek = DeepSeekArchitecture()
        #expect(llama.toCanonical("model.layers.0.self_attn.q_norm.weight") == nil)
        #expect(llama.toCanonical("model.layers.x.mlp.up_proj.weight") == nil)
        #expect(llama.toCanonical("model.layers.01.mlp.up_proj.weight") == nil)
        #expect(deepseek.toHF("blk.0.unknown.weight") == nil)
    }

    /// Formats/NAMES.md is the name tables, row for row: every rule of every architecture is a row
    /// there (with its layout), and no row is anything else (a rule since removed or changed).
    @Test func namesDocumentIsTheRuleTables() throws {
        let doc = try String(contentsOfFile: Fixtures.packageRoot + "/Formats/NAMES.md", encoding: .utf8)
        let documented = Set(doc.split(separator: "\n").map(String.init).filter { $0.hasPrefix("| `") })
        let rules = Set(ArchitectureRegistry.all.flatMap { $0.nameRules.map(\.documentationRow) })
        #expect(rules.subtracting(documented).sorted() == [], "rules missing from NAMES.md")
        #expect(documented.subtracting(rules).sorted() == [], "rows of NAMES.md that no rule has")
    }
}
