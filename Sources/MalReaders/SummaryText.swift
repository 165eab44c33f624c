import MalCore

/// Human-readable rendering of a `ModelSummary`.
public enum SummaryText {
    public static func render(_ s: ModelSummary, tensors: [TensorInfo]? = nil) -> String {
        var o = ""
        let spec = s.spec
        o += "\(s.path)\n"
        o += "  architecture   \(s.architecture)\n"
        o += "  files          \(s.files.joined(separator: ", "))\n"
        o += specLines(spec)
        if let q = s.quantization {
            o +=
                "  quantization   \(q.method) \(q.format), blocks \(q.weightBlockSize.map { "\($0[0])x\($0[1])" } ?? "?"), "
                + "activations \(q.activationScheme), \(s.fp8Tensors) FP8 tensors\n"
        } else if s.fp8Tensors > 0 {
            o += "  quantization   \(s.fp8Tensors) FP8 tensors (no quantization_config)\n"
        } else {
            o += "  quantization   none\n"
        }
        o += "  parameters     \(s.parameters) (\(human(Double(s.parameters)))) stored; \(s.specParameters) implied by the config"
        o += s.scaleElements > 0 ? "; \(s.scaleElements) scale values\n" : "\n"
        o += "  tensors        \(s.tensorCount), \(s.dataBytes) bytes\n"
        for d in s.bytesByDType {
            o += "    \(d.dtype.padding(10))\(String(d.tensors).leftPad(6)) tensors \(String(d.bytes).leftPad(14)) bytes\n"
        }
        let inv = s.inventory
        if inv.isClean {
            o += "  check          ok: no missing, unexpected or mis-shaped tensors"
            o += inv.ignored.isEmpty ? "\n" : " (\(inv.ignored.count) buffers ignored)\n"
        } else {
            o += "  check          \(inv.missing.count) missing, \(inv.unexpected.count) unexpected, \(inv.misshaped.count) mis-shaped\n"
            for n in inv.missing.prefix(20) { o += "    missing     \(n)\n" }
            for n in inv.unexpected.prefix(20) { o += "    unexpected  \(n)\n" }
            for m in inv.misshaped.prefix(20) { o += "    mis-shaped  \(m.name): expected \(m.expected), found \(m.found)\n" }
            let more = inv.missing.count + inv.unexpected.count + inv.misshaped.count - 60
            if more > 0 { o += "    ... (use --json for the full list)\n" }
        }
        if let tensors {
            for t in tensors { o += "    \(t.name)  \(t.dtype.rawValue) \(t.shape)\n" }
        }
        return o
    }

    /// The hyper-parameter lines shared by checkpoint and `.mal` summaries.
    static func specLines(_ spec: ModelSpec) -> String {
        var o = ""
        o += "  vocab          \(spec.vocabSize)\n"
        o += "  hidden         \(spec.hiddenSize)\n"
        o += "  layers         \(spec.layers)" + (spec.mtpLayers > 0 ? " (+ \(spec.mtpLayers) MTP)" : "") + "\n"
        o += "  heads          \(spec.heads) q / \(spec.kvHeads) kv, head dim \(spec.headDim)\n"
        if let a = spec.attentionScaling {
            o += "  scores         " + (a.byHeadDim ? "/ sqrt(head dim)" : "not scaled by head dim") + (a.byInverseLayer ? ", / (layer + 1)" : "") + "\n"
        }
        o += "  ffn            \(spec.intermediateSize) (\(spec.activation))\n"
        o += "  norm           \(spec.norm.rawValue), eps \(spec.normEps)\n"
        o += "  positions      \(spec.positions.rawValue), max \(spec.maxPositions)\n"
        if let r = spec.rope { o += "  rope           theta \(r.theta), \(describe(r.scaling)), \(r.dimensions) dims\(r.interleaved ? " interleaved" : "")\n" }
        if let m = spec.mla {
            o +=
                "  mla            q_lora \(m.qLoraRank.map(String.init) ?? "none (q_proj)"), kv_lora \(m.kvLoraRank), "
                + "nope \(m.qkNopeHeadDim), rope \(m.qkRopeHeadDim), v \(m.vHeadDim)\n"
        }
        if let m = spec.moe {
            o += "  moe            \(m.routedExperts) experts (ffn \(m.expertIntermediateSize)) + \(m.sharedExperts) shared, top-\(m.expertsPerToken)"
            o += ", groups \(m.topkGroups)/\(m.groups), \(m.scoring.rawValue), \(m.topkMethod), scale \(m.routedScalingFactor)"
            o += ", norm_topk \(m.normTopkProb), dense layers \(m.firstDenseLayers)\n"
        }
        o += "  embeddings     \(spec.tiedEmbeddings ? "tied" : "untied")\n"
        return o
    }

    static func describe(_ s: RopeScaling) -> String {
        switch s {
        case .none: return "no scaling"
        case let .linear(f): return "linear x\(f)"
        case let .llama3(f, lo, hi, orig): return "llama3 x\(f) (low \(lo), high \(hi), orig \(orig))"
        case let .yarn(f, bf, bs, m, ma, orig): return "yarn x\(f) (beta \(bf)/\(bs), mscale \(m)/\(ma), orig \(orig))"
        }
    }

    public static func human(_ n: Double) -> String {
        if n >= 1e9 { return fmt(n / 1e9) + "B" }
        if n >= 1e6 { return fmt(n / 1e6) + "M" }
        if n >= 1e3 { return fmt(n / 1e3) + "K" }
        return fmt(n)
    }

    static func fmt(_ x: Double) -> String {
        let r = (x * 100).rounded() / 100
        return String(r)
    }
}

extension String {
    func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
