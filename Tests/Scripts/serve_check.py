#!/usr/bin/env python3
"""Drives `malrun serve` with the official `openai` client (PyPI), as an editor or agent would.

    python3 Tests/Scripts/serve_check.py MALRUN_BIN MODEL [OPTIONS...]

OPTIONS (for example `--speculative mtp`) go to both `serve` and `generate`.

Starts the server on a free loopback port and checks: /v1/models; chat with and without
streaming; completions with logprobs and stop strings; that greedy text equals `malrun
generate`'s for the same prompt; the KV cache reused by a follow-up turn; seeded sampling; two
concurrent clients; a client that disconnects mid-stream (its generation is cancelled);
malformed JSON, bad fields, an unknown model and an over-long prompt (4xx with OpenAI error
objects); and a second server with --api-key. Exits non-zero on the first failure.
"""
import http.client
import json
import re
import subprocess
import sys
import threading
import time

import openai

BIN, MODEL, OPTIONS = sys.argv[1], sys.argv[2], sys.argv[3:]
PROMPT = "The secret of success is"
checks = 0


def check(cond, what):
    global checks
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    checks += 1


def start(*extra):
    p = subprocess.Popen([BIN, "serve", MODEL, "--port", "0", "--threads", "2", *OPTIONS, *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        m = re.search(r"on http://127\.0\.0\.1:(\d+)/v1", line)
        if m:
            # Keep reading stderr so the server never blocks on a full pipe.
            threading.Thread(target=lambda: p.stderr.read(), daemon=True).start()
            return p, int(m.group(1))
    raise SystemExit(f"the server did not start: {p.wait()}")


def raw(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request(method, path, body=body, headers=headers or {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def generate_text(prompt, n):
    out = subprocess.run([BIN, "generate", MODEL, "-p", prompt, "-n", str(n), "--threads", "2", *OPTIONS],
                         capture_output=True, text=True, check=True).stdout
    check(out.startswith(prompt) and out.endswith("\n"), "malrun generate prints the prompt, the text and a newline")
    return out[len(prompt):-1]


server, port = start()
try:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=120)
    name = client.models.list().data[0].id
    check(name == MODEL.rstrip("/").split("/")[-1].removesuffix(".mal"), f"/v1/models lists the model ({name})")

    # Greedy completions equal malrun generate's text.
    want = generate_text(PROMPT, 24)
    c = client.completions.create(model=name, prompt=PROMPT, max_tokens=24, temperature=0)
    check(c.choices[0].text == want, f"greedy completion equals malrun generate: {c.choices[0].text!r} vs {want!r}")
    check(c.choices[0].finish_reason == "length" and c.usage.completion_tokens == 24, "finish_reason length, 24 tokens")

    # Chat, without and with streaming (the sample has no template: the plain one sends the text).
    msgs = [{"role": "user", "content": PROMPT}]
    r = client.chat.completions.create(model=name, messages=msgs, max_tokens=24, temperature=0)
    text = r.choices[0].message.content
    check(text == want, f"greedy chat equals malrun generate: {text!r}")
    check(r.usage.prompt_tokens_details.cached_tokens > 0, "the repeated prompt came from the KV cache")
    pieces, finish, usage = [], None, None
    for chunk in client.chat.completions.create(model=name, messages=msgs, max_tokens=24, temperature=0, stream=True,
                                                stream_options={"include_usage": True}):
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    check("".join(pieces) == text, "streamed chat deltas join to the non-streamed answer")
    check(finish == "length" and usage is not None and usage.completion_tokens == 24, "stream ends with finish_reason and usage")

    # A follow-up turn: only the new tokens run.
    msgs2 = msgs + [{"role": "assistant", "content": text}, {"role": "user", "content": "And failure?"}]
    r2 = client.chat.completions.create(model=name, messages=msgs2, max_tokens=8, temperature=0)
    cached = r2.usage.prompt_tokens_details.cached_tokens
    first = r.usage.prompt_tokens + r.usage.completion_tokens
    check(cached >= first - 2, f"the second turn reuses the first ({cached} of {r2.usage.prompt_tokens} cached, the first turn had {first})")

    # Logprobs on completions: the greedy token is the most likely one.
    c = client.completions.create(model=name, prompt=PROMPT, max_tokens=6, temperature=0, logprobs=3)
    lp = c.choices[0].logprobs
    check(len(lp.tokens) == 6 and len(lp.token_logprobs) == 6 and all(len(t) == 3 for t in lp.top_logprobs), "6 tokens, 3 alternatives each")
    check(all(abs(lp.token_logprobs[i] - max(lp.top_logprobs[i].values())) < 1e-5 for i in range(6)), "greedy picks the top logprob")
    check(all(x <= 0 for x in lp.token_logprobs) and "".join(lp.tokens) == c.choices[0].text, "logprobs are log-probabilities of the text's tokens")
    r = client.chat.completions.create(model=name, messages=msgs, max_tokens=4, temperature=0, logprobs=True, top_logprobs=2)
    check(len(r.choices[0].logprobs.content) == 4 and len(r.choices[0].logprobs.content[0].top_logprobs) == 2, "chat logprobs")

    # Stop strings end the text before them.
    stop = want[want.index(" ", 3):][:4] if " " in want[3:] else want[2:5]
    c = client.completions.create(model=name, prompt=PROMPT, max_tokens=24, temperature=0, stop=[stop])
    check(c.choices[0].finish_reason == "stop" and c.choices[0].text == want[:want.index(stop)], f"stop {stop!r}: {c.choices[0].text!r}")

    # Seeded sampling repeats; another seed differs (over 40 tokens it would be a coincidence).
    a = [client.completions.create(model=name, prompt=PROMPT, max_tokens=40, temperature=1.0, seed=s).choices[0].text for s in (7, 7, 8)]
    check(a[0] == a[1] and a[0] != a[2], "the same seed gives the same text, another seed another")

    # Two concurrent clients: both served (one at a time), each with its own greedy answer.
    prompts = [PROMPT, "Never trust a"]
    expected = {p: generate_text(p, 16) for p in prompts}
    results = {}

    def ask(p):
        results[p] = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0).completions.create(
            model=name, prompt=p, max_tokens=16, temperature=0).choices[0].text
    threads = [threading.Thread(target=ask, args=(p,)) for p in prompts]
    [t.start() for t in threads]
    [t.join() for t in threads]
    check(results == expected, f"concurrent clients get their own answers: {results}")

    # A client that disconnects mid-stream: its generation is cancelled.
    before = json.loads(raw(port, "GET", "/health")[1])["requests_cancelled"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/v1/completions", body=json.dumps({"prompt": PROMPT, "max_tokens": 2000, "stream": True}),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    check(resp.status == 200 and resp.readline().startswith(b"data: "), "the stream starts")
    conn.sock.close()
    conn.close()
    for _ in range(600):
        h = json.loads(raw(port, "GET", "/health")[1])
        if h["requests_cancelled"] > before and h["requests_in_progress"] == 0:
            break
        time.sleep(0.1)
    check(h["requests_cancelled"] == before + 1, f"the disconnected stream was cancelled: {h}")
    c = client.completions.create(model=name, prompt=PROMPT, max_tokens=24, temperature=0)
    check(c.choices[0].text == want, "the server answers normally afterwards")

    # Bad requests: 4xx with OpenAI error objects.
    status, body = raw(port, "POST", "/v1/chat/completions", b'{"messages": [')
    err = json.loads(body)["error"]
    check(status == 400 and "not valid JSON" in err["message"] and err["type"] == "invalid_request_error", f"malformed JSON: {status} {err}")
    for bad, param in [({"messages": "hi"}, "messages"), ({"messages": msgs, "temperature": "hot"}, "temperature"),
                       ({"messages": msgs, "max_tokens": -1}, "max_tokens"), ({"messages": msgs, "n": 2}, "n"),
                       ({"messages": [{"content": "no role"}]}, "messages[0].role"), ({"messages": msgs, "top_p": 0}, "top_p")]:
        status, body = raw(port, "POST", "/v1/chat/completions", json.dumps(bad).encode())
        check(status == 400 and json.loads(body)["error"]["param"] == param, f"{bad}: 400 naming {param}, got {status} {body[:200]!r}")
    try:
        client.chat.completions.create(model="no-such-model", messages=msgs)
        check(False, "an unknown model is refused")
    except openai.NotFoundError as e:
        check(e.body["code"] == "model_not_found", "an unknown model is a 404 model_not_found")
    try:
        client.completions.create(model=name, prompt="word " * 5000, max_tokens=4)
        check(False, "an over-long prompt is refused")
    except openai.BadRequestError as e:
        check(e.body["code"] == "context_length_exceeded" and "context length is" in e.body["message"], f"over-long prompt: {e.body}")
    status, body = raw(port, "GET", "/v1/nothing")
    check(status == 404 and "error" in json.loads(body), "an unknown route is a 404 error object")
    status, body = raw(port, "POST", "/v1/completions", b"x" * (17 << 20))
    check(status == 413, f"a body over the limit is refused: {status}")
    check(json.loads(raw(port, "GET", "/health")[1])["status"] == "ok", "the server is still healthy")
finally:
    server.terminate()
    server.wait(timeout=30)

# A server with an API key checks the bearer token.
server, port = start("--api-key", "sekret")
try:
    try:
        openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0).models.list()
        check(False, "a wrong key is refused")
    except openai.AuthenticationError:
        check(True, "a wrong key is a 401")
    ok = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sekret", max_retries=0)
    check(ok.completions.create(model=ok.models.list().data[0].id, prompt=PROMPT, max_tokens=3).usage.completion_tokens == 3,
          "the right key is served")
finally:
    server.terminate()
    server.wait(timeout=30)
print(f"serve check: {checks} checks passed ({' '.join([MODEL] + OPTIONS)})")
