import MalCore

/// The architectures the toolchain understands, by HF `model_type`. Adding one is a file beside
/// `GPT2.swift` and a line here (`Docs/ARCHITECTURE.md`, "Adding an architecture").
public enum ArchitectureRegistry {
    public static let all: [any ModelArchitecture] = [
        GPT2Architecture(),
        LlamaArchitecture(),
        DeepSeekArchitecture(),
        Qwen2Architecture(),
    ]

    /// Every `model_type` read, in registry order (for error messages).
    public static var modelTypes: [String] { all.flatMap(\.modelTypes) }

    public static func architecture(modelType: String) -> (any ModelArchitecture)? {
        all.first { $0.modelTypes.contains(modelType) }
    }

    /// The architecture of a spec; an error for a `model_type` no architecture reads (a spec that
    /// arrived whole, in a `.mal` file).
    public static func architecture(of spec: ModelSpec) throws -> any ModelArchitecture {
        guard let a = architecture(modelType: spec.modelType) else { throw unknown(spec.modelType) }
        return a
    }

    /// Whether two specs are of one architecture (what `verify` compares).
    public static func same(_ a: ModelSpec, _ b: ModelSpec) -> Bool { a.modelType == b.modelType }

    public static func unknown(_ modelType: String) -> MalError {
        MalError(.unknownArchitecture, "unknown model_type '\(modelType)' (supported: \(modelTypes.joined(separator: ", ")))")
    }
}
