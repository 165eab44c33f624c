import MalArchitectures
import MalCore

/// Reads an HF `config.json` into a `ModelSpec`: `model_type` picks the architecture
/// (`ArchitectureRegistry`), which reads its keys.
///
/// Two key styles parse to the same spec: the transformers-5 style (`rope_parameters` holding
/// `rope_theta`, `dtype`, a derived `head_dim`/`qk_head_dim`) and the style real Hub repos use
/// (`rope_theta` + `rope_scaling` with `type` or `rope_type`, `torch_dtype`).
public enum HFConfigReader {
    public static var supported: [String] { ArchitectureRegistry.modelTypes }

    public static func read(path: String) throws -> ModelSpec {
        let file = try MappedFile(path: path)
        return try withExtendedLifetime(file) { try parse(try JSONValue.parse(file.bytes, file: path), file: path) }
    }

    public static func parse(_ json: JSONValue, file: String) throws -> ModelSpec {
        guard json.objectPairs != nil else {
            throw MalError(.invalidField, "config is not a JSON object", file: file)
        }
        let c = ConfigFields(json: json, file: file)
        guard let typeValue = json["model_type"] else {
            throw MalError(.missingField, "missing required field 'model_type' (supported: \(supported.joined(separator: ", ")))", file: file)
        }
        guard let type = typeValue.stringValue, let arch = ArchitectureRegistry.architecture(modelType: type) else {
            throw MalError(
                .unknownArchitecture,
                "unknown model_type \(typeValue.serialized) (supported: \(supported.joined(separator: ", ")))",
                file: file)
        }
        let spec = try arch.spec(c, modelType: type)
        if let problem = spec.firstProblem { throw MalError(.invalidField, problem, file: file) }
        return spec
    }
}
