#!/usr/bin/env python3
"""An independent float64 forward pass (numpy only) for GPT-2 and Llama checkpoints, run on random
models of odd shapes and on every activation and score option the config reader accepts, in F32,
BF16 and F16, and compared with `malrun logits` on the HF folder and on its converted `.mal`.

The fixtures cover the shapes transformers saved; this covers the kernels' tails (widths that are
not multiples of 16/32/64, head dims 8/24/25, q width != hidden, 3 heads per KV head) and the
config switches. Needs numpy and a build; `make test` runs it on the debug build, by hand:

    make build && python3 Tests/Reference/numpy_forward.py [OUT_DIR]     (MAL_BIN=DIR picks the binaries)

Prints one line per model and dtype with the largest |logit difference|; exits 1 if any exceeds
1e-4 relative to the largest |logit|/10 (these random models have logits up to ~25)."""
import json, os, shutil, struct, subprocess, sys, tempfile
import numpy as np
from math import erf, pi, sqrt, log

def bf16_round(a):
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r, (r.astype(np.uint32) << 16).view(np.float32)

def write(out, tensors, config, dtype):
    os.makedirs(out, exist_ok=True)
    header, off, blobs, used = {}, 0, [], {}
    for name, a in tensors.items():
        a = np.asarray(a, np.float32)
        if dtype == "BF16": raw, val = bf16_round(a); b = raw.tobytes()
        elif dtype == "F16": val = a.astype(np.float16); b = val.tobytes(); val = val.astype(np.float32)
        else: val = a; b = a.tobytes()
        used[name] = val.astype(np.float64)
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b); blobs.append(b)
    t = json.dumps(header).encode(); t += b" " * ((8 - len(t) % 8) % 8)
    with open(f"{out}/model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(t)) + t); [f.write(b) for b in blobs]
    json.dump(config, open(f"{out}/config.json", "w"))
    return used

def act(name, x):
    if name in ("gelu_new", "gelu_pytorch_tanh"): return 0.5 * x * (1 + np.tanh(sqrt(2 / pi) * (x + 0.044715 * x ** 3)))
    if name == "gelu": return 0.5 * x * (1 + np.vectorize(erf)(x / sqrt(2)))
    if name == "relu": return np.maximum(x, 0)
    if name == "silu": return x / (1 + np.exp(-x))
    if name == "quick_gelu": return x / (1 + np.exp(-1.702 * x))

def ln(x, w, b, eps): m = x.mean(-1, keepdims=True); v = ((x - m) ** 2).mean(-1, keepdims=True); return (x - m) / np.sqrt(v + eps) * w + b
def rms(x, w, eps): return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * w

def attention(q, k, v, nh, nkv, hd, scale):
    T = q.shape[0]; q = q.reshape(T, nh, hd); k = k.reshape(T, nkv, hd); v = v.reshape(T, nkv, -1)
    g = nh // nkv; out = np.zeros((T, nh, v.shape[-1]))
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for h in range(nh):
        s = q[:, h] @ k[:, h // g].T * scale + mask; s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
        out[:, h] = s @ v[:, h // g]
    return out.reshape(T, -1)

def gpt2(cfg, W, ids):
    if "transformer.wte.weight" not in W: W = {"transformer." + k: v for k, v in W.items()}
    H, L, nh = cfg["n_embd"], cfg["n_layer"], cfg["n_head"]; hd = H // nh; eps = cfg.get("layer_norm_epsilon", 1e-5)
    x = W["transformer.wte.weight"][ids] + W["transformer.wpe.weight"][: len(ids)]
    for l in range(L):
        p = f"transformer.h.{l}."
        h = ln(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"], eps)
        qkv = h @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]
        scale = (1 / sqrt(hd) if cfg.get("scale_attn_weights", True) else 1) / ((l + 1) if cfg.get("scale_attn_by_inverse_layer_idx") else 1)
        a = attention(qkv[:, :H], qkv[:, H:2 * H], qkv[:, 2 * H:], nh, nh, hd, scale)
        x = x + a @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        h = ln(x, W[p + "ln_2.weight"], W[p + "ln_2.bias"], eps)
        x = x + act(cfg.get("activation_function", "gelu_new"), h @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"]) @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
    x = ln(x, W["transformer.ln_f.weight"], W["transformer.ln_f.bias"], eps)
    return x @ W["transformer.wte.weight"].T

def rope_freqs(cfg, hd):
    inv = 1.0 / (cfg.get("rope_theta", 10000.0) ** (np.arange(0, hd, 2) / hd))
    rs = cfg.get("rope_scaling")
    if rs and rs.get("rope_type") == "llama3":
        f, lo, hi, orig = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        wl = 2 * pi / inv; lo_wl, hi_wl = orig / lo, orig / hi
        out = np.where(wl > lo_wl, inv / f, inv)
        sm = (orig / wl - lo) / (hi - lo); smoothed = (1 - sm) * out / f + sm * out
        mid = ~(wl < hi_wl) & ~(wl > lo_wl)
        inv = np.where(mid, smoothed, out)
    elif rs and rs.get("rope_type") == "linear": inv = inv / rs["factor"]
    return inv

def rope(x, nh, hd, inv):
    T = x.shape[0]; x = x.reshape(T, nh, hd); ang = np.arange(T)[:, None] * inv[None]; c, s = np.cos(ang), np.sin(ang)
    c = np.concatenate([c, c], -1)[:, None]; s = np.concatenate([s, s], -1)[:, None]
    rot = np.concatenate([-x[..., hd // 2:], x[..., : hd // 2]], -1)
    return (x * c + rot * s).reshape(T, -1)

def llama(cfg, W, ids):
    H, L, nh = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]; nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim", H // nh); eps = cfg.get("rms_norm_eps", 1e-6); inv = rope_freqs(cfg, hd)
    b = lambda n: W.get(n, 0)
    x = W["model.embed_tokens.weight"][ids]
    for l in range(L):
        p = f"model.layers.{l}."
        h = rms(x, W[p + "input_layernorm.weight"], eps)
        q = h @ W[p + "self_attn.q_proj.weight"].T + b(p + "self_attn.q_proj.bias")
        k = h @ W[p + "self_attn.k_proj.weight"].T + b(p + "self_attn.k_proj.bias")
        v = h @ W[p + "self_attn.v_proj.weight"].T + b(p + "self_attn.v_proj.bias")
        a = attention(rope(q, nh, hd, inv), rope(k, nkv, hd, inv), v, nh, nkv, hd, 1 / sqrt(hd))
        x = x + a @ W[p + "self_attn.o_proj.weight"].T + b(p + "self_attn.o_proj.bias")
        h = rms(x, W[p + "post_attention_layernorm.weight"], eps)
        g = act(cfg.get("hidden_act", "silu"), h @ W[p + "mlp.gate_proj.weight"].T + b(p + "mlp.gate_proj.bias"))
        u = h @ W[p + "mlp.up_proj.weight"].T + b(p + "mlp.up_proj.bias")
        x = x + (g * u) @ W[p + "mlp.down_proj.weight"].T + b(p + "mlp.down_proj.bias")
    x = rms(x, W["model.norm.weight"], eps)
    head = W["lm_head.weight"] if "lm_head.weight" in W else W["model.embed_tokens.weight"]
    return x @ head.T

def make_gpt2(rng, H, L, nh, V, P, inner, openai_names=False, **extra):
    t = {"transformer.wte.weight": rng.normal(0, 0.5, (V, H)), "transformer.wpe.weight": rng.normal(0, 0.2, (P, H))}
    for l in range(L):
        p = f"transformer.h.{l}."
        t.update({p + "ln_1.weight": rng.normal(1, 0.2, H), p + "ln_1.bias": rng.normal(0, 0.1, H),
                  p + "attn.c_attn.weight": rng.normal(0, 0.3, (H, 3 * H)), p + "attn.c_attn.bias": rng.normal(0, 0.1, 3 * H),
                  p + "attn.c_proj.weight": rng.normal(0, 0.2, (H, H)), p + "attn.c_proj.bias": rng.normal(0, 0.1, H),
                  p + "ln_2.weight": rng.normal(1, 0.2, H), p + "ln_2.bias": rng.normal(0, 0.1, H),
                  p + "mlp.c_fc.weight": rng.normal(0, 0.3, (H, inner)), p + "mlp.c_fc.bias": rng.normal(0, 0.1, inner),
                  p + "mlp.c_proj.weight": rng.normal(0, 0.2, (inner, H)), p + "mlp.c_proj.bias": rng.normal(0, 0.1, H)})
    t.update({"transformer.ln_f.weight": rng.normal(1, 0.2, H), "transformer.ln_f.bias": rng.normal(0, 0.1, H)})
    cfg = {"model_type": "gpt2", "n_embd": H, "n_layer": L, "n_head": nh, "vocab_size": V, "n_positions": P, "n_inner": inner}
    cfg.update(extra)
    if openai_names:   # openai-community/gpt2 style: no "transformer." prefix, causal-mask buffers stored
        t = {k.replace("transformer.", ""): v for k, v in t.items()}
        for l in range(L):
            t[f"h.{l}.attn.bias"] = np.tril(np.ones((P, P))).reshape(1, 1, P, P)
            t[f"h.{l}.attn.masked_bias"] = np.array(-1e4)
    return t, cfg

def make_llama(rng, H, L, nh, nkv, V, F, hd=None, tied=False, abias=False, mbias=False, qwen2=False, **extra):
    hd = hd or H // nh
    t = {"model.embed_tokens.weight": rng.normal(0, 0.5, (V, H))}
    for l in range(L):
        p = f"model.layers.{l}."
        t.update({p + "input_layernorm.weight": rng.normal(1, 0.2, H), p + "post_attention_layernorm.weight": rng.normal(1, 0.2, H),
                  p + "self_attn.q_proj.weight": rng.normal(0, 0.3, (nh * hd, H)), p + "self_attn.k_proj.weight": rng.normal(0, 0.3, (nkv * hd, H)),
                  p + "self_attn.v_proj.weight": rng.normal(0, 0.3, (nkv * hd, H)), p + "self_attn.o_proj.weight": rng.normal(0, 0.2, (H, nh * hd)),
                  p + "mlp.gate_proj.weight": rng.normal(0, 0.3, (F, H)), p + "mlp.up_proj.weight": rng.normal(0, 0.3, (F, H)),
                  p + "mlp.down_proj.weight": rng.normal(0, 0.2, (H, F))})
        if abias or qwen2:   # Qwen2: biases on q, k and v only
            for n, d in (("q", nh * hd), ("k", nkv * hd), ("v", nkv * hd), ("o", H))[:3 if qwen2 else 4]:
                t[p + f"self_attn.{n}_proj.bias"] = rng.normal(0, 0.1, d)
        if mbias:
            for n, d in (("gate", F), ("up", F), ("down", H)): t[p + f"mlp.{n}_proj.bias"] = rng.normal(0, 0.1, d)
    t["model.norm.weight"] = rng.normal(1, 0.2, H)
    if not tied: t["lm_head.weight"] = rng.normal(0, 0.5, (V, H))
    cfg = {"model_type": "llama", "hidden_size": H, "num_hidden_layers": L, "num_attention_heads": nh, "num_key_value_heads": nkv,
           "vocab_size": V, "intermediate_size": F, "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "tie_word_embeddings": tied,
           "attention_bias": abias, "mlp_bias": mbias, "rope_theta": 10000.0}
    if hd != H // nh: cfg["head_dim"] = hd
    if qwen2:
        cfg["model_type"] = "qwen2"
        for k in ("attention_bias", "mlp_bias"): del cfg[k]
    cfg.update(extra); return t, cfg


def yarn(cfg, dim):
    """transformers' YaRN: per-frequency blend of interpolated and original frequencies, and the
    cos/sin amplitude; DeepSeek also multiplies the softmax scale by mscale(factor, mscale_all_dim)^2."""
    rs = cfg.get("rope_scaling"); base = cfg.get("rope_theta", 10000.0)
    pos = base ** (np.arange(0, dim, 2) / dim)
    if not rs: return 1 / pos, 1.0, 1.0
    f, orig = rs["factor"], rs["original_max_position_embeddings"]
    get = lambda s, m=1: 1.0 if s <= 1 else 0.1 * m * log(s) + 1.0
    m, mall = rs.get("mscale"), rs.get("mscale_all_dim")
    amp = get(f, m) / get(f, mall) if m and mall else get(f)
    cd = lambda r: dim * log(orig / (r * 2 * pi)) / (2 * log(base))
    lo, hi = max(np.floor(cd(rs.get("beta_fast", 32))), 0), min(np.ceil(cd(rs.get("beta_slow", 1))), dim - 1)
    if lo == hi: hi += 0.001
    extra = 1 - np.clip((np.arange(dim // 2) - lo) / (hi - lo), 0, 1)
    inv = (1 / (f * pos)) * (1 - extra) + (1 / pos) * extra
    return inv, amp, (get(f, mall) ** 2 if mall else 1.0)

def rope_pairs(x, inv, amp):
    """Rotation of interleaved pairs (2i, 2i+1) by position * inv[i] (DeepSeek's complex form)."""
    T = x.shape[0]; a = np.arange(T)[:, None] * inv[None]; c, s = np.cos(a) * amp, np.sin(a) * amp
    shape = x.shape; x = x.reshape(T, -1, len(inv), 2); c = c[:, None]; s = s[:, None]
    out = np.stack([x[..., 0] * c - x[..., 1] * s, x[..., 0] * s + x[..., 1] * c], -1)
    return out.reshape(shape)

def deepseek(cfg, W, ids):
    H, L, nh = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]; eps = cfg.get("rms_norm_eps", 1e-6)
    nope, rd, vd, kvr = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"], cfg["kv_lora_rank"]
    inv, amp, mscale2 = yarn(cfg, rd); scale = (nope + rd) ** -0.5 * mscale2
    T = len(ids); x = W["model.embed_tokens.weight"][ids]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    def mlp(p, h): return (act(cfg.get("hidden_act", "silu"), h @ W[p + "gate_proj.weight"].T) * (h @ W[p + "up_proj.weight"].T)) @ W[p + "down_proj.weight"].T
    for l in range(L):
        p = f"model.layers.{l}."
        h = rms(x, W[p + "input_layernorm.weight"], eps)
        if cfg.get("q_lora_rank"):
            q = rms(h @ W[p + "self_attn.q_a_proj.weight"].T, W[p + "self_attn.q_a_layernorm.weight"], eps) @ W[p + "self_attn.q_b_proj.weight"].T
        else:
            q = h @ W[p + "self_attn.q_proj.weight"].T
        q = q.reshape(T, nh, nope + rd); qn, qp = q[..., :nope], rope_pairs(np.ascontiguousarray(q[..., nope:]), inv, amp)
        ckv = h @ W[p + "self_attn.kv_a_proj_with_mqa.weight"].T
        kv = (rms(ckv[:, :kvr], W[p + "self_attn.kv_a_layernorm.weight"], eps) @ W[p + "self_attn.kv_b_proj.weight"].T).reshape(T, nh, nope + vd)
        kn, v = kv[..., :nope], kv[..., nope:]; kp = rope_pairs(ckv[:, kvr:], inv, amp)
        out = np.zeros((T, nh, vd))
        for hh in range(nh):
            sc = (qn[:, hh] @ kn[:, hh].T + qp[:, hh] @ kp.T) * scale + mask
            sc = np.exp(sc - sc.max(-1, keepdims=True)); sc /= sc.sum(-1, keepdims=True); out[:, hh] = sc @ v[:, hh]
        x = x + out.reshape(T, -1) @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"], eps)
        if l < cfg.get("first_k_dense_replace", 0):
            x = x + mlp(p + "mlp.", h); continue
        E, k, G, TG = cfg["n_routed_experts"], cfg["num_experts_per_tok"], cfg.get("n_group", 1), cfg.get("topk_group", 1)
        logits = h @ W[p + "mlp.gate.weight"].T
        y = mlp(p + "mlp.shared_experts.", h) if cfg.get("n_shared_experts") else np.zeros_like(h)
        for t in range(T):
            if cfg.get("scoring_func", "sigmoid" if cfg["model_type"] == "deepseek_v3" else "softmax") == "sigmoid":
                sc = 1 / (1 + np.exp(-logits[t]))
            else:
                sc = np.exp(logits[t] - logits[t].max()); sc /= sc.sum()
            sel = sc + W.get(p + "mlp.gate.e_score_correction_bias", 0)
            method = cfg.get("topk_method", "noaux_tc" if cfg["model_type"] == "deepseek_v3" else "greedy")
            if G > 1 and method != "greedy":
                g = sel.reshape(G, -1); gs = np.sort(g, -1)[:, ::-1][:, :2].sum(-1) if method == "noaux_tc" else g.max(-1)
                keep = np.argsort(-gs, kind="stable")[:TG]; m = np.full(G, -np.inf); m[keep] = 0; sel = (g + m[:, None]).reshape(-1)
            top = np.argsort(-sel, kind="stable")[:k]; w = sc[top]
            if cfg.get("norm_topk_prob") and method == "noaux_tc": w = w / (w.sum() + 1e-20)
            w = w * cfg.get("routed_scaling_factor", 1.0)
            for e, we in zip(top, w): y[t] += we * mlp(p + f"mlp.experts.{e}.", h[t:t + 1])[0]
        x = x + y
    x = rms(x, W["model.norm.weight"], eps)
    return x @ W["lm_head.weight"].T

def make_deepseek(rng, v3, H, L, nh, V, F, kvr, nope, rd, vd, qr, E, k, G, TG, Fe, shared, **extra):
    t = {"model.embed_tokens.weight": rng.normal(0, 0.5, (V, H)), "lm_head.weight": rng.normal(0, 0.5, (V, H)), "model.norm.weight": rng.normal(1, 0.2, H)}
    def mlp(p, f): t.update({p + "gate_proj.weight": rng.normal(0, 0.3, (f, H)), p + "up_proj.weight": rng.normal(0, 0.3, (f, H)), p + "down_proj.weight": rng.normal(0, 0.2, (H, f))})
    for l in range(L):
        p = f"model.layers.{l}."
        t.update({p + "input_layernorm.weight": rng.normal(1, 0.2, H), p + "post_attention_layernorm.weight": rng.normal(1, 0.2, H),
                  p + "self_attn.kv_a_proj_with_mqa.weight": rng.normal(0, 0.3, (kvr + rd, H)), p + "self_attn.kv_a_layernorm.weight": rng.normal(1, 0.2, kvr),
                  p + "self_attn.kv_b_proj.weight": rng.normal(0, 0.3, (nh * (nope + vd), kvr)), p + "self_attn.o_proj.weight": rng.normal(0, 0.2, (H, nh * vd))})
        if qr: t.update({p + "self_attn.q_a_proj.weight": rng.normal(0, 0.3, (qr, H)), p + "self_attn.q_a_layernorm.weight": rng.normal(1, 0.2, qr),
                         p + "self_attn.q_b_proj.weight": rng.normal(0, 0.3, (nh * (nope + rd), qr))})
        else: t[p + "self_attn.q_proj.weight"] = rng.normal(0, 0.3, (nh * (nope + rd), H))
        if l == 0: mlp(p + "mlp.", F); continue
        t[p + "mlp.gate.weight"] = rng.normal(0, 0.5, (E, H))
        if v3: t[p + "mlp.gate.e_score_correction_bias"] = rng.uniform(0, 0.1, E)
        for e in range(E): mlp(p + f"mlp.experts.{e}.", Fe)
        if shared: mlp(p + "mlp.shared_experts.", Fe * shared)
    cfg = {"model_type": "deepseek_v3" if v3 else "deepseek_v2", "hidden_size": H, "num_hidden_layers": L, "num_attention_heads": nh,
           "num_key_value_heads": nh, "vocab_size": V, "intermediate_size": F, "kv_lora_rank": kvr, "qk_nope_head_dim": nope,
           "qk_rope_head_dim": rd, "v_head_dim": vd, "q_lora_rank": qr, "n_routed_experts": E, "num_experts_per_tok": k, "n_group": G,
           "topk_group": TG, "moe_intermediate_size": Fe, "n_shared_experts": shared, "first_k_dense_replace": 1, "rms_norm_eps": 1e-6,
           "max_position_embeddings": 256, "rope_theta": 10000.0, "tie_word_embeddings": False, "hidden_act": "silu"}
    cfg.update(extra); return t, cfg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("MAL_BIN", ROOT + "/.build/release")      # `make test` points it at the debug build
MALRUN, MALCONV = BIN + "/malrun", BIN + "/malconv"
failures = 0
def check(name, arch, t, cfg, dtype, T=23, seed=0):
    global failures
    out = f"{OUT}/{name.replace('/', '_')}-{dtype}"
    W = write(out, t, cfg, dtype)
    rng = np.random.default_rng(seed); V = cfg["vocab_size"]; ids = rng.integers(0, V, T)
    want = {"gpt2": gpt2, "llama": llama, "deepseek": deepseek}[arch](cfg, W, ids)
    res = []
    for src in ("hf", "mal") + (("absorbed",) if arch == "deepseek" else ()):
        path = out
        if src != "hf":
            path = out + ".mal"
            r = subprocess.run([MALCONV, "convert", out, "-o", path], capture_output=True, text=True)
            if r.returncode == 0 and src == "absorbed":
                r = subprocess.run([MALCONV, "absorb-mla", out + ".mal", "-o", out + ".abs.mal"], capture_output=True, text=True)
                os.remove(path); path = out + ".abs.mal"
            if r.returncode: print(name, dtype, src, "failed", r.stderr[-300:]); failures += 1; continue
        r = subprocess.run([MALRUN, "logits", path, "--ids", ",".join(map(str, ids)), "-o", f"{out}.{src}.logits.safetensors"], capture_output=True, text=True)
        if r.returncode: print(name, dtype, src, "logits failed", r.stderr[-300:]); failures += 1; continue
        raw = open(f"{out}.{src}.logits.safetensors", "rb").read(); n = struct.unpack("<Q", raw[:8])[0]
        h = json.loads(raw[8:8 + n]); k = [x for x in h if x != "__metadata__"][0]; a, b = h[k]["data_offsets"]
        got = np.frombuffer(raw[8 + n + a: 8 + n + b], np.float32).reshape(h[k]["shape"])
        d = np.abs(got - want).max(); res.append(f"{src} {d:.2e}")
        if src != "hf": os.remove(path)
    scale = np.abs(want).max()
    ok = all(float(r.split()[1]) <= 1e-4 * max(1, scale / 10) for r in res)
    failures += 0 if ok else 1
    print(f"{name:28s} {dtype:4s} |logits| <= {scale:5.1f}  max |diff|: {', '.join(res)}  {'ok' if ok else 'FAIL'}")

if __name__ == "__main__":   # importable: Fuzz/make_seeds.py builds its tiny models with make_*
    OUT = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="numpy-forward-")
    rng = np.random.default_rng(1)
    cases = [
        ("gpt2-40x5-gelu_new", "gpt2", *make_gpt2(rng, 40, 2, 5, 301, 50, 72)),
        ("gpt2-100x4-gelu", "gpt2", *make_gpt2(rng, 100, 2, 4, 1000, 64, 400, activation_function="gelu")),
        ("gpt2-48x3-relu-invlayer", "gpt2", *make_gpt2(rng, 48, 3, 3, 77, 40, 96, activation_function="relu", scale_attn_by_inverse_layer_idx=True)),
        ("gpt2-64x2-quick-noscale", "gpt2", *make_gpt2(rng, 64, 2, 2, 130, 40, 130, activation_function="quick_gelu", scale_attn_weights=False)),
        ("gpt2-56x7-openai-names", "gpt2", *make_gpt2(rng, 56, 2, 7, 97, 30, 200, openai_names=True)),
        ("llama-48-6/2-untied", "llama", *make_llama(rng, 48, 2, 6, 2, 257, 100)),
        ("llama-40-hd24-3/1-bias-tied", "llama", *make_llama(rng, 40, 2, 3, 1, 300, 72, hd=24, tied=True, abias=True, mbias=True)),
        ("llama-96-llama3rope", "llama", *make_llama(rng, 96, 2, 4, 4, 500, 200, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
        ("llama-130-gelu-linear", "llama", *make_llama(rng, 130, 2, 5, 5, 211, 260, hidden_act="gelu_pytorch_tanh", rope_scaling={"rope_type": "linear", "factor": 2.0})),
        ("qwen2-64-4/2-qkv-bias", "llama", *make_llama(rng, 64, 2, 4, 2, 300, 120, qwen2=True, rope_theta=1000000.0)),
        ("v3-72-qlora-yarn-groups", "deepseek", *make_deepseek(rng, True, 72, 3, 3, 301, 100, 40, 12, 8, 20, 36, 6, 2, 3, 2, 24, 1, norm_topk_prob=True,
            routed_scaling_factor=2.5, rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8, "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0})),
        ("v2-56-yarn0.707-grouplimited", "deepseek", *make_deepseek(rng, False, 56, 2, 5, 211, 90, 24, 20, 6, 14, None, 8, 3, 4, 2, 20, 2,
            topk_method="group_limited_greedy", routed_scaling_factor=1.5, rope_scaling={"type": "yarn", "factor": 8.0, "original_max_position_embeddings": 8, "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707})),
        ("v2-48-greedy-yarnamp", "deepseek", *make_deepseek(rng, False, 48, 2, 4, 150, 80, 32, 16, 16, 16, None, 5, 2, 1, 1, 16, 1,
            rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16, "mscale": 1.0, "mscale_all_dim": 0})),
    ]
    for name, arch, t, cfg in cases:
        for dt in ("F32", "BF16", "F16"):
            check(name, arch, t, cfg, dt)
    if failures or len(sys.argv) > 1:
        print(f"{failures} failures; models in {OUT}")
    else:
        shutil.rmtree(OUT)
        print(f"numpy_forward: {len(cases) * 3} model x dtype cases within float32 rounding of the float64 forward")
    sys.exit(1 if failures else 0)
