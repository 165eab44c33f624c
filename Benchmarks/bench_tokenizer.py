#!/usr/bin/env python3
"""Single-thread throughput of tiktoken and HF tokenizers on the benchmark text, GPT-2 vocabulary.

tiktoken has no offline GPT-2 file here, so its Encoding is built from the same vocabulary
(`gpt2-real` fixture: encoder.json ranks = token ids, GPT-2 regex); both must agree with malrun.
usage: bench_tokenizer.py TEXT TOKENIZER_DIR [--hf-only]   (--hf-only: a vocabulary tiktoken has no pattern for)
"""
import json, os, sys, time
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
import tiktoken
from tokenizers import Tokenizer

hf_only = "--hf-only" in sys.argv
text = open(sys.argv[1], encoding="utf-8").read()
nbytes = len(text.encode("utf-8"))
tj = json.load(open(os.path.join(sys.argv[2], "tokenizer.json"), encoding="utf-8"))
b2u = {}
n = 0
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
cs = bs[:]
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
u2b = {chr(c): b for b, c in zip(bs, cs)}
ranks = {bytes(u2b[ch] for ch in tok): i for tok, i in tj["model"]["vocab"].items() if all(ch in u2b for ch in tok)}
enc = None if hf_only else tiktoken.Encoding("gpt2-local", pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
                        mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
hf = Tokenizer.from_file(os.path.join(sys.argv[2], "tokenizer.json"))

def best(f, reps=3):
    b = 1e9
    for _ in range(reps):
        t = time.perf_counter(); r = f(); b = min(b, time.perf_counter() - t)
    return b, r

t0 = time.perf_counter()
Tokenizer.from_file(os.path.join(sys.argv[2], "tokenizer.json"))
load = time.perf_counter() - t0
t2, ids2 = best(lambda: hf.encode(text, add_special_tokens=False).ids)
if enc is not None:
    t1, ids1 = best(lambda: enc.encode(text, allowed_special="all"))
    print(f"tiktoken {tiktoken.__version__}: {nbytes/t1/1e6:.2f} MB/s ({len(ids1)} tokens)")
    print(f"HF tokenizers: {nbytes/t2/1e6:.2f} MB/s ({len(ids2)} tokens); same ids as tiktoken: {ids1 == ids2}")
else:
    print(f"HF tokenizers: {nbytes/t2/1e6:.2f} MB/s ({len(ids2)} tokens); loads tokenizer.json in {load * 1e3:.0f} ms")
json.dump(ids2, open(sys.argv[1] + ".ids.json", "w"))
