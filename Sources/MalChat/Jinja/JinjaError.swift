import MalCore

/// What went wrong in a template. The template's line is added where the interpreter knows it
/// (`TemplateError.line`), so a message names the line of an unsupported construct or a failing
/// expression.
public enum JinjaError: Error {
    /// The template's text is not valid Jinja (or uses syntax this subset does not have).
    case syntax(String)
    /// A construct this implementation does not support (`{% include %}`, an unknown filter …).
    case unsupported(String)
    /// Python's TypeError / ValueError / KeyError at render time.
    case type(String)
    /// An attribute or item of an undefined value (Jinja's UndefinedError).
    case undefined(String)
    /// The template called `raise_exception(message)`.
    case raised(String)
}

/// A `JinjaError` at a template line (1-based), as `malrun chat` and `serve` report it.
public struct TemplateError: ReportedError {
    public let error: JinjaError
    public let line: Int
    /// Where the template came from (`tokenizer_config.json`, a file given by `--chat-template` …).
    public var source: String?

    public var message: String {
        switch error {
        case .syntax(let m): return "syntax error: \(m)"
        case .unsupported(let m): return "unsupported: \(m)"
        case .type(let m): return m
        case .undefined(let m): return m
        case .raised(let m): return "the template raised an exception: \(m)"
        }
    }

    public var description: String { "\(source.map { "\($0): " } ?? "")chat template line \(line): \(message)" }
}
