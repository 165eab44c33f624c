import Foundation
import MalTestSupport
import Testing

/// The hand-made malformed-input corpus (`Tests/Malformed`, written by its `make_malformed.py`):
/// every case ends with its exit status (1 malformed, 2 tensors that do not fit the config), names
/// its error kind and the file, and never ends by a signal.
@Suite("Malformed-input corpus") struct MalformedCorpusTests {
    struct Case: Decodable, CustomStringConvertible {
        var name: String, command: String, path: String, status: Int32, kind: String, phrase: String
        var description: String { name }
    }

    static let root = Fixtures.packageRoot + "/Tests/Malformed"
    static let cases: [Case] = {
        guard let data = FileManager.default.contents(atPath: root + "/cases.json"),
            let doc = try? JSONDecoder().decode([String: [Case]].self, from: data)
        else { return [] }
        return doc["cases"] ?? []
    }()

    @Test("the corpus has at least 60 cases over every reader")
    func size() {
        #expect(MalformedCorpusTests.cases.count >= 60)
        let groups = Set(MalformedCorpusTests.cases.map { String($0.name.split(separator: "-")[0]) })
        #expect(groups.isSuperset(of: ["safetensors", "index", "config", "tokenizer", "mal"]), "\(groups)")
    }

    @Test("each case fails with its status, kind and message", arguments: cases)
    func malformed(_ c: Case) throws {
        let path = MalformedCorpusTests.root + "/" + c.path
        let (tool, args): (String, [String]) =
            switch c.command {
            case "check": ("malconv", ["check", path])
            case "tokenize": ("malrun", ["tokenize", path, "--text", "hi"])
            default: ("malconv", ["inspect", path])
            }
        let r = try runTool(tool, args)
        let text = r.stderr + r.stdout
        #expect(r.status == c.status, "\(c.name): status \(r.status): \(text)")
        if !c.kind.isEmpty { #expect(text.contains("[\(c.kind)]"), "\(c.name): \(text)") }
        #expect(c.phrase.isEmpty || text.contains(c.phrase), "\(c.name): \(text)")
        if c.status == 1 { #expect(text.contains("Malformed/" + c.name), "\(c.name): the message names no file: \(text)") }
    }
}
