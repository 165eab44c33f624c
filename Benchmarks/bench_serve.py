#!/usr/bin/env python3
"""What serving costs over `malrun generate`, in the same minutes: tokens/s of generate, of
`/v1/completions` (whole answer, and streamed, end to end through HTTP with the openai client),
and the prompt tokens a resent conversation runs.

    python3 Benchmarks/bench_serve.py MALRUN_BIN MODEL [-n 256] [--pairs 3]
"""
import argparse
import re
import statistics
import subprocess
import threading
import time

import openai

ap = argparse.ArgumentParser()
ap.add_argument("bin")
ap.add_argument("model")
ap.add_argument("-n", type=int, default=256)
ap.add_argument("--pairs", type=int, default=3)
a = ap.parse_args()
PROMPT = "The secret of success is"


def generate_tps():
    err = subprocess.run([a.bin, "generate", a.model, "-p", PROMPT, "-n", str(a.n), "--threads", "2"],
                         capture_output=True, text=True, check=True).stderr
    return float(re.search(r"generated \d+ tokens, ([\d.]+) tok/s", err).group(1))


server = subprocess.Popen([a.bin, "serve", a.model, "--port", "0", "--threads", "2"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
port = None
for line in server.stderr:
    m = re.search(r":(\d+)/v1", line)
    if m:
        port = int(m.group(1))
        threading.Thread(target=server.stderr.read, daemon=True).start()
        break
client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
name = client.models.list().data[0].id
rows = {"generate (CLI)": [], "serve, whole answer (server timing)": [], "serve, whole answer (client wall)": [],
        "serve, streamed (client wall)": []}
try:
    for _ in range(a.pairs):
        rows["generate (CLI)"].append(generate_tps())
        t = time.perf_counter()
        # A different prompt each time: the cache would otherwise skip the prompt.
        r = client.completions.create(model=name, prompt=PROMPT + f" {time.time()}", max_tokens=a.n, temperature=0)
        wall = time.perf_counter() - t
        n = r.usage.completion_tokens
        rows["serve, whole answer (server timing)"].append(r.model_extra["timings"]["predicted_per_second"])
        rows["serve, whole answer (client wall)"].append(n / wall)
        t = time.perf_counter()
        usage = [c.usage for c in client.completions.create(model=name, prompt=PROMPT + f" {time.time()}", max_tokens=a.n, temperature=0,
                                                            stream=True, stream_options={"include_usage": True}) if c.usage]
        rows["serve, streamed (client wall)"].append(usage[0].completion_tokens / (time.perf_counter() - t))
    msgs = [{"role": "user", "content": PROMPT}]
    r1 = client.chat.completions.create(model=name, messages=msgs, max_tokens=64, temperature=0)
    msgs += [{"role": "assistant", "content": r1.choices[0].message.content}, {"role": "user", "content": "And failure?"}]
    r2 = client.chat.completions.create(model=name, messages=msgs, max_tokens=8, temperature=0)
finally:
    server.terminate()
    server.wait()
print(f"{a.model}, {a.n} tokens, 2 threads, {a.pairs} alternating rounds (median):")
for k, v in rows.items():
    print(f"  {k:40s} {statistics.median(v):8.1f} tok/s   ({', '.join(f'{x:.0f}' for x in v)})")
print(f"  resent conversation: {r2.usage.prompt_tokens} prompt tokens, {r2.usage.prompt_tokens_details.cached_tokens} from the cache, "
      f"{r2.model_extra['timings']['prompt_n']} run")
