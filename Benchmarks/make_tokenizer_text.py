#!/usr/bin/env python3
"""Writes the tokenizer benchmark text: ~4 MB of mixed prose, code, CJK and emoji, deterministic.

Sources: the held-out fortunes (English prose), the tokenizer training corpus of the fixtures
(Debian licence texts, Python stdlib sources, multilingual lines), plus generated CJK and emoji
lines. usage: make_tokenizer_text.py OUT [MB]
"""
import gzip, os, random, sys

here = os.path.dirname(os.path.abspath(__file__))
out, mb = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 4.0
prose = open(os.path.join(here, "..", "Samples", "heldout.txt"), encoding="utf-8").read()
corpus = gzip.open(os.path.join(here, "..", "Tests", "Fixtures", "tokenizers", "training_corpus.txt.gz"), "rt", encoding="utf-8").read()
rng = random.Random(20261126)
cjk = "".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(4000)) + "。日本語のテキストと中文文本，한국어 텍스트。"
emoji = " ".join(["😀", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🏳️\u200d🌈", "❤️", "🀄", "𝕄𝕒𝕥𝕙"] * 200)
parts = [prose, corpus, cjk, emoji]
text, size = [], 0
while size < mb * 1e6:
    p = parts[rng.randrange(len(parts))]
    s = rng.randrange(0, max(1, len(p) - 20000))
    chunk = p[s:s + 20000]
    text.append(chunk)
    size += len(chunk.encode("utf-8"))
open(out, "w", encoding="utf-8").write("".join(text))
