/// The one error type of the toolchain.
///
/// Every error says *where*: the file, the tensor (when one is involved) and the byte offset in
/// the file where the problem was found, so a user can open the file in a hex viewer and look.
/// `kind` is a stable, machine-checkable category (tests and `--json` output use it).
/// An error the command-line tools report to the user as one line (`runReporting`): it says what
/// was wrong with the input and where, and is not a bug.
public protocol ReportedError: Error, CustomStringConvertible {}

public struct MalError: ReportedError, Equatable, Sendable {
    public enum Kind: String, Sendable, Codable {
        // safetensors structure (rules of the reference Rust reader, `Metadata::validate`)
        case headerTooSmall, headerTooLarge, invalidHeaderLength, invalidHeaderUTF8, invalidHeaderJSON
        case duplicateKey, unknownDType, invalidShape, shapeOverflow, misalignedSlice
        case tensorSizeMismatch, offsetOutOfFile, offsetsReversed, overlappingTensors, holeInData
        case incompleteData, invalidMetadata
        // sharded checkpoints
        case indexInvalid, indexMissingShard, indexMissingTensor, indexUnlistedTensor, duplicateTensor
        // configs and model specs
        case invalidJSON, unknownArchitecture, missingField, invalidField
        // .mal containers
        case badMagic, unsupportedVersion, corruptStructure, checksumMismatch, decompressionFailed
        // content
        case nonFiniteValue, unmappedTensor
        // files and arguments
        case fileNotFound, ioError, invalidArgument, unsupported, notFound, outOfMemory
    }

    public var kind: Kind
    public var message: String
    public var file: String?
    public var tensor: String?
    public var offset: Int?

    public init(_ kind: Kind, _ message: String, file: String? = nil, tensor: String? = nil, offset: Int? = nil) {
        self.kind = kind
        self.message = message
        self.file = file
        self.tensor = tensor
        self.offset = offset
    }

    /// `FILE: tensor 'NAME': at byte N: message [kind]`
    public var description: String {
        var parts: [String] = []
        if let file { parts.append(file) }
        if let tensor { parts.append("tensor '\(tensor)'") }
        if let offset { parts.append("at byte \(offset)") }
        parts.append(message)
        return parts.joined(separator: ": ") + " [\(kind.rawValue)]"
    }

    /// The same error with the file filled in where it was not known yet.
    public func inFile(_ path: String) -> MalError {
        var e = self
        if e.file == nil { e.file = path }
        return e
    }
}
