import Foundation
import MalChat
import MalCore
import MalTestSupport
import Testing

/// Chat templates rendered byte for byte as transformers' `apply_chat_template` renders them
/// (`Tests/ChatTemplates/expected.json`, written by `make_cases.py` with jinja2 as the oracle):
/// the DeepSeek-V3 template, hand-written templates that use every supported construct, and
/// templates that must fail.
@Suite("Chat templates") struct ChatTemplateTests {
    static let folder = Fixtures.packageRoot + "/Tests/ChatTemplates"

    struct Oracle: @unchecked Sendable {
        var cases: [[String: Any]]
        var special: [String: [String: Any]]
    }

    static let oracle: Oracle = {
        func load(_ name: String) -> Any {
            let path = folder + "/" + name
            return try! JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)), options: [.fragmentsAllowed])
        }
        let expected = load("expected.json") as! [String: Any]
        return Oracle(cases: expected["cases"] as! [[String: Any]], special: expected["special_tokens"] as! [String: [String: Any]])
    }()

    /// transformers pins nothing; make_cases.py pins strftime_now to this local time.
    static let pinnedNow: Date = {
        var c = DateComponents()
        (c.year, c.month, c.day, c.hour, c.minute, c.second) = (2024, 7, 26, 13, 5, 9)
        return Calendar.current.date(from: c)!
    }()

    static func value(_ any: Any) -> JinjaValue {
        switch any {
        case let s as String: return .string(s)
        default: fatalError("special tokens are strings")
        }
    }

    /// The conversations, read with key order kept (`tojson` prints keys in order).
    static let conversations: [JSONValue] = {
        let m = try! MappedFile(path: folder + "/conversations.json")
        return try! withExtendedLifetime(m) { try JSONValue.parse(m.bytes, file: "conversations.json") }.arrayValue!
    }()

    static func template(_ file: String, tokenizer: String) throws -> ChatTemplate {
        let source = try String(contentsOfFile: folder + "/templates/" + file, encoding: .utf8)
        let special = (oracle.special[tokenizer] ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, value($0.value)) }
        return try ChatTemplate(source: source, origin: file, specialTokens: special)
    }

    static var templateFiles: [String] { Array(Set(oracle.cases.map { $0["template"] as! String })).sorted() }

    @Test("renders as transformers does", arguments: templateFiles)
    func matchesTransformers(file: String) throws {
        let cases = Self.oracle.cases.filter { $0["template"] as! String == file }
        #expect(cases.count >= 2)
        var rendered = 0
        for c in cases {
            let conv = Self.conversations[c["conversation"] as! Int]
            let messages = conv["messages"]!.arrayValue!.map(JinjaValue.init(json:))
            let variables = (conv["variables"]?.objectPairs ?? []).map { ($0.0, JinjaValue(json: $0.1)) }
            let gen = c["add_generation_prompt"] as! Bool
            let label = "\(file) conversation \(c["conversation"]!) add_generation_prompt=\(gen)"
            let result = Result {
                try Self.template(file, tokenizer: c["tokenizer"] as! String)
                    .render(messages: messages, addGenerationPrompt: gen, variables: variables, now: { Self.pinnedNow })
            }
            if let want = c["output"] as? String {
                switch result {
                case .success(let got):
                    if got != want || Array(got.utf8) != Array(want.utf8) {
                        let g = got.components(separatedBy: "\n"), w = want.components(separatedBy: "\n")
                        let k = (0..<min(g.count, w.count)).first { g[$0] != w[$0] } ?? min(g.count, w.count)
                        Issue.record(
                            "\(label): output line \(k + 1) differs\n got: \(k < g.count ? g[k].debugDescription : "(end)")\nwant: \(k < w.count ? w[k].debugDescription : "(end)")"
                        )
                    }
                    rendered += 1
                case .failure(let e): Issue.record("\(label): \(e)")
                }
            } else if case .success(let got) = result {
                Issue.record("\(label): transformers fails (\(c["error"]!)), we rendered \(got.debugDescription)")
            }
        }
        if !file.hasPrefix("error-") { #expect(rendered >= 30, "\(file): \(rendered) message lists rendered") }
    }

    @Test("errors name the template line")
    func errorLines() throws {
        let m = [ChatTemplate.message(role: "user", content: "hi")]
        for (file, line, text) in [
            ("error-undefined.jinja", 2, "has no attribute 'missing'"), ("error-type.jinja", 3, "unsupported operand"),
            ("error-include.jinja", 1, "unsupported: the '{% include %}' statement"),
            ("error-syntax.jinja", 3, "unexpected '{% endfor %}'"),
            ("error-filter.jinja", 1, "unsupported: the filter 'nosuchfilter'"),
            ("error-raise.jinja", 1, "raised an exception: This template needs a system message first"),
        ] {
            do {
                _ = try Self.template(file, tokenizer: "llama3-tiny").render(messages: m, addGenerationPrompt: true)
                Issue.record("\(file) rendered")
            } catch let e as TemplateError {
                #expect(e.line == line, "\(file): \(e)")
                #expect(e.description.contains(text), "\(file): \(e)")
                #expect(e.description.hasPrefix(file + ": chat template line \(line): "), "\(e)")
            }
        }
    }

    @Test("hostile templates stop with an error, never hang")
    func limits() throws {
        let m = [ChatTemplate.message(role: "user", content: "hi")]
        for source in [
            "{% for i in range(100000000) %}x{% endfor %}", "{{ 'x' * 100000000000 }}",
            "{% for i in range(600) %}{% for j in range(600) %}{% endfor %}{% endfor %}",
            "{{ 9223372036854775807 + 1 }}", "{{ 1 // 0 }}", "{{ messages.__class__ }}{{ ns._x }}",
            // a macro's loops count against the same budget; doubling a string stops at the limit
            "{% macro m() %}{% for i in range(200000) %}{% endfor %}{% endmacro %}{% for i in range(5) %}{{ m() }}{% endfor %}",
            "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        ] {
            #expect(throws: TemplateError.self, "\(source)") {
                _ = try ChatTemplate(source: source, origin: "t").render(messages: m, addGenerationPrompt: true)
            }
        }
    }
}
