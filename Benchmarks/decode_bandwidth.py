#!/usr/bin/env python3
"""What share of the machine's read bandwidth a decoding step reaches, per model and thread count.

Each round pairs a plain read of as many bytes as one generated token reads (`malbench read`, huge
pages, the best of three prefetch distances) with `malrun bench -p 0 -n N` on the model, in
alternating order (A B, then B A), and reports the model's weight GB/s (tokens/s times
`weight_bytes_per_token`) as a share of the read's. The median over rounds is the figure; the VM's
bandwidth moves from minute to minute, so only pairs taken together count.

  Benchmarks/decode_bandwidth.py [--rounds 4] [--threads 1,2] [--gen 64] [--malrun BIN] M.mal ...

--malrun (repeatable) runs other builds' malrun in the same rounds (one more column each), to
compare kernels in the same minutes.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".build", "release")


def bench(malrun, model, threads, gen):
    out = subprocess.run(
        [malrun, "bench", model, "-p", "0", "-n", str(gen), "--threads", str(threads), "--repetitions", "3", "--json"],
        check=True, capture_output=True, text=True).stdout
    row = json.loads(out)[0]
    return row["avg_ts"], row["weight_bytes_per_token"]


def read(nbytes, threads):
    out = subprocess.run([os.path.join(BIN, "malbench"), "read", str(nbytes), "--threads", str(threads), "--reps", "5"],
                         check=True, capture_output=True, text=True).stdout
    return float(re.search(r": ([0-9.]+) GB/s", out).group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--malrun", action="append", default=[], help="another malrun binary, measured in the same rounds (repeatable)")
    a = ap.parse_args()
    runs = [os.path.join(BIN, "malrun")] + a.malrun
    print("| model | threads | read GB/s | " + " | ".join(f"{'this' if i == 0 else os.path.basename(runs[i])} t/s, GB/s, share" for i in range(len(runs)))
          + " |")
    print("|---|---|---|" + "---|" * len(runs))
    for model in a.models:
        _, nbytes = bench(runs[0], model, 1, 4)
        for threads in [int(t) for t in a.threads.split(",")]:
            reads, rates = [], [[] for _ in runs]
            shares = [[] for _ in runs]
            for k in range(a.rounds):
                order = ["read"] + list(range(len(runs)))
                if k % 2:
                    order.reverse()
                got = {}
                for step in order:
                    got[step] = read(nbytes, threads) if step == "read" else bench(runs[step], model, threads, a.gen)[0]
                reads.append(got["read"])
                for i in range(len(runs)):
                    rates[i].append(got[i])
                    shares[i].append(got[i] * nbytes / 1e9 / got["read"])
            cells = []
            for i in range(len(runs)):
                tps = statistics.median(rates[i])
                cells.append(f"{tps:.1f}, {tps * nbytes / 1e9:.1f}, **{statistics.median(shares[i]):.0%}** "
                             f"({min(shares[i]):.0%}–{max(shares[i]):.0%})")
            print(f"| {os.path.basename(model)} | {threads} | {statistics.median(reads):.1f} | " + " | ".join(cells) + " |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
