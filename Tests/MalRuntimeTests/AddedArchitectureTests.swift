import Foundation
import MalTestSupport
import Testing
import MalArchitectures
import MalCore
import MalReaders
import MalWriters
@testable import MalRuntime

/// Qwen2, added as one file (`Sources/MalArchitectures/Qwen2.swift`) and one registry line: the
/// readers, the container, the runtime and the export take it from the registry, and its logits
/// are transformers' (`Tests/Architectures/make_qwen2_fixture.py`).
@Suite("An architecture added as one file (Qwen2)")
struct AddedArchitectureTests {
    static let folder = Fixtures.packageRoot + "/Tests/Architectures/qwen2-tiny"

    @Test func logitsMatchTransformers() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let ref = try Reference(folder: Self.folder)
        let ids = try ref.ints("input_ids.0"), want = try ref.floats("logits.0").values
        let hf = try HFCanonicalModel(model: try HFModel(path: Self.folder))
        #expect(hf.spec.modelType == "qwen2")
        #expect(try ArchitectureRegistry.architecture(of: hf.spec).components(hf.spec).biases == [.query, .key, .value])
        let direct = try Transformer(model: hf, threads: 2).forward(ids, allLogits: true)
        #expect(maxAbsDiff(direct, want) <= 1e-4)
        let r = try runTool("malconv", ["convert", Self.folder, "-o", dir + "/q.mal"])
        #expect(r.status == 0, "\(r.stderr)")
        let viaMal = try Transformer(model: try MalFile(path: dir + "/q.mal"), threads: 2).forward(ids, allLogits: true)
        #expect(viaMal == direct, "the container changes nothing")
    }

    /// Back to an HF folder with the same tensors, byte for byte.
    @Test func exportRoundTrips() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        #expect(try runTool("malconv", ["convert", Self.folder, "-o", dir + "/q.mal"]).status == 0)
        let e = try runTool("malconv", ["export", dir + "/q.mal", "-o", dir + "/hf"])
        #expect(e.status == 0, "\(e.stderr)")
        let a = try SafetensorsFile(path: Self.folder + "/model.safetensors"), b = try SafetensorsFile(path: dir + "/hf/model.safetensors")
        #expect(Set(a.tensors.map(\.name)) == Set(b.tensors.map(\.name)))
        for t in a.tensors {
            #expect(try a.tensor(named: t.name).byteArray == b.tensor(named: t.name).byteArray, "\(t.name)")
        }
    }

    /// What Qwen2 does not have is refused, naming the key or the tensor: sliding-window attention,
    /// a checkpoint without its q bias.
    @Test func whatItLacksIsRefused() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        var config = try String(contentsOfFile: Self.folder + "/config.json", encoding: .utf8)
        config = config.replacingOccurrences(of: "\"use_sliding_window\": false", with: "\"use_sliding_window\": true")
        let e = try #require(throws: MalError.self) { _ = try HFConfigReader.parse(try JSONValue.parse(config, file: "c"), file: "c") }
        #expect(e.description.contains("use_sliding_window"), "\(e)")
        let spec = try HFConfigReader.read(path: Self.folder + "/config.json")
        let expected = HFTensorLayout.expected(spec, tensorNames: []).map(\.name)
        #expect(expected.contains("model.layers.0.self_attn.q_proj.bias") && !expected.contains("model.layers.0.self_attn.o_proj.bias"))
    }

    /// Qwen2.5-0.5B's config (the Hub's, key for key): the spec-derived parameter count is the
    /// published 494,032,768 (tied head, q/k/v biases, 14 query and 2 KV heads).
    @Test func realConfigParameterCount() throws {
        let config = """
            {"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151643,
             "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02, "intermediate_size": 4864,
             "max_position_embeddings": 32768, "max_window_layers": 24, "model_type": "qwen2", "num_attention_heads": 14,
             "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
             "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.43.1",
             "use_cache": true, "use_sliding_window": false, "vocab_size": 151936}
            """
        let spec = try HFConfigReader.parse(try JSONValue.parse(config, file: "config.json"), file: "config.json")
        #expect(spec.headDim == 64 && spec.tiedEmbeddings)
        #expect(HFTensorLayout.parameterCount(spec) == 494_032_768)
    }
}
