import MalCore
import MalRuntime

/// A `/v1/completions` or `/v1/chat/completions` body, checked field by field: a wrong type or
/// value is a 400 naming the field, and so is an OpenAI option this server does not implement
/// (`n` > 1, `echo`, penalties …) when it asks for anything but the default.
struct APIRequest: Sendable {
    enum Input: Sendable {
        case text(String)
        case tokens([Int32])
        /// Messages and extra template variables (`tools`, `chat_template_kwargs`).
        case chat(messages: [JSONValue], variables: [(String, JSONValue)])
    }

    var input: Input
    var model: String?
    /// nil: until an end token or the end of the context.
    var maxTokens: Int?
    var settings: Generator.Settings
    var stop: [String] = []
    var stream = false
    var includeUsage = false
    /// Alternatives per token for logprobs; nil: no logprobs.
    var logprobs: Int?

    static let maxStops = 16

    /// Parses a request body.
    /// - Parameter defaults: the server's sampling settings, for fields the request leaves out.
    static func parse(_ body: [UInt8], chat: Bool, defaults: Generator.Settings) throws -> APIRequest {
        let doc: JSONValue
        do { doc = try body.withUnsafeBytes { try JSONValue.parse($0, file: "the request body") } } catch let e as MalError {
            throw APIError(.badRequest, "the body is not valid JSON: \(e.message)")
        }
        guard doc.objectPairs != nil else { throw APIError(.badRequest, "the body must be a JSON object") }
        var f = Fields(doc)
        var input: Input
        if chat {
            guard let messages = try f.array("messages"), !messages.isEmpty else { throw APIError.invalid("messages", "'messages' must be a non-empty list") }
            input = .chat(messages: try messages.enumerated().map { try message($0.element, index: $0.offset) }, variables: [])
        } else {
            input = try prompt(f.take("prompt"))
        }
        var r = APIRequest(input: input, model: try f.string("model"), maxTokens: nil, settings: defaults)
        r.settings.stopAtEndTokens = true
        r.maxTokens = try f.int("max_completion_tokens", 1...) ?? f.int("max_tokens", 1...) ?? (chat ? nil : 16)
        if let t = try f.number("temperature", 0...2) { r.settings.temperature = Float(t) }
        if let p = try f.number("top_p", 0...1) {
            guard p > 0 else { throw APIError.invalid("top_p", "'top_p' must be greater than 0") }
            r.settings.topP = Float(p)
        }
        if let k = try f.int("top_k", 0...) { r.settings.topK = k }
        if let m = try f.number("min_p", 0..<1) { r.settings.minP = Float(m) }
        if let rp = try f.number("repetition_penalty", 0.01...100) { r.settings.repetitionPenalty = Float(rp) }
        if let seed = try f.int("seed", Int.min...) { r.settings.seed = UInt64(bitPattern: Int64(seed)) }
        r.stream = try f.bool("stream") ?? false
        if let opts = f.take("stream_options"), !opts.isNull {
            guard opts.objectPairs != nil else { throw APIError.invalid("stream_options", "'stream_options' must be an object") }
            r.includeUsage = opts["include_usage"]?.boolValue ?? false
        }
        r.stop = try stops(f.take("stop"))
        if chat {
            if try f.bool("logprobs") == true {
                r.logprobs = try f.int("top_logprobs", 0...20) ?? 0
            } else if f.has("top_logprobs") {
                throw APIError.invalid("top_logprobs", "'top_logprobs' needs 'logprobs': true")
            }
            var variables: [(String, JSONValue)] = []
            if let tools = f.take("tools"), !tools.isNull { variables.append(("tools", tools)) }
            if let kw = f.take("chat_template_kwargs"), !kw.isNull {
                guard let pairs = kw.objectPairs else { throw APIError.invalid("chat_template_kwargs", "'chat_template_kwargs' must be an object") }
                variables += pairs
            }
            if case .chat(let m, _) = input { r.input = .chat(messages: m, variables: variables) }
        } else {
            r.logprobs = try f.int("logprobs", 0...20)
        }
        try refuseUnsupported(&f, chat: chat)
        return r
    }

    /// Fields a client may send that this server does not implement: refused with the field
    /// named (never silently ignored), except at their neutral values.
    fileprivate static func refuseUnsupported(_ f: inout Fields, chat: Bool) throws {
        if !chat {
            if try f.bool("echo") == true { throw APIError.invalid("echo", "'echo' is not supported") }
            if let s = try f.string("suffix"), !s.isEmpty { throw APIError.invalid("suffix", "'suffix' is not supported") }
            if let b = try f.int("best_of", 1...), b != 1 { throw APIError.invalid("best_of", "only best_of = 1 is supported") }
        }
        if let n = try f.int("n", 1...), n != 1 { throw APIError.invalid("n", "only n = 1 is supported (one sequence per request)") }
        for k in ["presence_penalty", "frequency_penalty"] {
            if let v = try f.number(k, -2...2), v != 0 { throw APIError.invalid(k, "'\(k)' is not supported (use repetition_penalty)") }
        }
        if let lb = f.take("logit_bias"), !lb.isNull, !(lb.objectPairs?.isEmpty ?? false) {
            throw APIError.invalid("logit_bias", "'logit_bias' is not supported")
        }
        if let rf = f.take("response_format"), !rf.isNull, rf["type"]?.stringValue != "text" {
            throw APIError.invalid("response_format", "only response_format {\"type\": \"text\"} is supported")
        }
    }

    /// A chat message: a role and a content that is a string, null, or a list of text parts
    /// (`[{"type": "text", "text": …}]`, joined); other keys (`tool_calls`, `name` …) pass to the template.
    private static func message(_ m: JSONValue, index: Int) throws -> JSONValue {
        let param = "messages[\(index)]"
        guard let pairs = m.objectPairs else { throw APIError.invalid(param, "\(param) must be an object") }
        guard m["role"]?.stringValue?.isEmpty == false else { throw APIError.invalid(param + ".role", "\(param) needs a 'role' string") }
        var out: [(String, JSONValue)] = []
        for (k, v) in pairs {
            guard k == "content" else { out.append((k, v)); continue }
            switch v {
            case .string, .null: out.append((k, v))
            case .array(let parts):
                let texts = try parts.enumerated().map { i, p -> String in
                    guard p["type"]?.stringValue == "text", let t = p["text"]?.stringValue else {
                        throw APIError.invalid("\(param).content[\(i)]", "only text content parts are supported ({\"type\": \"text\", \"text\": …})")
                    }
                    return t
                }
                out.append((k, .string(texts.joined())))
            default: throw APIError.invalid(param + ".content", "\(param).content must be a string, null or a list of text parts")
            }
        }
        return .object(out)
    }

    private static func prompt(_ p: JSONValue?) throws -> Input {
        switch p {
        case .string(let s)?: return .text(s)
        case .array(let a)? where a.count == 1 && a[0].stringValue != nil: return .text(a[0].stringValue!)
        case .array(let a)? where a.count == 1 && a[0].arrayValue != nil: return try prompt(a[0])
        case .array(let a)? where !a.isEmpty && a.allSatisfy({ $0.intValue != nil }):
            return .tokens(
                try a.map { v in
                    guard let i = v.intValue, let id = Int32(exactly: i), id >= 0 else {
                        throw APIError.invalid("prompt", "token id \(v.serialized) is out of range")
                    }
                    return id
                })
        case nil, .null?: throw APIError.invalid("prompt", "'prompt' is required")
        default: throw APIError.invalid("prompt", "'prompt' must be a string, a list of one string, or a list of token ids (one prompt per request)")
        }
    }

    private static func stops(_ s: JSONValue?) throws -> [String] {
        switch s {
        case nil, .null?: return []
        case .string(let x)?: return [x]
        case .array(let a)?:
            guard a.count <= maxStops else { throw APIError.invalid("stop", "at most \(maxStops) stop strings") }
            return try a.map { v in
                guard let x = v.stringValue else { throw APIError.invalid("stop", "'stop' must be a string or a list of strings") }
                return x
            }
        default: throw APIError.invalid("stop", "'stop' must be a string or a list of strings")
        }
    }
}

/// Typed access to a request object's fields, each a 400 naming it when its type or range is wrong.
private struct Fields {
    var pairs: [(String, JSONValue)]
    init(_ doc: JSONValue) { pairs = doc.objectPairs ?? [] }

    func has(_ k: String) -> Bool { pairs.contains { $0.0 == k && !$0.1.isNull } }

    mutating func take(_ k: String) -> JSONValue? {
        guard let i = pairs.firstIndex(where: { $0.0 == k }) else { return nil }
        return pairs.remove(at: i).1
    }

    mutating func string(_ k: String) throws -> String? {
        guard let v = take(k), !v.isNull else { return nil }
        guard let s = v.stringValue else { throw APIError.invalid(k, "'\(k)' must be a string") }
        return s
    }

    mutating func bool(_ k: String) throws -> Bool? {
        guard let v = take(k), !v.isNull else { return nil }
        guard let b = v.boolValue else { throw APIError.invalid(k, "'\(k)' must be true or false") }
        return b
    }

    mutating func array(_ k: String) throws -> [JSONValue]? {
        guard let v = take(k), !v.isNull else { return nil }
        guard let a = v.arrayValue else { throw APIError.invalid(k, "'\(k)' must be a list") }
        return a
    }

    mutating func number<R: RangeExpression>(_ k: String, _ range: R) throws -> Double? where R.Bound == Double {
        guard let v = take(k), !v.isNull else { return nil }
        guard let d = v.doubleValue, d.isFinite else { throw APIError.invalid(k, "'\(k)' must be a number") }
        guard range.contains(d) else { throw APIError.invalid(k, "'\(k)' is \(v.serialized), out of range") }
        return d
    }

    mutating func int(_ k: String, _ range: PartialRangeFrom<Int>) throws -> Int? {
        guard let v = take(k), !v.isNull else { return nil }
        guard let i = v.intValue else { throw APIError.invalid(k, "'\(k)' must be an integer") }
        guard range.contains(i) else { throw APIError.invalid(k, "'\(k)' is \(i); it must be at least \(range.lowerBound)") }
        return i
    }

    mutating func int(_ k: String, _ range: ClosedRange<Int>) throws -> Int? {
        guard let v = take(k), !v.isNull else { return nil }
        guard let i = v.intValue else { throw APIError.invalid(k, "'\(k)' must be an integer") }
        guard range.contains(i) else { throw APIError.invalid(k, "'\(k)' is \(i); it must be in \(range.lowerBound)...\(range.upperBound)") }
        return i
    }
}
