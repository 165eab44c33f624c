/// How the matrix products of prompt processing treat their activations.
///
/// Decoding steps (one token) and speculative verify steps (up to `LinearWeight.smallBatch`
/// tokens) run float32 activations in both modes, so speculative decoding stays token-for-token
/// equal to plain decoding whatever the setting; only prompts of more tokens differ.
public enum Precision: String, CaseIterable, Sendable {
    /// Float32 activations throughout: logits within 1e-4 of transformers.
    case exact
    /// Activations rounded to BF16 inside the products of BF16 and FP8 E4M3 weights and multiplied
    /// with AVX-512 BF16 dot products, as llama.cpp multiplies BF16 weights (`matmul_bf16dp.c`);
    /// F32 and F16 weights run as `exact`. Its cost on the samples: `Docs/ACCURACY.md`.
    case fast
}

/// One model's precision, shared by all its weights so that it can change between steps without
/// reloading (`Transformer.precision`).
final class PrecisionSetting: @unchecked Sendable {
    var value: Precision = .exact
}
