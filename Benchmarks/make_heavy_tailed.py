#!/usr/bin/env python3
"""Writes a Llama-shaped HF model folder of heavy-tailed random BF16 weights (about 1.37 GB).

Weights are "trained-like" (as in the performance anchors' `llmlike` set): Student-t(6) entries,
log-normal per-row scales (sigma 0.3), 8 outlier input columns at x5. Used by `make bench` to
measure conversion throughput, compression ratio and peak memory on a > 1 GB checkpoint.

usage: make_heavy_tailed.py OUT_DIR [--layers 12]
"""
import json, os, struct, sys
import numpy as np

def bf16(a):
    u = a.astype(np.float32).view(np.uint32)
    u = u + 0x7FFF + ((u >> 16) & 1)           # round to nearest even
    return (u >> 16).astype(np.uint16)

def main():
    out = sys.argv[1]
    layers = int(sys.argv[sys.argv.index("--layers") + 1]) if "--layers" in sys.argv else 12
    h, ffn, vocab, heads = 2048, 5632, 32000, 16
    rng = np.random.default_rng(20261126)
    shapes = [("model.embed_tokens.weight", [vocab, h])]
    for l in range(layers):
        b = f"model.layers.{l}."
        shapes += [(b + "input_layernorm.weight", [h]), (b + "post_attention_layernorm.weight", [h])]
        for n in ["q_proj", "k_proj", "v_proj", "o_proj"]:
            shapes.append((b + f"self_attn.{n}.weight", [h, h]))
        shapes += [(b + "mlp.gate_proj.weight", [ffn, h]), (b + "mlp.up_proj.weight", [ffn, h]),
                   (b + "mlp.down_proj.weight", [h, ffn])]
    shapes += [("model.norm.weight", [h]), ("lm_head.weight", [vocab, h])]
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shapes:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + n]}
        off += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for name, shape in shapes:
            if len(shape) == 1:
                w = 1.0 + 0.05 * rng.standard_normal(shape[0])
            else:
                rows, cols = shape
                w = np.empty(shape, dtype=np.float32)
                outliers = rng.choice(cols, 8, replace=False)
                for r0 in range(0, rows, 1024):
                    r1 = min(rows, r0 + 1024)
                    blk = rng.standard_t(6, size=(r1 - r0, cols)).astype(np.float32) * 0.02
                    blk *= np.exp(0.3 * rng.standard_normal((r1 - r0, 1))).astype(np.float32)
                    blk[:, outliers] *= 5
                    w[r0:r1] = blk
            f.write(bf16(w).tobytes())
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h, "intermediate_size": ffn,
           "num_attention_heads": heads, "num_key_value_heads": heads, "num_hidden_layers": layers, "vocab_size": vocab,
           "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
           "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)

if __name__ == "__main__":
    main()
