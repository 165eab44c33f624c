import ArgumentParser
import MalCore
import MalRuntime
import MalTransforms

// Option values as types: a flag is parsed once, here, and a wrong value is refused with the
// values it may take (ArgumentParser's message) before any work; nothing downstream re-parses a
// string or force-unwraps it.

extension BlockShape: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
    public var defaultValueDescription: String { description }
}

extension ScaleFormat: ExpressibleByArgument {}
extension TargetDType: ExpressibleByArgument {}
extension AbsorbedModel.Mode: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}

/// The FP8 formats `quantize` writes.
enum FP8Format: String, CaseIterable, ExpressibleByArgument { case e4m3 }

/// The float types a dequantised or absorbed tensor is written in.
enum FloatOutputType: String, CaseIterable, ExpressibleByArgument {
    case f32, bf16
    var dtype: DType { self == .f32 ? .f32 : .bf16 }
}

/// `absorb-mla --requantize`: quantise the absorbed tensors again, or keep them as computed.
enum Requantization: String, CaseIterable, ExpressibleByArgument { case none, fp8 }

/// A byte count written like `5GB`, `500MB` or `2GiB` (`--max-shard-size`).
struct ByteCount: ExpressibleByArgument {
    let bytes: Int
    let text: String
    init?(argument: String) {
        guard let n = try? parseSize(argument) else { return nil }
        bytes = n
        text = argument
    }
    var defaultValueDescription: String { text }
}
