#!/usr/bin/env python3
"""Writes Tests/Unicode/pretokenizer-sweep.json: for every Unicode scalar value c, where HF
`tokenizers` splits CONTEXT (with c in several places) under the GPT-2, Llama 3 and DeepSeek-V3
pre-tokenizers of the fixtures, as a bit mask of piece starts, run-length encoded over c.
`UnicodeSweepTests` compares malrun's pre-tokenizers with it for all 1,112,064 scalars.

    pip install tokenizers==0.23.3 && python3 Tests/Unicode/make_sweep.py
"""
import json
import os
import tokenizers
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "Fixtures", "tokenizers")
NAMES = ["gpt2-real", "llama3-bpe-2k", "deepseek-v3-bpe-2k"]
# Each class shows in some position: after a letter, between digits, after a space, before
# punctuation, after an apostrophe (contractions), before a line break, doubled, before spaces.
CONTEXT = "a{c}b 1{c}2 {c}! '{c} \n{c}x{c}{c}  {c}"


def signature(pre, text):
    mask = 0
    for _, (s, _) in pre.pre_tokenize_str(text):
        mask |= 1 << s
    return mask


def main():
    pres = [Tokenizer.from_file(os.path.join(FIXTURES, n, "tokenizer.json")).pre_tokenizer for n in NAMES]
    runs = []
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        text = CONTEXT.replace("{c}", chr(c))
        sig = [signature(p, text) for p in pres]
        if runs and runs[-1][1] == c - 1 and runs[-1][2:] == sig:
            runs[-1][1] = c
        elif runs and runs[-1][1] == 0xD7FF and c == 0xE000 and runs[-1][2:] == sig:
            runs[-1][1] = c
        else:
            runs.append([c, c] + sig)
    doc = {"source": f"HF tokenizers {tokenizers.__version__}", "pretokenizers": NAMES, "context": CONTEXT, "runs": runs}
    out = os.path.join(HERE, "pretokenizer-sweep.json")
    with open(out, "w") as f:
        f.write(json.dumps({k: v for k, v in doc.items() if k != "runs"})[:-1] + ', "runs": [\n')
        f.write(",\n".join(json.dumps(r) for r in runs) + "\n]}\n")
    print(f"wrote {out}: {len(runs)} runs")


if __name__ == "__main__":
    main()
