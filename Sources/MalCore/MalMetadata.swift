/// The metadata document of a `.mal` file (`Formats/MAL.md` §Metadata), JSON-encoded.
public struct MalMetadata: Codable, Sendable, Equatable {
    public struct SourceFile: Codable, Sendable, Equatable {
        public var name: String
        public var bytes: Int
        /// XXH64 (seed 0) of the whole file, 16 hex digits (`xxhsum -H1` prints the same).
        public var xxh64: String
        public init(name: String, bytes: Int, xxh64: String) {
            self.name = name
            self.bytes = bytes
            self.xxh64 = xxh64
        }
    }

    public struct Provenance: Codable, Sendable, Equatable {
        public var converter: String
        public var converterVersion: String
        public var command: String
        public var options: [String: String]
        public var sources: [SourceFile]
        /// Tensors of the source that carry no parameters and were not stored (causal-mask buffers).
        public var droppedTensors: [String]
        public init(
            converter: String, converterVersion: String, command: String, options: [String: String],
            sources: [SourceFile], droppedTensors: [String]
        ) {
            self.converter = converter
            self.converterVersion = converterVersion
            self.command = command
            self.options = options
            self.sources = sources
            self.droppedTensors = droppedTensors
        }
    }

    /// How quantised tensors were made (absent when nothing is quantised).
    public struct Quantization: Codable, Sendable, Equatable {
        public var format: String
        public var blockSize: [Int]
        public var scale: String
        public init(format: String, blockSize: [Int], scale: String) {
            self.format = format
            self.blockSize = blockSize
            self.scale = scale
        }
    }

    public var format: String = "mal"
    public var formatVersion: String = "\(MalFormat.versionMajor).\(MalFormat.versionMinor)"
    public var architecture: String
    public var spec: ModelSpec
    /// The tensor-name scheme (`Formats/NAMES.md`).
    public var nameScheme: String = "malconv-canonical-1"
    /// GPT-2 only: the prefix of the HF names (`transformer.` or empty), restored on export.
    public var hfNamePrefix: String?
    public var quantization: Quantization?
    /// The block of every quantised weight whose block is not the model's
    /// (`BlockShape.modelDefault`), by tensor name; absent when every one has the model's.
    public var blockShapes: [String: [Int]]?
    public var provenance: Provenance

    public init(spec: ModelSpec, hfNamePrefix: String?, quantization: Quantization?, provenance: Provenance) {
        self.architecture = spec.modelType
        self.spec = spec
        self.hfNamePrefix = hfNamePrefix
        self.quantization = quantization
        self.provenance = provenance
    }

    /// The block of quantised weight `name`: its own entry in `blockShapes`, else the model's.
    public func block(of name: String) -> BlockShape {
        if let b = blockShapes?[name], b.count == 2 { return BlockShape(rows: b[0], cols: b[1]) }
        return .modelDefault(spec)
    }

    /// The first entry of `blockShapes` that is not a block (rows ≥ 1; columns ≥ 1, or 0 with one
    /// row: per channel), or nil.
    public var firstBlockProblem: String? {
        for (name, b) in (blockShapes ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard b.count == 2, (1...(1 << 20)).contains(b[0]), (0...(1 << 20)).contains(b[1]), b[1] > 0 || b[0] == 1 else {
                return "blockShapes['\(name)'] is not [rows, cols]: \(b)"
            }
        }
        return nil
    }
}

/// Version string written into provenance.
public let malconvVersion = "0.1.0"
