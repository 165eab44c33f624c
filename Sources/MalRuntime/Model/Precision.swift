import CMalKernels

/// How the matrix products of prompt processing treat their activations.
///
/// Decoding steps (one token) and speculative verify steps (up to `LinearWeight.smallBatch`
/// tokens) run the same kernels, so speculative decoding stays token-for-token equal to plain
/// decoding whatever the setting: float32 activations in both modes, except BF16 and FP8 weights
/// under `fast` where the BF16 dot products pay (`matvec_bf16_bf16dp.c`, `matvec_e4m3_bf16dp.c`),
/// which round them as prompts do.
public enum Precision: String, CaseIterable, Sendable {
    /// Float32 activations throughout: logits within 1e-4 of transformers.
    case exact
    /// Activations rounded to BF16 inside the products of BF16 and FP8 E4M3 weights (prompts, and
    /// decoding steps where the dot products pay) and multiplied with AVX-512 BF16 dot products,
    /// as llama.cpp multiplies BF16 weights (`matmul_bf16dp.c`, `matvec_bf16_bf16dp.c`,
    /// `matvec_e4m3_bf16dp.c`); F32 and F16 weights run as `exact`. Its cost on the samples:
    /// `Docs/ACCURACY.md`.
    case fast
}

extension Precision {
    /// Whether `fast` multiplies with BF16 dot products on this CPU (`mal_bf16dp_pays`: they issue
    /// at more than 3/4 of the FMA's rate, so they do more arithmetic per cycle). Where they do not,
    /// `fast` rounds the activations the same way and takes the float32 kernels, at their speed.
    public static let dotProductsPay = mal_bf16dp_pays() == 1
}

/// One model's precision, shared by all its weights so that it can change between steps without
/// reloading (`Transformer.precision`).
final class PrecisionSetting: @unchecked Sendable {
    var value: Precision = .exact
}
