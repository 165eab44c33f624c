import MalCore

/// How a canonical tensor's bytes relate to the HF tensor it comes from.
public enum NameLayout: Equatable, Sendable {
    /// Same bytes, same shape.
    case identity
    /// GPT-2 Conv1D: HF stores `[in, out]`, canonical is `[out, in]` (every Linear's layout).
    case transposed
    /// GPT-2 fused `c_attn`: part `k` (0 q, 1 k, 2 v) of the output dimension; weights are also
    /// transposed to `[out, in]`, biases are slices.
    case splitQKV(part: Int, weight: Bool)
}

/// One rule of a name map: an HF name pattern and its canonical counterpart (GGUF style,
/// `Formats/NAMES.md`). `{N}` matches a layer number, `{E}` an expert number; `{P}` is the
/// architecture's optional name prefix (GPT-2's `transformer.`).
public struct NameRule: Sendable {
    public let hf: String
    public let canonical: String
    public let layout: NameLayout

    public init(hf: String, canonical: String, layout: NameLayout = .identity) {
        self.hf = hf
        self.canonical = canonical
        self.layout = layout
    }
}

/// A canonical name an HF tensor maps to.
public struct NameMapping: Equatable, Sendable {
    public var canonical: String
    public var layout: NameLayout
}

/// Both directions of a name map, driven by one rule table. FP8 block scales follow their weight:
/// HF's `X.weight_scale_inv` is canonically `X.scale_inv`.
public enum NameMap {
    static let hfScaleSuffix = "_scale_inv"
    static let scaleSuffix = ".scale_inv"

    public static func toCanonical(_ hfName: String, rules: [NameRule], prefix: String) -> [NameMapping]? {
        if hfName.hasSuffix(hfScaleSuffix) {
            let base = String(hfName.dropLast(hfScaleSuffix.count))
            guard let m = toCanonical(base, rules: rules, prefix: prefix), m.count == 1, m[0].layout == .identity,
                m[0].canonical.hasSuffix(".weight")
            else { return nil }
            return [NameMapping(canonical: String(m[0].canonical.dropLast(".weight".count)) + scaleSuffix, layout: .identity)]
        }
        var out: [NameMapping] = []
        for r in rules {
            if let vars = match(r.hf.replacing("{P}", with: prefix), hfName) {
                out.append(NameMapping(canonical: fill(r.canonical, vars), layout: r.layout))
            }
        }
        return out.isEmpty ? nil : out
    }

    public static func toHF(_ canonical: String, rules: [NameRule], prefix: String) -> (hf: String, layout: NameLayout)? {
        if canonical.hasSuffix(scaleSuffix) {
            let base = String(canonical.dropLast(scaleSuffix.count)) + ".weight"
            guard let m = toHF(base, rules: rules, prefix: prefix), m.layout == .identity else { return nil }
            return (m.hf + hfScaleSuffix, .identity)
        }
        for r in rules {
            if let vars = match(r.canonical, canonical) {
                return (fill(r.hf.replacing("{P}", with: prefix), vars), r.layout)
            }
        }
        return nil
    }

    /// Matches `name` against `pattern` with `{N}`/`{E}` standing for decimal numbers (no leading
    /// zeros, at most 9 digits).
    static func match(_ pattern: String, _ name: String) -> [String: String]? {
        var vars: [String: String] = [:]
        var p = pattern.utf8[...]
        var n = name.utf8[...]
        while let c = p.first {
            if c == UInt8(ascii: "{"), p.count >= 3 {
                let key = String(decoding: p.prefix(3), as: UTF8.self)
                p = p.dropFirst(3)
                let digits = n.prefix { $0 >= 0x30 && $0 <= 0x39 }
                if digits.isEmpty || (digits.count > 1 && digits.first == 0x30) || digits.count > 9 { return nil }
                vars[key] = String(decoding: digits, as: UTF8.self)
                n = n.dropFirst(digits.count)
            } else {
                guard n.first == c else { return nil }
                p = p.dropFirst()
                n = n.dropFirst()
            }
        }
        return n.isEmpty ? vars : nil
    }

    static func fill(_ pattern: String, _ vars: [String: String]) -> String {
        var s = pattern
        for (k, v) in vars { s = s.replacing(k, with: v) }
        return s
    }
}

extension NameRule {
    /// The rule as a row of the tables in `Formats/NAMES.md` (which holds exactly these rows).
    public var documentationRow: String {
        let layoutText: String
        switch layout {
        case .identity: layoutText = "same bytes"
        case .transposed: layoutText = "transposed ([in,out] → [out,in])"
        case let .splitQKV(part, weight):
            let n = ["q", "k", "v"][part]
            layoutText = weight ? "split \(n) (columns \(part + 1)/3, transposed)" : "split \(n) (slice \(part + 1)/3)"
        }
        return "| `\(hf)` | `\(canonical)` | \(layoutText) |"
    }
}
