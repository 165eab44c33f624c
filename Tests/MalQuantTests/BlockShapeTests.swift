import Foundation
import MalTestSupport
import Testing
import MalCore
import MalReaders
import MalRuntime
import MalTransforms
import MalWriters

/// A model whose layer-1 weights come from a second quantisation with another block: the one way
/// to get a file whose FP8 weights have different blocks (malconv itself keeps one per file).
final class MixedBlocksModel: CanonicalModel, @unchecked Sendable {
    let a: CanonicalModel, b: CanonicalModel
    init(_ a: CanonicalModel, _ b: CanonicalModel) { self.a = a; self.b = b }
    func fromB(_ name: String) -> Bool { name.hasPrefix("blk.1.") }
    var spec: ModelSpec { a.spec }
    var hfNamePrefix: String? { a.hfNamePrefix }
    var tensors: [CanonicalTensor] { a.tensors.filter { !fromB($0.name) } + b.tensors.filter { fromB($0.name) } }
    func load(_ name: String) throws -> Tensor { try (fromB(name) ? b : a).load(name) }
    var auxNames: [String] { a.auxNames }
    func aux(_ name: String) throws -> [UInt8]? { try a.aux(name) }
}

@Suite("Block shape per tensor")
struct BlockShapeTests {
    /// Each FP8 weight's block is recorded with it (`blockShapes` for those that differ from the
    /// model's) and read back; `check` accepts the file, the runtime runs it (every scale grid is
    /// read by its own block: logits as those of its exact dequantisation), and the HF export,
    /// whose config holds one `weight_block_size`, refuses it with the tensor.
    @Test func mixedBlocksRoundTrip() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let src = try hf(Fixtures.model("deepseek-v3-tiny"))
        let mixed = MixedBlocksModel(try QuantizedModel(base: src, block: .deepseek), try QuantizedModel(base: src, block: BlockShape("1x16")!))
        let path = dir + "/mixed.mal"
        _ = try ContainerExport.write(mixed, to: path, options: MalWriter.Options(), command: "test", optionValues: [:])
        let file = try MalFile(path: path)
        let recorded = try #require(file.metadata.blockShapes)
        #expect(!recorded.isEmpty && recorded.keys.allSatisfy { $0.hasPrefix("blk.1.") } && recorded.values.allSatisfy { $0 == [1, 16] })
        for t in file.tensors where t.scale != nil {
            #expect(t.block == (t.name.hasPrefix("blk.1.") ? BlockShape(rows: 1, cols: 16) : .deepseek), "\(t.name)")
        }
        #expect(try runTool("malconv", ["check", path]).status == 0)
        let ids: [Int32] = [1, 5, 9, 200, 31]
        let fp8 = try Transformer(model: file, contextLength: 16, threads: 2).forward(ids, allLogits: true)
        let exact = try Transformer(model: try DequantizedModel(base: file, dtype: .f32), contextLength: 16, threads: 2)
            .forward(ids, allLogits: true)
        let worst = zip(fp8, exact).map { abs($0 - $1) }.max() ?? .infinity
        #expect(worst < 1e-4, "max |Δlogit| \(worst)")
        let export = try runTool("malconv", ["export", path, "-o", dir + "/hf"])
        #expect(export.status == 1 && export.stderr.contains("weight_block_size") && export.stderr.contains("blk.1."), "\(export.stderr)")
    }

    /// A file whose recorded block does not give its scale grid is refused at open, naming the
    /// tensor, so no command can write a file that `check` accepts and the runtime refuses.
    @Test func gridThatIsNotTheBlocksIsRefused() throws {
        let dir = Fixtures.tempDir(); defer { Fixtures.cleanup(dir) }
        let q = try QuantizedModel(base: try hf(Fixtures.model("deepseek-v3-tiny")), block: .deepseek)
        var meta = MalMetadata(
            spec: q.spec, hfNamePrefix: nil, quantization: nil,
            provenance: .init(
                converter: "test", converterVersion: "0", command: "test", options: [:], sources: [],
                droppedTensors: []))
        let weight = try #require(q.tensors.first { $0.scale != nil })
        meta.blockShapes = [weight.name: [1, 16]]
        let e = try #require(throws: MalError.self) { try MalFile.checkScaleGrids(try entries(of: q, dir: dir), metadata: meta, file: "f", tableOffset: 0) }
        #expect(e.tensor == weight.name && e.description.contains("scale grid"), "\(e)")
    }

    func entries(of model: CanonicalModel, dir: String) throws -> [MalFormat.Entry] {
        _ = try ContainerExport.write(model, to: dir + "/q.mal", options: MalWriter.Options(), command: "test", optionValues: [:])
        return try MalFile(path: dir + "/q.mal").entries
    }
}
