/// What `--dtype` asks for: keep each tensor's dtype, or cast float tensors to one type.
public enum TargetDType: String, CaseIterable, Sendable {
    case keep, f32, f16, bf16
    public var dtype: DType? {
        switch self {
        case .keep: return nil
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        }
    }
}
