import Foundation
import MalTestSupport
import Testing
import MalCore
@testable import MalReaders

@Suite("HF config reader")
struct ConfigReaderTests {
    @Test("both key styles parse to the same spec", arguments: Fixtures.models)
    func bothStyles(model: String) throws {
        let t5 = try HFConfigReader.read(path: Fixtures.model(model) + "/config.json")
        let hub = try HFConfigReader.read(path: Fixtures.model(model) + "/config.hub-legacy.json")
        var a = t5, b = hub
        // Only the spelling of the dtype key differs; its value must agree too.
        #expect(a.declaredDType == b.declaredDType)
        a.declaredDType = nil; b.declaredDType = nil
        #expect(a == b)
    }

    @Test func gpt2Spec() throws {
        let s = try HFConfigReader.read(path: Fixtures.model("gpt2-tiny") + "/config.json")
        #expect(s.modelType == "gpt2")
        #expect(s.hiddenSize == 64 && s.layers == 2 && s.heads == 4 && s.headDim == 16)
        #expect(s.intermediateSize == 256 && s.maxPositions == 128 && s.vocabSize == 2001)
        #expect(s.norm == .layerNorm && s.positions == .learned && s.tiedEmbeddings)
        #expect(s.activation == "gelu_new")
    }

    @Test func llamaSpec() throws {
        let s = try HFConfigReader.read(path: Fixtures.model("llama3-tiny") + "/config.hub-legacy.json")
        #expect(s.modelType == "llama")
        #expect(s.heads == 4 && s.kvHeads == 2 && s.headDim == 16 && s.intermediateSize == 176)
        #expect(s.eosTokenIds == [2001, 2008, 2009] && s.bosTokenId == 2000)
        #expect(s.tiedEmbeddings)
        #expect(
            s.rope
                == RopeSpec(
                    theta: 500000,
                    scaling: .llama3(
                        factor: 32, lowFreqFactor: 1, highFreqFactor: 4,
                        originalMaxPositions: 8192),
                    dimensions: 16, interleaved: false))
    }

    @Test func deepseekV3Spec() throws {
        let s = try HFConfigReader.read(path: Fixtures.model("deepseek-v3-tiny") + "/config.json")
        #expect(s.modelType == "deepseek_v3")
        // transformers 5 writes a derived head_dim (= qk_rope_head_dim): it must not be taken literally.
        #expect(s.headDim == 24)
        #expect(s.mla == MLASpec(qLoraRank: 32, kvLoraRank: 16, qkNopeHeadDim: 16, qkRopeHeadDim: 8, vHeadDim: 16))
        let moe = try #require(s.moe)
        #expect(moe.routedExperts == 8 && moe.sharedExperts == 1 && moe.expertsPerToken == 2)
        #expect(moe.groups == 4 && moe.topkGroups == 2 && moe.scoring == .sigmoid && moe.correctionBias)
        #expect(moe.routedScalingFactor == 2.5 && moe.normTopkProb && moe.firstDenseLayers == 1)
        #expect(s.mtpLayers == 1)
        #expect(!s.isMoELayer(0) && s.isMoELayer(1) && s.isMoELayer(2) && s.isMoELayer(3))
        #expect(
            s.rope?.scaling
                == .yarn(
                    factor: 40, betaFast: 32, betaSlow: 1, mscale: 1, mscaleAllDim: 1,
                    originalMaxPositions: 4096))
        #expect(s.rope?.interleaved == true && s.rope?.dimensions == 8)
    }

    @Test func deepseekV2Spec() throws {
        let s = try HFConfigReader.read(path: Fixtures.model("deepseek-v2-lite-tiny") + "/config.hub-legacy.json")
        #expect(s.modelType == "deepseek_v2")
        #expect(s.mla?.qLoraRank == nil)
        let moe = try #require(s.moe)
        #expect(moe.scoring == .softmax && moe.topkMethod == "greedy" && !moe.correctionBias && !moe.normTopkProb)
        #expect(moe.sharedExperts == 2 && moe.routedExperts == 6)
        #expect(s.mtpLayers == 0)
        guard case let .yarn(_, _, _, m, mAll, _)? = s.rope?.scaling else { Issue.record("expected yarn"); return }
        #expect(m == 0.707 && mAll == 0.707)
    }

    @Test func fp8Quantization() throws {
        let s = try HFConfigReader.read(path: Fixtures.model("deepseek-v3-fp8") + "/config.json")
        #expect(
            s.quantization
                == QuantizationSpec(
                    method: "fp8", format: "e4m3", activationScheme: "dynamic",
                    weightBlockSize: [128, 128]))
    }

    static let published: [(String, Double)] = [
        ("gpt2", 124.4e6), ("llama-3.2-1b", 1.24e9), ("llama-3.1-8b", 8.03e9),
        ("deepseek-v3", 685e9), ("deepseek-r1", 685e9), ("deepseek-r1-2025-01-20", 685e9),
    ]

    @Test("real Hub configs parse and give the published parameter counts", arguments: published)
    func realConfigs(name: String, params: Double) throws {
        let s = try HFConfigReader.read(path: Fixtures.realConfigs + "/\(name)/config.json")
        let n = Double(HFTensorLayout.parameterCount(s))
        #expect(abs(n - params) / params < 0.005, "\(name): \(n) vs published \(params)")
    }

    @Test func deepseekV3MainModelIs671B() throws {
        var s = try HFConfigReader.read(path: Fixtures.realConfigs + "/deepseek-v3/config.json")
        s.mtpLayers = 0
        let n = Double(HFTensorLayout.parameterCount(s))
        #expect(abs(n - 671e9) / 671e9 < 0.005, "\(n)")
        #expect(s.quantization?.weightBlockSize == [128, 128])
    }

    func parse(_ text: String) throws -> ModelSpec {
        try HFConfigReader.parse(try JSONValue.parse(text, file: "config.json"), file: "config.json")
    }

    @Test func unknownArchitectureListsSupported() throws {
        let e = try #require(throws: MalError.self) { try parse(#"{"model_type": "mistral"}"#) }
        #expect(e.kind == .unknownArchitecture)
        #expect(e.description.contains("gpt2") && e.description.contains("deepseek_v3") && e.description.contains("mistral"))
    }

    @Test func missingModelType() throws {
        let e = try #require(throws: MalError.self) { try parse(#"{"hidden_size": 8}"#) }
        #expect(e.kind == .missingField && e.description.contains("model_type"))
    }

    @Test func missingRequiredField() throws {
        let e = try #require(throws: MalError.self) {
            try parse(#"{"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 10}"#)
        }
        #expect(e.kind == .missingField && e.description.contains("intermediate_size"))
    }

    @Test func wrongFieldType() throws {
        let e = try #require(throws: MalError.self) {
            try parse(#"{"model_type": "gpt2", "n_embd": "64", "n_head": 4, "n_layer": 2, "vocab_size": 10, "n_positions": 8}"#)
        }
        #expect(e.kind == .invalidField && e.description.contains("n_embd"))
    }

    @Test func invalidJSONNamesOffset() throws {
        let e = try #require(throws: MalError.self) { try parse(#"{"model_type": "gpt2",, }"#) }
        #expect(e.kind == .invalidJSON && e.offset != nil)
    }

    @Test func unsupportedRopeType() throws {
        let e = try #require(throws: MalError.self) {
            try parse(
                #"{"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 10, "intermediate_size": 8, "rope_scaling": {"rope_type": "longrope", "factor": 2}}"#
            )
        }
        #expect(e.kind == .unsupported && e.description.contains("longrope"))
    }

    /// Values that would divide by zero or compute NaN in the runtime are refused by key:
    /// zero dimensions, a negative epsilon, odd rotary dimensions, a non-positive rope factor.
    @Test(
        "out-of-range values name their key",
        arguments: [
            (#""n_embd": 64, "n_head": 0, "n_layer": 2, "vocab_size": 10, "n_positions": 8"#, "gpt2", "'n_head': must be at least 1"),
            (#""n_embd": 64, "n_head": 4, "n_layer": 2, "vocab_size": 10, "n_positions": 0"#, "gpt2", "'n_positions': must be at least 1"),
            (
                #""n_embd": 64, "n_head": 4, "n_layer": 2, "vocab_size": 10, "n_positions": 8, "layer_norm_epsilon": -1e-5"#, "gpt2",
                "'layer_norm_epsilon': must be a finite number >= 0"
            ),
            (
                #""hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 0, "vocab_size": 10, "intermediate_size": 8"#, "llama",
                "'num_hidden_layers': must be at least 1"
            ),
            (
                #""hidden_size": 64, "num_attention_heads": 4, "head_dim": 15, "num_hidden_layers": 2, "vocab_size": 10, "intermediate_size": 8"#,
                "llama", "rotary dimensions must be even"
            ),
            (
                #""hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 10, "intermediate_size": 8, "rope_scaling": {"rope_type": "linear", "factor": 0}"#,
                "llama", "'factor': must be a positive number"
            ),
            (#""n_embd": 16777217, "n_head": 1, "n_layer": 2, "vocab_size": 10, "n_positions": 8"#, "gpt2", "'n_embd': must be at most 16777216"),
            (
                #""n_embd": 64, "n_head": 4, "n_layer": 70000, "vocab_size": 10, "n_positions": 8"#, "gpt2",
                "layers + mtpLayers must be at most 65536"
            ),
            (
                #""n_embd": 64, "n_head": 4, "n_layer": 2, "vocab_size": 10, "n_positions": 8, "activation_function": "gelu_10""#, "gpt2",
                "'activation_function': activation 'gelu_10' is not supported"
            ),
            (
                #""hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 10, "intermediate_size": 8, "hidden_act": "mish""#,
                "llama", "'hidden_act': activation 'mish' is not supported"
            ),
        ])
    func outOfRangeValues(fields: String, type: String, message: String) throws {
        let e = try #require(throws: MalError.self) { try parse("{\"model_type\": \"\(type)\", \(fields)}") }
        #expect(e.kind == .invalidField && e.description.contains(message), "\(e)")
    }

    /// Every activation name transformers uses for these models maps to a kernel; GPT-2's two
    /// score-scaling switches are kept (the default pair as nil, so older specs compare equal).
    @Test func activationsAndGPT2ScoreScaling() throws {
        let base = #""model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_layer": 2, "vocab_size": 10, "n_positions": 8"#
        for (name, kind) in [
            ("gelu_new", Activation.geluTanh), ("gelu_pytorch_tanh", .geluTanh), ("gelu", .geluErf),
            ("relu", .relu), ("silu", .silu), ("swish", .silu), ("quick_gelu", .quickGelu),
        ] {
            #expect(try parse("{\(base), \"activation_function\": \"\(name)\"}").activationKind == kind)
        }
        #expect(try parse("{\(base)}").attentionScaling == nil)
        #expect(try parse("{\(base), \"scale_attn_weights\": true, \"scale_attn_by_inverse_layer_idx\": false}").attentionScaling == nil)
        #expect(
            try parse("{\(base), \"scale_attn_by_inverse_layer_idx\": true}").attentionScaling
                == AttentionScaling(byHeadDim: true, byInverseLayer: true))
        #expect(
            try parse("{\(base), \"scale_attn_weights\": false}").attentionScaling
                == AttentionScaling(byHeadDim: false, byInverseLayer: false))
        var s = try parse("{\(base)}")
        s.activation = "gelu_10"
        #expect(s.firstProblem?.contains("activation 'gelu_10' is not supported") == true)
    }

    /// The same rules hold for a spec that arrives whole, as in a `.mal` file's metadata.
    @Test func specProblems() throws {
        var s = try HFConfigReader.read(path: Fixtures.model("llama3-tiny") + "/config.json")
        #expect(s.firstProblem == nil)
        s.kvHeads = 3
        #expect(s.firstProblem?.contains("not a multiple of kvHeads") == true)
        s.kvHeads = 0
        #expect(s.firstProblem?.contains("kvHeads must be at least 1") == true)
    }
}
