#!/usr/bin/env python3
"""Renders every template in templates/ for every conversation in conversations.json, with
add_generation_prompt true and false, through transformers' own apply_chat_template (jinja2 is
its engine), and writes expected.json: the oracle ChatTemplateTests compares with, byte for byte.

    pip install transformers jinja2 tokenizers
    python3 Tests/ChatTemplates/make_cases.py [--check] [--templates DIR] [--out FILE]

The special tokens come from the fixtures' tokenizers (llama3-tiny for every template but the
DeepSeek ones, which get deepseek-v3-tiny's), and are written into expected.json so the Swift
test renders with the same ones. strftime_now is pinned to 2024-07-26 13:05:09 local time.
--check renders again and fails if expected.json differs (the oracle is reproducible).
"""
import argparse
import datetime as real_datetime
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "Fixtures")
PINNED = real_datetime.datetime(2024, 7, 26, 13, 5, 9)


class PinnedDatetime(real_datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return PINNED


def render_all(template_dir, conversations):
    import transformers
    import transformers.utils.chat_template_utils as ctu
    from transformers import PreTrainedTokenizerFast

    ctu.datetime = PinnedDatetime          # strftime_now reads ctu.datetime.now()
    ctu._compile_jinja_template.cache_clear()
    tokenizers = {name: PreTrainedTokenizerFast.from_pretrained(os.path.join(FIXTURES, name))
                  for name in ["llama3-tiny", "deepseek-v3-tiny"]}
    cases = []
    for file in sorted(os.listdir(template_dir)):
        if not file.endswith(".jinja"):
            continue
        source = open(os.path.join(template_dir, file), encoding="utf-8").read()
        tok_name = "deepseek-v3-tiny" if file.startswith("deepseek") else "llama3-tiny"
        tok = tokenizers[tok_name]
        for ci, conv in enumerate(conversations):
            for gen in (False, True):
                case = {"template": file, "conversation": ci, "add_generation_prompt": gen, "tokenizer": tok_name}
                try:
                    kwargs = conv.get("variables", {})
                    case["output"] = tok.apply_chat_template(conv["messages"], chat_template=source, tokenize=False,
                                                             add_generation_prompt=gen, **kwargs)
                except Exception as e:      # the template (or jinja2) refused: our renderer must too
                    case["error"] = type(e).__name__
                cases.append(case)
            if file.startswith("error-"):
                break                       # an error template needs one conversation
    special = {name: {k: v for k, v in t.special_tokens_map.items()} for name, t in tokenizers.items()}
    return {"transformers": transformers.__version__, "jinja2": __import__("jinja2").__version__,
            "pinned_time": PINNED.isoformat(), "special_tokens": special, "cases": cases}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--templates", default=os.path.join(HERE, "templates"))
    ap.add_argument("--out", default=os.path.join(HERE, "expected.json"))
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    conversations = json.load(open(os.path.join(HERE, "conversations.json"), encoding="utf-8"))
    doc = render_all(a.templates, conversations)
    text = json.dumps(doc, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    if a.check:
        old = open(a.out, encoding="utf-8").read()
        new, old_doc = json.loads(text), json.loads(old)
        if new["cases"] != old_doc["cases"]:
            print("expected.json differs from a fresh rendering", file=sys.stderr)
            sys.exit(1)
        print(f"{len(doc['cases'])} cases match")
        return
    open(a.out, "w", encoding="utf-8").write(text)
    ok = sum(1 for c in doc["cases"] if "output" in c)
    print(f"wrote {a.out}: {len(doc['cases'])} cases ({ok} rendered, {len(doc['cases']) - ok} errors)")


if __name__ == "__main__":
    main()
