import MalCore

/// Everything the toolchain knows about one architecture family, in one place: how its
/// `config.json` reads (both key styles), which tensors its checkpoints hold and with what shapes,
/// how their names map to canonical names and back, and which components the runtime assembles
/// its layers from. One type per family (`GPT2.swift`, `Llama.swift`, `DeepSeek.swift`), listed
/// in `ArchitectureRegistry`; nothing else in the code base asks which architecture a model is.
public protocol ModelArchitecture: Sendable {
    /// The HF `model_type` values this family reads (`config.json`), and writes back.
    var modelTypes: [String] { get }
    /// The spec of a `config.json` whose `model_type` is one of `modelTypes`; every failure names
    /// the key. The caller checks `ModelSpec.firstProblem` afterwards.
    func spec(_ config: ConfigFields, modelType: String) throws -> ModelSpec
    /// The tensors a checkpoint of `spec` stores, with their stored shapes (`[out, in]` for Linear,
    /// `[in, out]` for GPT-2's Conv1D); `hfNamePrefix` as `hfNamePrefix(tensorNames:)` found it.
    func expectedTensors(_ spec: ModelSpec, hfNamePrefix: String?) -> [ExpectedTensor]
    /// The name map, both directions (`Formats/NAMES.md` documents every rule).
    var nameRules: [NameRule] { get }
    /// The prefix a checkpoint's names carry when the family has one (GPT-2: `transformer.` in
    /// transformers' saves, "" in the original files), nil when it has none.
    func hfNamePrefix(tensorNames: [String]) -> String?
    /// The components of the runtime's layers (`LayerComponents`).
    func components(_ spec: ModelSpec) throws -> LayerComponents
    /// How an exported `config.json` writes its rotary scaling and which derived keys it drops
    /// (real Hub repos of the family, `HubConfig`).
    var hubConfig: HubConfigStyle { get }
}

/// A tensor an architecture expects in an HF checkpoint, with the shape the spec implies.
public struct ExpectedTensor: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    /// A tied output head may or may not be stored; such tensors are allowed, not required.
    public var optional: Bool
    public init(name: String, shape: [Int], optional: Bool = false) {
        self.name = name
        self.shape = shape
        self.optional = optional
    }
}

/// The key style of a family's Hub configs: DeepSeek's repos say `rope_scaling.type`, Llama 3.1's
/// `rope_scaling.rope_type`; DeepSeek's carry no derived `head_dim` / `qk_head_dim`.
public struct HubConfigStyle: Sendable, Equatable {
    public var ropeScalingTypeKey: String
    public var derivedKeys: [String]
    public init(ropeScalingTypeKey: String, derivedKeys: [String] = []) {
        self.ropeScalingTypeKey = ropeScalingTypeKey
        self.derivedKeys = derivedKeys
    }
}

extension ModelArchitecture {
    /// Canonical names for an HF tensor (several for a fused tensor); nil if no rule matches.
    public func toCanonical(_ hfName: String, hfNamePrefix prefix: String? = nil) -> [NameMapping]? {
        NameMap.toCanonical(hfName, rules: nameRules, prefix: prefix ?? "")
    }

    /// The HF name a canonical tensor comes from, and its layout there.
    public func toHF(_ canonical: String, hfNamePrefix prefix: String? = nil) -> (hf: String, layout: NameLayout)? {
        NameMap.toHF(canonical, rules: nameRules, prefix: prefix ?? "")
    }

    /// Parameter count implied by the spec: every required tensor, the tied head once (DeepSeek's
    /// MTP copies of the embedding and head count, as they are stored in the files).
    public func parameterCount(_ spec: ModelSpec) -> Int {
        expectedTensors(spec, hfNamePrefix: hfNamePrefix(tensorNames: [])).filter { !$0.optional }
            .reduce(0) { $0 + (elementCount($1.shape) ?? 0) }
    }

    public func hfNamePrefix(tensorNames: [String]) -> String? { nil }
}

extension ModelSpec {
    /// The feed-forward activation, or the error naming the one the runtime lacks.
    public func requireActivation() throws -> Activation {
        guard let a = activationKind else { throw MalError(.unsupported, Activation.unsupported(activation)) }
        return a
    }
}
