#!/usr/bin/env python3
"""Same-minute comparison of `malrun bench` with llama.cpp's `llama-bench` on the same weights.

    compare_llama_bench.py --llama-bench PATH [--malrun .build/release/malrun] \\
        --pair NAME=MODEL.gguf,MODEL.mal [--pair ...] [--threads 2,1] [--tests pp128,pp512,tg64] \\
        [--rounds 4] [--repetitions 2] [--precision exact|fast] [--json OUT.json]

For every pair, thread count and test it runs A B B A rounds (llama-bench first in odd rounds,
malrun first in even ones), each tool `--repetitions` times per run, and prints the ratio
malrun / llama-bench as the median of the rounds with its range. Nothing is built or fetched:
the user supplies a llama-bench binary and the GGUF files (for example made with llama.cpp's
own converter and `llama-quantize ... Q8_0`); the `.mal` files come from `malconv`.
Check `uptime` first: only quiet, same-minute pairs mean anything on a shared machine.
"""
import argparse, json, os, statistics, subprocess, sys, time


def parse_test(t):
    kind, n = t[:2], int(t[2:])
    if kind not in ("pp", "tg") or n <= 0:
        sys.exit(f"--tests: '{t}' is not ppN or tgN")
    return kind, n


def llama_rate(binary, gguf, threads, kind, n, reps):
    p, g = (n, 0) if kind == "pp" else (0, n)
    out = subprocess.run([binary, "-m", gguf, "-t", str(threads), "-p", str(p), "-n", str(g), "-r", str(reps), "-o", "json"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"llama-bench failed on {gguf}: {out.stderr.strip()[-400:]}")
    return json.loads(out.stdout)[0]["avg_ts"]


def malrun_rate(binary, mal, threads, kind, n, reps, precision):
    p, g = (n, 0) if kind == "pp" else (0, n)
    extra = ["--precision", precision] if precision else []  # else bench's own default (fast)
    out = subprocess.run([binary, "bench", mal, "--threads", str(threads), "-p", str(p), "-n", str(g), "--repetitions", str(reps),
                          *extra, "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"malrun bench failed on {mal}: {out.stderr.strip()[-400:]}")
    return json.loads(out.stdout)[0]["avg_ts"]


def main():
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--llama-bench", required=True)
    a.add_argument("--malrun", default=".build/release/malrun")
    a.add_argument("--pair", action="append", required=True, help="NAME=MODEL.gguf,MODEL.mal")
    a.add_argument("--threads", default="2,1")
    a.add_argument("--tests", default="pp128,pp512,tg64")
    a.add_argument("--rounds", type=int, default=4, help="A B B A rounds (even: each tool first as often)")
    a.add_argument("--repetitions", type=int, default=2)
    a.add_argument("--precision", choices=["exact", "fast"], help="malrun's prompt precision (default: bench's, fast)")
    a.add_argument("--json", help="also write every measurement here")
    o = a.parse_args()
    pairs = []
    for p in o.pair:
        name, _, files = p.partition("=")
        gguf, _, mal = files.partition(",")
        if not name or not gguf or not mal:
            sys.exit(f"--pair '{p}': expected NAME=MODEL.gguf,MODEL.mal")
        for f in (gguf, mal):
            if not os.path.exists(f):
                sys.exit(f"--pair '{p}': {f} does not exist")
        pairs.append((name, gguf, mal))
    threads = [int(t) for t in o.threads.split(",")]
    tests = [parse_test(t) for t in o.tests.split(",")]
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}, precision {o.precision or 'bench default'}, "
          f"{o.rounds} rounds x {o.repetitions} repetitions")
    header = " | ".join(f"{k}{n}, {t} thr" for t in threads for k, n in tests)
    print(f"| malrun / llama.cpp | {header} |")
    print("|---|" + "---|" * (len(threads) * len(tests)))
    records = []
    for name, gguf, mal in pairs:
        cells = []
        for t in threads:
            for kind, n in tests:
                ratios = []
                for r in range(o.rounds):
                    order = ["llama", "malrun"] if r % 2 == 0 else ["malrun", "llama"]
                    rates = {}
                    for tool in order:
                        rates[tool] = (llama_rate(o.llama_bench, gguf, t, kind, n, o.repetitions) if tool == "llama"
                                       else malrun_rate(o.malrun, mal, t, kind, n, o.repetitions, o.precision))
                    ratios.append(rates["malrun"] / rates["llama"])
                    records.append(dict(model=name, threads=t, test=f"{kind}{n}", round=r + 1, **{f"{k}_ts": v for k, v in rates.items()}))
                cells.append(f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    if o.json:
        with open(o.json, "w") as f:
            json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
