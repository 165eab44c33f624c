import MalCore

/// Typed access to config keys; every failure names the key and the file.
public struct ConfigFields {
    public let json: JSONValue
    public let file: String

    public init(json: JSONValue, file: String) {
        self.json = json
        self.file = file
    }

    public func value(_ key: String) -> JSONValue? {
        guard let v = json[key], !v.isNull else { return nil }
        return v
    }

    public func int(_ key: String) throws -> Int {
        guard let v = try optInt(key) else {
            throw MalError(.missingField, "missing required field '\(key)'", file: file)
        }
        return v
    }

    /// A dimension or count: an integer of at least 1 (a 0 would divide by zero or build empty tensors).
    public func size(_ key: String) throws -> Int {
        guard let v = try optSize(key) else { throw MalError(.missingField, "missing required field '\(key)'", file: file) }
        return v
    }

    /// A size ≥ 1, at most `ModelSpec.maxSize` (positions: `maxPositionsLimit`).
    public func optSize(_ key: String) throws -> Int? {
        guard let v = try optInt(key) else { return nil }
        try require(v >= 1, "must be at least 1, found \(v)", key: key)
        let limit = ["n_positions", "n_ctx", "max_position_embeddings"].contains(key) ? ModelSpec.maxPositionsLimit : ModelSpec.maxSize
        try require(v <= limit, "must be at most \(limit), found \(v)", key: key)
        return v
    }

    /// A norm epsilon: finite and not negative (a negative one makes 1/sqrt(mean + eps) NaN).
    public func epsilon(_ key: String) throws -> Double? {
        guard let d = try optDouble(key) else { return nil }
        try require(d.isFinite && d >= 0, "must be a finite number >= 0, found \(d)", key: key)
        return d
    }

    public func optInt(_ key: String) throws -> Int? {
        guard let v = value(key) else { return nil }
        guard let i = v.intValue, i >= 0, i < 1 << 40 else {
            throw MalError(.invalidField, "field '\(key)': expected a non-negative integer, found \(v.serialized)", file: file)
        }
        return i
    }

    public func optDouble(_ key: String, in obj: JSONValue? = nil) throws -> Double? {
        guard let v = (obj ?? json)[key], !v.isNull else { return nil }
        guard let d = v.doubleValue, d.isFinite else {
            throw MalError(.invalidField, "field '\(key)': expected a number, found \(v.serialized)", file: file)
        }
        return d
    }

    public func optBool(_ key: String) throws -> Bool? {
        guard let v = value(key) else { return nil }
        guard let b = v.boolValue else {
            throw MalError(.invalidField, "field '\(key)': expected true or false, found \(v.serialized)", file: file)
        }
        return b
    }

    public func optString(_ key: String) throws -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v.stringValue else {
            throw MalError(.invalidField, "field '\(key)': expected a string, found \(v.serialized)", file: file)
        }
        return s
    }

    /// The feed-forward activation's HF name, checked against the ones the runtime implements.
    public func activation(_ key: String, default name: String) throws -> String {
        let a = try optString(key) ?? name
        try require(Activation(hfName: a) != nil, Activation.unsupported(a), key: key)
        return a
    }

    public func require(_ ok: Bool, _ message: String, key: String) throws {
        if !ok { throw MalError(.invalidField, "field '\(key)': \(message)", file: file) }
    }

    /// `eos_token_id` may be an integer, a list of integers or null.
    public func tokenIds(_ key: String) throws -> [Int] {
        guard let v = value(key) else { return [] }
        if let i = v.intValue { return [i] }
        if let a = v.arrayValue {
            return try a.map {
                guard let i = $0.intValue else {
                    throw MalError(.invalidField, "field '\(key)': expected integers, found \($0.serialized)", file: file)
                }
                return i
            }
        }
        throw MalError(.invalidField, "field '\(key)': expected an integer or a list, found \(v.serialized)", file: file)
    }

    public func dtype() throws -> String? { try optString("dtype") ?? optString("torch_dtype") }

    /// RoPE settings from `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling`.
    /// `key`: the config key the rotated width comes from (for the error).
    public func rope(dimensions: Int, key dimensionsKey: String, interleaved: Bool) throws -> RopeSpec {
        let params = value("rope_parameters")
        let scaling = value("rope_scaling")
        if let p = params, p.objectPairs == nil {
            throw MalError(.invalidField, "field 'rope_parameters': expected an object", file: file)
        }
        if let s = scaling, s.objectPairs == nil {
            throw MalError(.invalidField, "field 'rope_scaling': expected an object or null", file: file)
        }
        let theta = try optDouble("rope_theta", in: params) ?? optDouble("rope_theta") ?? 10000
        try require(theta.isFinite && theta > 0, "must be a positive number, found \(theta)", key: "rope_theta")
        try require(
            dimensions >= 2 && dimensions % 2 == 0, "rotary dimensions must be even and at least 2, found \(dimensions)",
            key: dimensionsKey)
        // The scaling parameters live in rope_parameters (t5 style) or rope_scaling (Hub style).
        let src = params ?? scaling
        let typeName = (src?["rope_type"] ?? src?["type"])?.stringValue ?? "default"
        func num(_ key: String, _ def: Double? = nil) throws -> Double {
            if let d = try optDouble(key, in: src) {
                try require(d.isFinite && (d > 0 || key.hasPrefix("mscale")), "must be a positive number, found \(d)", key: key)
                return d
            }
            if let def { return def }
            throw MalError(.missingField, "missing required field '\(key)' of rope type '\(typeName)'", file: file)
        }
        func orig(_ def: Int?) throws -> Int {
            if let v = src?["original_max_position_embeddings"], !v.isNull {
                guard let i = v.intValue, i > 0 else {
                    throw MalError(.invalidField, "field 'original_max_position_embeddings': expected a positive integer", file: file)
                }
                return i
            }
            if let def { return def }
            throw MalError(
                .missingField, "missing required field 'original_max_position_embeddings' of rope type '\(typeName)'",
                file: file)
        }
        let kind: RopeScaling
        switch typeName {
        case "default": kind = .none
        case "linear": kind = .linear(factor: try num("factor"))
        case "llama3":
            kind = .llama3(
                factor: try num("factor"), lowFreqFactor: try num("low_freq_factor"),
                highFreqFactor: try num("high_freq_factor"), originalMaxPositions: try orig(nil))
        case "yarn":
            kind = .yarn(
                factor: try num("factor"), betaFast: try num("beta_fast", 32), betaSlow: try num("beta_slow", 1),
                mscale: try num("mscale", 1), mscaleAllDim: try num("mscale_all_dim", 0),
                originalMaxPositions: try orig(4096))
        default:
            throw MalError(
                .unsupported, "rope type '\(typeName)' is not supported (supported: default, linear, llama3, yarn)",
                file: file)
        }
        return RopeSpec(theta: theta, scaling: kind, dimensions: dimensions, interleaved: interleaved)
    }

    public func quantization() throws -> QuantizationSpec? {
        guard let q = value("quantization_config") else { return nil }
        guard q.objectPairs != nil else {
            throw MalError(.invalidField, "field 'quantization_config': expected an object", file: file)
        }
        var block: [Int]?
        if let b = q["weight_block_size"], !b.isNull {
            // [rows, cols]; malconv writes [1, 0] for per-channel scales.
            guard let a = b.arrayValue, a.count == 2, let r = a[0].intValue, let cl = a[1].intValue, r > 0, cl >= 0, cl > 0 || r == 1 else {
                throw MalError(
                    .invalidField, "field 'quantization_config.weight_block_size': expected [rows, cols], found \(b.serialized)",
                    file: file)
            }
            block = [r, cl]
        }
        return QuantizationSpec(
            method: q["quant_method"]?.stringValue ?? "unknown", format: q["fmt"]?.stringValue ?? "",
            activationScheme: q["activation_scheme"]?.stringValue ?? "", weightBlockSize: block,
            scaleFormat: q["scale_fmt"]?.stringValue)
    }
}
