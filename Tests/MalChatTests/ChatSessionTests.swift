import Foundation
import MalChat
import MalCore
import MalRuntime
import MalTestSupport
import Testing

/// Chat sessions: a turn runs only its new tokens, and continuing from the cache gives exactly
/// what a fresh run of the whole conversation gives (plain and speculative decoding, after a
/// history that diverges mid-way too); one BOS with a template that writes it; stop strings.
@Suite("Chat sessions") struct ChatSessionTests {
    static func generator(_ sample: String, draft: Int = 0) throws -> Generator {
        let path = Fixtures.samples + "/" + sample
        let tr = try Transformer(model: try ModelLoader.open(path), contextLength: 512, threads: 2, mtp: draft > 0)
        return try Generator(transformer: tr, tokenizer: try TokenizerLoader.load(path), modelPath: path, draftTokens: draft)
    }

    static func settings(_ n: Int, temperature: Float = 0) -> Generator.Settings {
        var s = Generator.Settings()
        s.maxTokens = n
        s.temperature = temperature
        s.topK = temperature > 0 ? 40 : 0
        s.seed = 11
        return s
    }

    @Test("continuing from the cache equals a fresh run", arguments: [("llama3-fortunes", 0), ("deepseek-v3-fortunes", 0), ("deepseek-v3-fortunes", 2)])
    func continuation(sample: String, draft: Int) throws {
        let g = try Self.generator(sample, draft: draft)
        let tok = g.tokenizer!
        let first = tok.encode("The secret of success is", addSpecial: true)
        let a = try g.generate(history: first, settings: Self.settings(12))
        // The next turn: the answer, then new text (as a chat re-renders it); then a history that
        // diverges inside the first answer (a template that rewrites the past).
        let second = first + a.generated + tok.encode("\nNever trust a", addSpecial: false)
        let diverged = Array(first + a.generated.prefix(5)) + tok.encode(" fish", addSpecial: false)
        for (history, temperature) in [(second, Float(0)), (diverged, Float(0.8)), (second, Float(0.8))] {
            let cached = try g.generate(history: history, settings: Self.settings(10, temperature: temperature))
            let fresh = try Self.generator(sample, draft: draft).generate(history: history, settings: Self.settings(10, temperature: temperature))
            #expect(cached.generated == fresh.generated, "\(sample) draft \(draft) T=\(temperature)")
            #expect(cached.promptTokens < history.count, "the cache was used: \(cached.promptTokens) of \(history.count) ran")
        }
    }

    @Test("a turn runs only its new tokens; one BOS from the template")
    func turns() throws {
        let g = try Self.generator("llama3-fortunes")
        let template = try ChatTemplate.load(
            file: Fixtures.packageRoot + "/Tests/ChatTemplates/templates/llama3-style.jinja",
            model: Fixtures.samples + "/llama3-fortunes")
        let chat = try ChatSession(generator: g, template: template, system: "Be brief.")
        let bos = g.tokenizer!.id(of: "<|begin_of_text|>")!
        let ids = try chat.tokens(for: chat.messages + [ChatTemplate.message(role: "user", content: "Hi")])
        #expect(ids.first == bos && ids.filter { $0 == bos }.count == 1, "exactly one BOS")
        let firstTurn = try chat.tokens(for: chat.messages + [ChatTemplate.message(role: "user", content: "The secret of success is")])
        let t1 = try chat.send("The secret of success is", settings: Self.settings(8))
        #expect(t1.result.promptTokens == firstTurn.count, "the first turn runs its whole prompt")
        let t2 = try chat.send("And failure?", settings: Self.settings(8))
        let full = try chat.tokens(for: Array(chat.messages.dropLast()))
        #expect(t2.result.promptTokens < full.count / 2, "turn 2 ran \(t2.result.promptTokens) of \(full.count) tokens")
        #expect(chat.turns.count == 4)
        chat.reset()
        let t3 = try chat.send("The secret of success is", settings: Self.settings(8))
        #expect(t3.text == t1.text, "after /reset the first answer again")
    }

    @Test("stop strings: held back while they may start, cut where they match")
    func stops() {
        var m = StopMatcher(stops: ["</s>", "ab"])
        var shown = ""
        for piece in ["hel", "lo <", "/", "x a", "a", "b tail"] {
            let (ready, stopped) = m.push(piece)
            shown += ready
            if stopped { break }
        }
        #expect(shown == "hello </x a" && m.stopped && m.matched == "ab")
        var n = StopMatcher(stops: ["END"])
        #expect(n.push("the EN").ready == "the ")
        #expect(n.push("d").ready == "ENd")
        #expect(n.finish() == "")
        var o = StopMatcher(stops: ["END"])
        _ = o.push("x EN")
        #expect(o.finish() == "EN", "an unfinished prefix is text after all")
    }
}

/// The chat template travels in the container: `tokenizer_config.json`'s `chat_template` and a
/// `chat_template.jinja` (which wins, as in transformers) are read back from the `.mal` identical.
@Suite("Chat templates in .mal") struct ChatTemplateStorageTests {
    @Test("convert keeps the template; the .mal renders as the folder")
    func stored() throws {
        let dir = Fixtures.tempDir()
        defer { Fixtures.cleanup(dir) }
        let source = try String(contentsOfFile: Fixtures.packageRoot + "/Tests/ChatTemplates/templates/llama3-style.jinja", encoding: .utf8)
        let other = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
        for (name, viaJinjaFile) in [("config", false), ("jinja", true)] {
            let folder = dir + "/" + name
            try FileManager.default.copyItem(atPath: Fixtures.samples + "/llama3-fortunes", toPath: folder)
            var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/tokenizer_config.json"))) as! [String: Any]
            config["chat_template"] = viaJinjaFile ? other : source
            try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: folder + "/tokenizer_config.json"))
            if viaJinjaFile { try source.write(toFile: folder + "/chat_template.jinja", atomically: true, encoding: .utf8) }
            let mal = dir + "/\(name).mal"
            let r = try runTool("malconv", ["convert", folder, "-o", mal])
            #expect(r.status == 0, "\(r.stderr)")
            let messages = [ChatTemplate.message(role: "system", content: "S"), ChatTemplate.message(role: "user", content: "Hi")]
            let fromFolder = try #require(try ChatTemplate.load(model: folder))
            let fromMal = try #require(try ChatTemplate.load(model: mal))
            #expect(fromFolder.source == source && fromMal.source == source, "\(name): the template read back")
            #expect(try fromMal.render(messages: messages, addGenerationPrompt: true) == fromFolder.render(messages: messages, addGenerationPrompt: true))
            #expect(fromMal.specialTokens.first { $0.0 == "bos_token" }?.1.text == "<|begin_of_text|>")
        }
        #expect(try ChatTemplate.load(model: Fixtures.samples + "/llama3-fortunes") == nil, "the sample has none")
    }
}
