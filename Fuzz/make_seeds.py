#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into Fuzz/Corpus/<target>/ (committed; rerun to
regenerate). Small inputs mutate fastest, so the seeds are shrunken copies of the repository's
fixtures: tiny random models of each architecture (from Tests/Reference/numpy_forward.py's makers),
tokenizers cut to their first few hundred tokens, and every config and tokenizer_config the
repository holds. The `.mal` seeds are written by malconv itself (MAL_BIN, default the debug build).

    python3 Fuzz/make_seeds.py
"""
import glob, json, os, shutil, struct, subprocess, sys
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Tests", "Reference"))
import numpy_forward as nf  # noqa: E402  (the model makers and the safetensors writer)

CORPUS = os.path.join(ROOT, "Fuzz", "Corpus")
MALCONV = os.path.join(os.environ.get("MAL_BIN", os.path.join(ROOT, ".build", "debug")), "malconv")
FIX = os.path.join(ROOT, "Tests", "Fixtures")


def put(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None):
    """tensors: name -> (dtype, shape, raw bytes)."""
    header, off, blobs = {}, 0, []
    if metadata is not None: header["__metadata__"] = metadata
    for name, (dt, shape, raw) in tensors.items():
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw); blobs.append(raw)
    h = json.dumps(header).encode(); h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def shrink_tokenizer(path, keep=300):
    """The tokenizer.json at `path` with its vocabulary cut to ids < keep (merges that stay inside it,
    added tokens renumbered after it): the same pre-tokenizer, normaliser and decoder, 10-50x smaller."""
    t = json.load(open(path))
    m = t["model"]
    vocab = {k: v for k, v in m["vocab"].items() if v < keep}
    merges = []
    for mg in m["merges"]:
        a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
        if a in vocab and b in vocab and (a + b) in vocab: merges.append(mg)
    m["vocab"], m["merges"] = vocab, merges
    for i, a in enumerate(t.get("added_tokens", [])): a["id"] = keep + i
    return json.dumps(t, ensure_ascii=False)


def main():
    shutil.rmtree(CORPUS, ignore_errors=True)
    rng = np.random.default_rng(7)
    tiny = {"gpt2": nf.make_gpt2(rng, 8, 1, 2, 16, 8, 16),
            "llama": nf.make_llama(rng, 8, 1, 2, 1, 16, 12),
            "deepseek-v3": nf.make_deepseek(rng, True, 8, 2, 2, 16, 12, 4, 4, 2, 4, 4, 4, 2, 2, 1, 4, 1, norm_topk_prob=True),
            "deepseek-v2": nf.make_deepseek(rng, False, 8, 2, 2, 16, 12, 4, 4, 2, 4, None, 4, 2, 1, 1, 4, 1)}
    tmp = os.path.join(ROOT, ".build", "fuzz-seeds")
    shutil.rmtree(tmp, ignore_errors=True)

    # safetensors: the tiny models in three dtypes, and hand-made headers (metadata, scalars, empty
    # tensors, every common dtype).
    for (arch, (t, cfg)), dt in zip(tiny.items(), ("F32", "BF16", "F16", "F32")):
        out = os.path.join(tmp, arch)
        nf.write(out, t, cfg, dt)
        put("safetensors", f"{arch}-{dt}.safetensors", open(out + "/model.safetensors", "rb").read())
    put("safetensors", "metadata.safetensors", safetensors({"w": ("F32", [2, 2], bytes(16))}, {"format": "pt", "x": "y"}))
    put("safetensors", "scalar-empty.safetensors", safetensors({"s": ("I64", [], bytes(8)), "e": ("F16", [0, 3], b"")}))
    put("safetensors", "dtypes.safetensors", safetensors({d: (d, [4], bytes(4 * n)) for d, n in
        (("U8", 1), ("I8", 1), ("BOOL", 1), ("F8_E4M3", 1), ("F8_E5M2", 1), ("I16", 2), ("U16", 2), ("BF16", 2), ("F16", 2),
         ("I32", 4), ("U32", 4), ("F32", 4), ("I64", 8), ("U64", 8), ("F64", 8))}))
    put("safetensors", "empty-header.safetensors", safetensors({}))

    # index: weight maps over the two shards the harness writes (Fuzz/Sources/FuzzTargets/Scratch.swift).
    put("index", "two-shards.json", json.dumps({"metadata": {"total_size": 40}, "weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}}))
    put("index", "llama3-tiny.json", open(os.path.join(FIX, "llama3-tiny", "model.safetensors.index.json")).read())

    # config: every config in the repository, both key styles, and the real Hub configs.
    paths = sorted(glob.glob(FIX + "/*/config*.json") + glob.glob(FIX + "/real-configs/*/config.json")
                   + glob.glob(ROOT + "/Samples/*/config.json"))
    for p in paths:
        put("config", os.path.relpath(p, ROOT).replace("/", "_"), open(p, "rb").read())

    # tokenizer-json: each fixture tokenizer shrunken; tokenizer-config: every tokenizer_config.json.
    for p in sorted(glob.glob(FIX + "/tokenizers/*/tokenizer.json")):
        put("tokenizer-json", os.path.basename(os.path.dirname(p)) + ".json", shrink_tokenizer(p))
    for p in sorted(glob.glob(FIX + "/*/tokenizer_config.json") + glob.glob(FIX + "/tokenizers/*/tokenizer_config.json")
                    + glob.glob(ROOT + "/Samples/*/tokenizer_config.json")):
        put("tokenizer-config", os.path.relpath(p, ROOT).replace("/", "_"), open(p, "rb").read())

    # The fixed partner files of the tokenizer targets (Fuzz/Sources/FuzzTargets/SeedTokenizer.swift):
    # GPT-2's byte-level tokenizer cut to 300 ids, so that building it costs little per input.
    part = os.path.join(ROOT, "Fuzz", "Partners")
    os.makedirs(part, exist_ok=True)
    open(part + "/tokenizer.json", "w").write(shrink_tokenizer(FIX + "/tokenizers/gpt2-bpe-2k/tokenizer.json", keep=260))
    shutil.copy(FIX + "/tokenizers/gpt2-bpe-2k/tokenizer_config.json", part + "/tokenizer_config.json")

    # mal: the tiny models converted (with a shrunken tokenizer each), one FP8-quantised and one
    # absorbed, so every codec, aliases, scale links and the tokenizer aux file occur.
    toks = {"gpt2": "gpt2-bpe-2k", "llama": "llama3-bpe-2k", "deepseek-v3": "deepseek-v3-bpe-384", "deepseek-v2": "deepseek-v3-bpe-384"}
    for arch, (t, cfg) in tiny.items():
        out = os.path.join(tmp, arch)
        src = os.path.join(FIX, "tokenizers", toks[arch])
        open(out + "/tokenizer.json", "w").write(shrink_tokenizer(src + "/tokenizer.json"))
        shutil.copy(src + "/tokenizer_config.json", out + "/tokenizer_config.json")
        runs = [(["convert", out, "-o", out + ".mal"], out + ".mal")]
        if arch == "deepseek-v3":
            runs += [(["quantize", out, "-o", out + "-fp8.mal"], out + "-fp8.mal"),
                     (["absorb-mla", out + ".mal", "-o", out + "-absorbed.mal"], out + "-absorbed.mal")]
        if arch == "llama":
            runs += [(["convert", out, "-o", out + "-bf16.mal", "--dtype", "bf16", "--level", "1"], out + "-bf16.mal")]
        for args, made in runs:
            subprocess.run([MALCONV] + args, check=True, capture_output=True)
            put("mal", os.path.basename(made), open(made, "rb").read())
    for target in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, target))
        size = sum(os.path.getsize(os.path.join(CORPUS, target, f)) for f in files)
        print(f"{target:18s} {len(files):3d} seeds, {size:8d} bytes")


if __name__ == "__main__":
    main()
