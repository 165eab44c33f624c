#!/usr/bin/env python3
"""Writes the hand-made malformed-input corpus (Tests/Malformed/<case>/, committed) and its manifest
cases.json: for each case the command that reads it, the exit status it must end with (1 malformed,
2 well-formed but missing / unexpected / mis-shaped tensors), the error kind it must name (`[kind]` in
the message) and a phrase of the message. MalformedCorpusTests runs every case; none may end by a
signal. Rerun after changing a case (needs numpy, xxhash, zstandard and a built malconv: MAL_BIN,
default the debug build):

    python3 Tests/Malformed/make_malformed.py
"""
import json, os, shutil, struct, subprocess, sys
import numpy as np
import xxhash

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "Tests", "Reference"))
import numpy_forward as nf  # noqa: E402
MALCONV = os.path.join(os.environ.get("MAL_BIN", os.path.join(ROOT, ".build", "debug")), "malconv")
FIX = os.path.join(ROOT, "Tests", "Fixtures")
cases = []


def case(name, files, command, status, kind, phrase, target=None):
    """files: relative path -> bytes/str. command: 'inspect' | 'check' | 'tokenize'; target: the
    path given to it (default: the case folder)."""
    d = os.path.join(HERE, name)
    os.makedirs(d, exist_ok=True)
    for rel, data in files.items():
        p = os.path.join(d, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f: f.write(data if isinstance(data, bytes) else data.encode())
    cases.append({"name": name, "command": command, "path": name + ("/" + target if target else ""),
                  "status": status, "kind": kind, "phrase": phrase})


def st(header, data=b"", raw_len=None):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(h) if raw_len is None else raw_len) + h + data


def f32(n): return bytes(4 * n)


# A tiny valid Llama (hidden 8, 1 layer, vocab 16) whose tensors the config cases pair with.
rng = np.random.default_rng(3)
T, CFG = nf.make_llama(rng, 8, 1, 2, 1, 16, 12)
tmp = os.path.join(ROOT, ".build", "malformed-base")
shutil.rmtree(tmp, ignore_errors=True)
nf.write(tmp, T, CFG, "F32")
MODEL = open(tmp + "/model.safetensors", "rb").read()
# GPT-2's byte-level tokenizer cut to 260 ids (the fuzz targets' partner file), so each case is small.
TOK = json.load(open(os.path.join(ROOT, "Fuzz", "Partners", "tokenizer.json")))
TOKCFG = open(os.path.join(ROOT, "Fuzz", "Partners", "tokenizer_config.json")).read()


def cfg(**edit):
    c = dict(CFG)
    for k, v in edit.items():
        if v is None: c.pop(k, None)
        else: c[k] = v
    return json.dumps(c)


def main():
    for name in os.listdir(HERE):
        if os.path.isdir(os.path.join(HERE, name)): shutil.rmtree(os.path.join(HERE, name))
    one = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}

    # ---- safetensors (malconv inspect FILE): the reference reader's rules.
    S = lambda n, *a, **k: case("safetensors-" + n, {"m.safetensors": st(*a, **k)}, "inspect", 1, K, P, "m.safetensors")
    for n, K, P, args in [
        ("empty", "headerTooSmall", "smaller than the 8-byte", (b"",)),
        ("header-huge", "headerTooLarge", "exceeds", (b"{}",), ),
        ("header-past-eof", "invalidHeaderLength", "runs past the end", (b"{}",)),
        ("header-not-utf8", "invalidHeaderUTF8", "UTF-8", (b'{"\xff\xfe":1}',)),
        ("header-not-json", "invalidHeaderJSON", "", (b'{"w": {"dtype": "F32",',)),
        ("header-array", "invalidHeaderJSON", "", (b'[1, 2, 3]',)),
        ("duplicate-key", "duplicateKey", "", (b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', f32(1))),
        ("unknown-dtype", "unknownDType", "", ({"w": {"dtype": "F12", "shape": [2], "data_offsets": [0, 8]}}, f32(2))),
        ("negative-shape", "invalidShape", "", ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, f32(2))),
        ("shape-overflow", "shapeOverflow", "", ({"w": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 8]}}, f32(2))),
        ("offsets-reversed", "offsetsReversed", "", ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, f32(2))),
        ("offset-past-file", "offsetOutOfFile", "", ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, f32(2))),
        ("size-mismatch", "tensorSizeMismatch", "", ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, f32(2))),
        ("overlap", "overlappingTensors", "", ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, f32(3))),
        ("hole", "holeInData", "", ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                     "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}, f32(3))),
        ("trailing-bytes", "incompleteData", "", (one, f32(3))),
        ("metadata-not-string", "invalidMetadata", "", ({"__metadata__": {"format": 3}, **one}, f32(2))),
        ("offsets-missing", "invalidHeaderJSON", "data_offsets", ({"w": {"dtype": "F32", "shape": [2]}}, f32(2))),
        ("shape-not-list", "invalidHeaderJSON", "shape", ({"w": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}}, f32(2))),
        ("entry-not-object", "invalidHeaderJSON", "", ({"w": [0, 8]}, f32(2))),
    ]:
        raw_len = {"header-huge": 200_000_000, "header-past-eof": 4096}.get(n)
        if n == "empty":
            case("safetensors-empty", {"m.safetensors": b""}, "inspect", 1, K, P, "m.safetensors")
        else:
            S(n, *args, raw_len=raw_len)

    # ---- shard index (malconv inspect INDEX): checked against the shards both ways.
    shard1 = st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, f32(2))
    shard2 = st({"b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, f32(2))
    shards = {"s1.safetensors": shard1, "s2.safetensors": shard2}
    I = lambda n, index, K, P, files=shards: case("index-" + n, {**files, "model.safetensors.index.json": index}, "inspect", 1, K, P,
                                                  "model.safetensors.index.json")
    I("not-json", "{weight_map:", "invalidJSON", "")
    I("no-weight-map", json.dumps({"metadata": {}}), "indexInvalid", "weight_map")
    I("value-not-string", json.dumps({"weight_map": {"a": 1, "b": "s2.safetensors"}}), "indexInvalid", "not a file name")
    I("missing-shard", json.dumps({"weight_map": {"a": "s1.safetensors", "b": "s3.safetensors"}}), "indexMissingShard", "")
    I("tensor-not-in-shard", json.dumps({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}}), "indexMissingTensor", "")
    I("unlisted-tensor", json.dumps({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}}), "indexUnlistedTensor", "'c'",
      {"s1.safetensors": st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                             "c": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, f32(4)), "s2.safetensors": shard2})
    I("tensor-in-two-shards", json.dumps({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}}), "indexUnlistedTensor", "maps it to",
      {"s1.safetensors": shard1, "s2.safetensors": st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                                       "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, f32(4))})
    I("path-escapes-folder", json.dumps({"weight_map": {"a": "../s1.safetensors", "b": "s2.safetensors"}}), "indexInvalid", "")

    # ---- config.json beside valid tensors (malconv inspect FOLDER).
    C = lambda n, text, K, P: case("config-" + n, {"config.json": text, "model.safetensors": MODEL}, "inspect", 1, K, P)
    C("not-json", "{\"model_type\": \"llama\",", "invalidJSON", "")
    C("no-model-type", cfg(model_type=None), "missingField", "model_type")
    C("unknown-architecture", cfg(model_type="mamba"), "unknownArchitecture", "mamba")
    C("hidden-zero", cfg(hidden_size=0), "invalidField", "hidden_size")
    C("hidden-negative", cfg(hidden_size=-8), "invalidField", "hidden_size")
    C("hidden-string", cfg(hidden_size="8"), "invalidField", "hidden_size")
    C("layers-huge", cfg(num_hidden_layers=2**40), "invalidField", "num_hidden_layers")
    C("kv-heads-not-dividing", cfg(num_key_value_heads=3), "invalidField", "num_key_value_heads")
    C("rope-factor-negative", cfg(rope_scaling={"rope_type": "linear", "factor": -2.0}), "invalidField", "factor")
    C("unknown-activation", cfg(hidden_act="swiglu9"), "invalidField", "hidden_act")
    C("vocab-missing", cfg(vocab_size=None), "missingField", "vocab_size")
    C("eps-negative", cfg(rms_norm_eps=-1e-5), "invalidField", "rms_norm_eps")

    # ---- well-formed checkpoints whose tensors do not fit the config: exit status 2.
    def tensors_file(edit):
        t = dict(T); edit(t)
        out = os.path.join(tmp, "edit")
        nf.write(out, t, CFG, "F32")
        return open(out + "/model.safetensors", "rb").read()
    for n, edit, P in [("missing-tensor", lambda t: t.pop("model.norm.weight"), "missing"),
                       ("unexpected-tensor", lambda t: t.update({"model.extra.weight": np.zeros(3)}), "unexpected"),
                       ("misshaped-tensor", lambda t: t.update({"model.norm.weight": np.zeros(9)}), "shape")]:
        case("inventory-" + n, {"config.json": cfg(), "model.safetensors": tensors_file(edit)}, "inspect", 2, "", P)

    # ---- tokenizer.json / tokenizer_config.json (malrun tokenize FOLDER --text hi).
    def tok(**edit):
        t = json.loads(json.dumps(TOK))
        for path, v in edit.items():
            node = t
            keys = path.split("__")
            for k in keys[:-1]: node = node[k]
            if v is None: node.pop(keys[-1], None)
            else: node[keys[-1]] = v
        return json.dumps(t)
    Z = lambda n, tj, K, P, tc=TOKCFG: case("tokenizer-" + n, {"tokenizer.json": tj, "tokenizer_config.json": tc}, "tokenize", 1, K, P)
    Z("not-json", "{\"model\": {", "invalidJSON", "")
    Z("no-model", tok(model=None), "missingField", "model")
    Z("model-wordpiece", tok(model__type="WordPiece"), "unsupported", "WordPiece")
    Z("vocab-not-object", tok(model__vocab=[1, 2]), "missingField", "model.vocab")
    Z("merge-not-pair", tok(model__merges=[["a"]]), "invalidField", "merge 0")
    Z("added-id-negative", tok(added_tokens=[{"id": -5, "content": "<x>", "special": True}]), "invalidField", "has id -5")
    Z("added-id-huge", tok(added_tokens=[{"id": 2**40, "content": "<x>", "special": True}]), "invalidField", "outside")
    Z("pre-tokenizer-unknown", tok(pre_tokenizer={"type": "Whitespacey"}), "unsupported", "Whitespacey")
    Z("split-regex-invalid", tok(pre_tokenizer={"type": "Split", "pattern": {"Regex": "(?<"}, "behavior": "Isolated", "invert": False}),
      "unsupported", "cannot be compiled")
    Z("config-not-json", json.dumps(TOK), "invalidJSON", "", tc="{\"bos_token\": ")
    case("tokenizer-missing", {"tokenizer_config.json": TOKCFG}, "tokenize", 1, "fileNotFound", "tokenizer.json")

    # ---- .mal containers (malconv check FILE): hand-edited, checksums resealed where the case is
    # about what lies behind them.
    base_dir = os.path.join(tmp, "mal")
    nf.write(base_dir, T, CFG, "F32")
    subprocess.run([MALCONV, "convert", base_dir, "-o", base_dir + ".mal"], check=True, capture_output=True)
    BASE = bytearray(open(base_dir + ".mal", "rb").read())

    def u64(b, o): return struct.unpack_from("<Q", b, o)[0]

    def reseal(b):
        mo, ml, to, tl = u64(b, 24), u64(b, 32), u64(b, 40), u64(b, 48)
        struct.pack_into("<QQ", b, 56, xxhash.xxh64_intdigest(bytes(b[mo:mo + ml])), xxhash.xxh64_intdigest(bytes(b[to:to + tl])))
        struct.pack_into("<Q", b, 88, xxhash.xxh64_intdigest(bytes(b[:88])))
        return b

    def with_metadata(edit):
        b = bytearray(BASE)
        mo, ml, to = u64(b, 24), u64(b, 32), u64(b, 40)
        meta = json.loads(bytes(b[mo:mo + ml]))
        edit(meta)
        new = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()
        b = b[:mo] + new + b[to:]
        struct.pack_into("<QQQ", b, 16, len(b), mo, len(new))
        struct.pack_into("<Q", b, 40, mo + len(new))
        return reseal(b)

    def first_record(b): return u64(b, 40) + 8

    def patched(offset_of, fmt, value, seal=True):
        b = bytearray(BASE)
        struct.pack_into(fmt, b, offset_of(b), value)
        return reseal(b) if seal else b

    M = lambda n, data, K, P: case("mal-" + n, {"m.mal": bytes(data)}, "check", 1, K, P, "m.mal")
    M("empty", b"", "headerTooSmall", "smaller than")
    M("bad-magic", b"\x89MAX" + BASE[4:], "badMagic", "magic")
    M("truncated-header", BASE[:50], "headerTooSmall", "")
    M("header-checksum", patched(lambda b: 72, "<B", 1, seal=False), "checksumMismatch", "header checksum")
    M("version-2", patched(lambda b: 8, "<H", 2), "unsupportedVersion", "2.0")
    M("unknown-flags", patched(lambda b: 12, "<I", 4), "unsupportedVersion", "flags")
    M("truncated-file", BASE[:-10], "invalidHeaderLength", "truncated")
    M("extended-file", bytes(BASE) + b"\0" * 7, "invalidHeaderLength", "")
    M("metadata-checksum", patched(lambda b: u64(b, 24) + 2, "<B", ord("Z"), seal=False), "checksumMismatch", "metadata checksum")
    M("table-checksum", patched(lambda b: u64(b, 40) + 12, "<B", 0x55, seal=False), "checksumMismatch", "table checksum")
    M("layout-not-tiling", patched(lambda b: 32, "<Q", 3), "corruptStructure", "tile")
    M("metadata-not-json", patched(lambda b: u64(b, 24), "<B", ord("[")), "corruptStructure", "metadata")
    M("spec-zero-layers", with_metadata(lambda m: m["spec"].update({"layers": 0})), "corruptStructure", "layers")
    M("spec-unknown-activation", with_metadata(lambda m: m["spec"].update({"activation": "swiglu9"})), "corruptStructure", "activation")
    M("tensor-count-huge", patched(lambda b: u64(b, 40), "<I", 0x7FFFFFFF), "corruptStructure", "room for at most")
    M("unknown-dtype-code", patched(lambda b: first_record(b) + 2, "<B", 99), "unknownDType", "dtype code 99")
    M("unknown-codec", patched(lambda b: first_record(b) + 3, "<B", 9), "unsupported", "unknown codec 9")
    M("rank-too-large", patched(lambda b: first_record(b) + 4, "<B", 9), "corruptStructure", "rank")
    M("raw-length-mismatch", patched(lambda b: first_record(b) + 16, "<Q", 12345), "corruptStructure", "")
    M("chunk-outside-data", patched(lambda b: first_record(b) + 40 + 8 * BASE[first_record(BASE) + 4]
                                    + struct.unpack_from("<H", BASE, first_record(BASE))[0], "<Q", 2**40), "corruptStructure", "")
    M("chunk-data-flipped", patched(lambda b: 200, "<B", 0xA5, seal=False), "checksumMismatch", "")
    json.dump({"cases": cases}, open(os.path.join(HERE, "cases.json"), "w"), indent=1)
    kinds = {}
    for c in cases: kinds[c["name"].split("-")[0]] = kinds.get(c["name"].split("-")[0], 0) + 1
    print(f"{len(cases)} cases: " + ", ".join(f"{k} {v}" for k, v in kinds.items()))


if __name__ == "__main__":
    main()
