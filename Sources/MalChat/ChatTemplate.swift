import Foundation
import MalCore
import MalReaders

/// A model's chat template: the Jinja text transformers' `apply_chat_template` renders, with the
/// same variables (`messages`, `tools` and `documents` as none, `add_generation_prompt`, the
/// special tokens of `tokenizer_config.json`) and globals (`raise_exception`, `strftime_now`,
/// `namespace`, `dict`). The rendered text is tokenized without adding special tokens, as
/// transformers does, so a template that writes `{{ bos_token }}` gets one BOS, not two.
///
/// A model without a template (a base model, like the bundled samples) gets `plain`: each
/// message's text on a new line, an answer straight after what it answers (so the model
/// continues the text, and the next turn finds its own tokens in the cache), tokenized with the
/// tokenizer's own special tokens (its BOS).
public struct ChatTemplate {
    public let source: String
    /// Where the template came from, named by errors.
    public let origin: String
    /// `bos_token`, `eos_token`, … as the template sees them.
    public var specialTokens: [(String, JinjaValue)]
    /// Whether the rendered text is tokenized with the tokenizer's special tokens (only `plain`).
    public let addsSpecialTokens: Bool
    let nodes: [Node]

    public init(source: String, origin: String, specialTokens: [(String, JinjaValue)] = [], addsSpecialTokens: Bool = false) throws {
        self.source = source
        self.origin = origin
        self.specialTokens = specialTokens
        self.addsSpecialTokens = addsSpecialTokens
        do { nodes = try JinjaParser.parse(source) } catch var e as TemplateError {
            e.source = origin
            throw e
        }
    }

    /// The template for models that have none.
    public static func plain(specialTokens: [(String, JinjaValue)] = []) -> ChatTemplate {
        // swiftlint:disable:next force_try
        try! ChatTemplate(
            source: "{% for m in messages %}{% if not loop.first and m['role'] != 'assistant' %}{{ '\n' }}{% endif %}"
                + "{{ m['content'] }}{% endfor %}",
            origin: "the plain template (the model has no chat template)", specialTokens: specialTokens,
            addsSpecialTokens: true)
    }

    public var isPlain: Bool { addsSpecialTokens }

    /// A message as templates expect it (`{"role": …, "content": …}`).
    public static func message(role: String, content: String) -> JinjaValue {
        .dict(JinjaDict([("role", .string(role)), ("content", .string(content))]))
    }

    /// The prompt text for `messages` (each a dict with at least `role` and `content`).
    /// - Parameters:
    ///   - variables: more template variables (`tools`, `enable_thinking`, …), as the keyword
    ///     arguments of `apply_chat_template`.
    ///   - now: the clock of `strftime_now`.
    public func render(
        messages: [JinjaValue], addGenerationPrompt: Bool, variables: [(String, JinjaValue)] = [],
        now: @escaping () -> Date = Date.init
    ) throws -> String {
        let scope = Scope(parent: JinjaGlobals.scope(now: now))
        for (k, v) in specialTokens { scope.values[k] = v }
        for (k, v) in variables { scope.values[k] = v }
        scope.values["messages"] = .list(messages.map(Self.normalized))
        scope.values["add_generation_prompt"] = .bool(addGenerationPrompt)
        for k in ["tools", "documents"] where scope.values[k] == nil { scope.values[k] = JinjaValue.none }
        var interpreter = JinjaInterpreter()
        do { return try interpreter.render(nodes, scope) } catch var e as TemplateError {
            e.source = origin
            throw e
        } catch let e as JinjaError {
            throw TemplateError(error: e, line: 0, source: origin)
        }
    }
}

extension ChatTemplate {
    /// What transformers (5.x, `_normalize_chat_messages` and `_alias_reasoning_fields`) does to a
    /// message before the template sees it: keys whose value is null are dropped (an OpenAI
    /// client's `content: null`), and the first of `reasoning_content`, `thinking`, `reasoning`
    /// is copied to `thinking` (first) and `reasoning_content` (last).
    static func normalized(_ message: JinjaValue) -> JinjaValue {
        guard case .dict(let d) = message else { return message }
        var kept = JinjaDict(d.pairs.filter { !$0.value.isNone }.map { ($0.key, $0.value) })
        guard let reasoning = ["reasoning_content", "thinking", "reasoning"].lazy.compactMap({ kept[$0] }).first else { return .dict(kept) }
        var out = JinjaDict([("thinking", reasoning)])
        for (k, v) in kept.pairs where k != "reasoning_content" { out[k] = v }
        out["thinking"] = kept["thinking"] ?? reasoning
        kept = out
        kept["reasoning_content"] = reasoning
        return .dict(kept)
    }

    /// The chat template of a model (a `.mal` file or an HF folder): `chat_template.jinja`, else
    /// `tokenizer_config.json`'s `chat_template` (a string, or the entry named `default` of a
    /// list); nil when it has none.
    public static func load(model path: String) throws -> ChatTemplate? {
        let (jinja, config, origin) = try files(of: path)
        let configJSON = try config.map { b in try b.withUnsafeBytes { try JSONValue.parse($0, file: origin.config) } }
        let special = specialTokens(configJSON)
        if let jinja {
            return try ChatTemplate(source: try utf8(jinja, origin.jinja), origin: origin.jinja, specialTokens: special)
        }
        guard let t = configJSON?["chat_template"], !t.isNull else { return nil }
        if let s = t.stringValue { return try ChatTemplate(source: s, origin: origin.config, specialTokens: special) }
        if let list = t.arrayValue {
            for entry in list where entry["name"]?.stringValue == "default" {
                guard let s = entry["template"]?.stringValue else { break }
                return try ChatTemplate(source: s, origin: origin.config + " (chat_template 'default')", specialTokens: special)
            }
            throw MalError(.invalidField, "chat_template is a list without a template named 'default'", file: origin.config)
        }
        throw MalError(.invalidField, "chat_template is neither a string nor a list of named templates", file: origin.config)
    }

    /// A template from a file given on the command line (`--chat-template FILE`), with the
    /// model's special tokens.
    public static func load(file: String, model: String) throws -> ChatTemplate {
        let m = try MappedFile(path: file)
        let text = try withExtendedLifetime(m) { try utf8(Array(m.bytes), file) }
        let (_, config, origin) = try files(of: model)
        let special = specialTokens(try config.map { b in try b.withUnsafeBytes { try JSONValue.parse($0, file: origin.config) } })
        return try ChatTemplate(source: text, origin: file, specialTokens: special)
    }

    /// The model's template, or `plain` (with its special tokens) when it has none.
    public static func loadOrPlain(model path: String) throws -> ChatTemplate {
        if let t = try load(model: path) { return t }
        let (_, config, origin) = try files(of: path)
        return plain(specialTokens: specialTokens(try config.map { b in try b.withUnsafeBytes { try JSONValue.parse($0, file: origin.config) } }))
    }

    private static func files(of path: String) throws -> (jinja: [UInt8]?, config: [UInt8]?, origin: (jinja: String, config: String)) {
        if isDirectory(path) || path.hasSuffix(".safetensors") || path.hasSuffix(".json") {
            let folder = isDirectory(path) ? path : parentDirectory(path)
            func read(_ name: String) throws -> [UInt8]? {
                let p = joinPath(folder, name)
                guard fileExists(p) else { return nil }
                let m = try MappedFile(path: p)
                return withExtendedLifetime(m) { Array(m.bytes) }
            }
            return (
                try read("chat_template.jinja"), try read("tokenizer_config.json"),
                (joinPath(folder, "chat_template.jinja"), joinPath(folder, "tokenizer_config.json"))
            )
        }
        guard fileExists(path) else { throw MalError(.fileNotFound, "no such file or folder", file: path) }
        let mal = try MalFile(path: path)
        return (
            try mal.aux("chat_template.jinja"), try mal.aux("tokenizer_config.json"),
            (path + ":aux/chat_template.jinja", path + ":aux/tokenizer_config.json")
        )
    }

    private static func utf8(_ bytes: [UInt8], _ file: String) throws -> String {
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw MalError(.invalidField, "the chat template is not valid UTF-8", file: file)
        }
        return s
    }

    /// transformers' `special_tokens_map`: the named special tokens of `tokenizer_config.json`
    /// (a string or an AddedToken object each) and `additional_special_tokens`.
    static func specialTokens(_ config: JSONValue?) -> [(String, JinjaValue)] {
        guard let config else { return [] }
        var out: [(String, JinjaValue)] = []
        func text(_ v: JSONValue?) -> String? { v?.stringValue ?? v?["content"]?.stringValue }
        for k in ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"] {
            if let s = text(config[k]) { out.append((k, .string(s))) }
        }
        if let extra = config["additional_special_tokens"]?.arrayValue {
            out.append(("additional_special_tokens", .list(extra.compactMap { text($0).map { .string($0) } })))
        }
        return out
    }
}
