#!/usr/bin/env python3
"""Writes a random-weight HF model folder for speed measurements (not for accuracy).

  make_random_model.py gpt2-124m OUT     GPT-2 124M shape: 768 x 12 layers x 12 heads, vocab 50257, ctx 1024, F32
  make_random_model.py llama3-383m OUT   hidden 1024, 16 layers, 16/8 heads, FFN 4096, vocab 128256, tied, BF16
  make_random_model.py deepseek-204m OUT DeepSeek-V3 MoE: hidden 768, 8 layers (first dense, FFN 2048), MLA q_lora 256,
                                         kv_lora 256, nope 64 / rope 32 / v 64, 12 heads, 32 experts (FFN 256) top-4
                                         + 1 shared, groups 4/2, vocab 32000 untied, BF16
  make_random_model.py deepseek-204m-mtp OUT   the same with its MTP layer (model.layers.8.*: enorm, hnorm, eh_proj,
                                         an MoE block, shared_head; embed_tokens / shared_head.head copies of the main ones)

Shapes of the performance anchors (Docs/PERFORMANCE.md). Weights N(0, 0.02), norms 1.
No tokenizer: `malrun bench` does not need one.
"""
import json, os, struct, sys
import numpy as np

def write(out, tensors, config, dtype):
    os.makedirs(out, exist_ok=True)
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _ in tensors:
        n = int(np.prod(shape)) * (4 if dtype == "F32" else 2)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    rng = np.random.default_rng(0)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        made = {}
        for name, shape, kind in tensors:
            if kind.startswith("copy:"):     # the same values as an earlier tensor (MTP's shared copies)
                a = made[kind[5:]]
            else:
                a = np.ones(shape, np.float32) if kind == "one" else np.zeros(shape, np.float32) if kind == "zero" else \
                    (rng.standard_normal(shape, dtype=np.float32) * 0.02)
            if any(k == "copy:" + name for _, _, k in tensors): made[name] = a
            if dtype == "BF16":
                u = a.view(np.uint32)
                a = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
            f.write(a.tobytes())
    json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=2)

kind, out = sys.argv[1], sys.argv[2]
if kind == "gpt2-124m":
    H, L, V, P = 768, 12, 50257, 1024
    t = [("transformer.wte.weight", [V, H], "w"), ("transformer.wpe.weight", [P, H], "w")]
    for l in range(L):
        b = f"transformer.h.{l}."
        t += [(b + "ln_1.weight", [H], "one"), (b + "ln_1.bias", [H], "zero"), (b + "attn.c_attn.weight", [H, 3 * H], "w"),
              (b + "attn.c_attn.bias", [3 * H], "zero"), (b + "attn.c_proj.weight", [H, H], "w"), (b + "attn.c_proj.bias", [H], "zero"),
              (b + "ln_2.weight", [H], "one"), (b + "ln_2.bias", [H], "zero"), (b + "mlp.c_fc.weight", [H, 4 * H], "w"),
              (b + "mlp.c_fc.bias", [4 * H], "zero"), (b + "mlp.c_proj.weight", [4 * H, H], "w"), (b + "mlp.c_proj.bias", [H], "zero")]
    t += [("transformer.ln_f.weight", [H], "one"), ("transformer.ln_f.bias", [H], "zero")]
    write(out, t, {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": H, "n_layer": L, "n_head": 12,
                   "n_positions": P, "n_ctx": P, "vocab_size": V, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
                   "tie_word_embeddings": True, "torch_dtype": "float32"}, "F32")
elif kind == "llama3-383m":
    H, L, V, F, NH, NKV = 1024, 16, 128256, 4096, 16, 8
    hd = H // NH
    t = [("model.embed_tokens.weight", [V, H], "w")]
    for l in range(L):
        b = f"model.layers.{l}."
        t += [(b + "input_layernorm.weight", [H], "one"), (b + "self_attn.q_proj.weight", [NH * hd, H], "w"),
              (b + "self_attn.k_proj.weight", [NKV * hd, H], "w"), (b + "self_attn.v_proj.weight", [NKV * hd, H], "w"),
              (b + "self_attn.o_proj.weight", [H, NH * hd], "w"), (b + "post_attention_layernorm.weight", [H], "one"),
              (b + "mlp.gate_proj.weight", [F, H], "w"), (b + "mlp.up_proj.weight", [F, H], "w"), (b + "mlp.down_proj.weight", [H, F], "w")]
    t += [("model.norm.weight", [H], "one")]
    write(out, t, {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": H, "num_hidden_layers": L,
                   "num_attention_heads": NH, "num_key_value_heads": NKV, "intermediate_size": F, "vocab_size": V,
                   "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": True,
                   "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 8192}, "torch_dtype": "bfloat16"}, "BF16")
elif kind in ("deepseek-204m", "deepseek-204m-mtp"):
    H, L, V, NH, E, FE, FD = 768, 8, 32000, 12, 32, 256, 2048
    ql, kl, nope, rope, vd = 256, 256, 64, 32, 64
    mtp = kind.endswith("-mtp")

    def decoder_layer(b, dense):
        a = b + "self_attn."
        t = [(b + "input_layernorm.weight", [H], "one"), (a + "q_a_proj.weight", [ql, H], "w"), (a + "q_a_layernorm.weight", [ql], "one"),
             (a + "q_b_proj.weight", [NH * (nope + rope), ql], "w"), (a + "kv_a_proj_with_mqa.weight", [kl + rope, H], "w"),
             (a + "kv_a_layernorm.weight", [kl], "one"), (a + "kv_b_proj.weight", [NH * (nope + vd), kl], "w"),
             (a + "o_proj.weight", [H, NH * vd], "w"), (b + "post_attention_layernorm.weight", [H], "one")]
        if dense:
            return t + [(b + "mlp.gate_proj.weight", [FD, H], "w"), (b + "mlp.up_proj.weight", [FD, H], "w"), (b + "mlp.down_proj.weight", [H, FD], "w")]
        t += [(b + "mlp.gate.weight", [E, H], "w"), (b + "mlp.gate.e_score_correction_bias", [E], "zero")]
        for e in range(E):
            x = b + f"mlp.experts.{e}."
            t += [(x + "gate_proj.weight", [FE, H], "w"), (x + "up_proj.weight", [FE, H], "w"), (x + "down_proj.weight", [H, FE], "w")]
        x = b + "mlp.shared_experts."
        return t + [(x + "gate_proj.weight", [FE, H], "w"), (x + "up_proj.weight", [FE, H], "w"), (x + "down_proj.weight", [H, FE], "w")]

    t = [("model.embed_tokens.weight", [V, H], "w")]
    for l in range(L):
        t += decoder_layer(f"model.layers.{l}.", l == 0)
    t += [("model.norm.weight", [H], "one"), ("lm_head.weight", [V, H], "w")]
    if mtp:
        b = f"model.layers.{L}."
        t += [(b + "embed_tokens.weight", [V, H], "copy:model.embed_tokens.weight"), (b + "enorm.weight", [H], "one"),
              (b + "hnorm.weight", [H], "one"), (b + "eh_proj.weight", [H, 2 * H], "w")]
        t += decoder_layer(b, False)
        t += [(b + "shared_head.norm.weight", [H], "one"), (b + "shared_head.head.weight", [V, H], "copy:lm_head.weight")]
    write(out, t, {"model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"], "hidden_size": H, "num_hidden_layers": L,
                   "num_attention_heads": NH, "num_key_value_heads": NH, "intermediate_size": FD, "moe_intermediate_size": FE,
                   "n_routed_experts": E, "n_shared_experts": 1, "num_experts_per_tok": 4, "n_group": 4, "topk_group": 2,
                   "first_k_dense_replace": 1, "routed_scaling_factor": 2.5, "norm_topk_prob": True, "scoring_func": "sigmoid",
                   "topk_method": "noaux_tc", "q_lora_rank": ql, "kv_lora_rank": kl, "qk_nope_head_dim": nope, "qk_rope_head_dim": rope,
                   "v_head_dim": vd, "vocab_size": V, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
                   "tie_word_embeddings": False, "num_nextn_predict_layers": 1 if mtp else 0, "torch_dtype": "bfloat16"}, "BF16")
