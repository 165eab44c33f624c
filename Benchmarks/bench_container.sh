#!/usr/bin/env bash
# Container benchmark: conversion throughput, peak memory, compression ratio and decode speed of
# malconv on the trained samples and on a > 1 GB heavy-tailed random BF16 model, beside plain zstd.
# Usage: Benchmarks/bench_container.sh [WORKDIR]   (needs a release build: make build)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/malbench}
BIN=.build/release/malconv
mkdir -p "$W"
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
[ -f "$W/heavy/model.safetensors" ] || python3 Benchmarks/make_heavy_tailed.py "$W/heavy"
# Output to tmpfs when it has room: the figures are then the converter's, not the disk's.
OUT=/dev/shm; [ -w /dev/shm ] || OUT=$W
for m in Samples/gpt2-fortunes Samples/llama3-fortunes Samples/deepseek-v3-fortunes Samples/deepseek-v3-fortunes-fp8 "$W/heavy"; do
  [ -e "$m" ] || continue
  name=$(basename "$m")
  src=$(stat -c %s "$m/model.safetensors")
  for t in 1 2; do
    /usr/bin/time -f "%e %M" -o "$W/time.txt" $BIN convert "$m" -o "$OUT/$name.mal" --threads $t --json --force > "$W/conv.json"
    read secs rss < "$W/time.txt"
    out=$(stat -c %s "$OUT/$name.mal")
    echo "$name threads=$t: source $src B -> $out B (x$(python3 -c "print(f'{$src/$out:.3f}')")), $secs s wall, $(python3 -c "print(f'{$src/max($secs,1e-3)/1e6:.0f}')") MB/s, peak RSS $((rss/1024)) MB"
  done
  python3 - "$W/conv.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for k, v in sorted(d["by_dtype"].items()):
    print(f"    {k}: {v['raw_bytes']} -> {v['stored_bytes']} (x{v['raw_bytes']/max(v['stored_bytes'],1):.3f})")
PY
  for t in 1 2; do echo "    decode+verify: $($BIN check "$OUT/$name.mal" --threads $t | sed 's/.*decoded/decoded/')"; done
  for l in 1 3; do
    s=$(date +%s.%N); c=$(zstd -$l -T1 -c "$m/model.safetensors" | wc -c); e=$(date +%s.%N)
    echo "    plain zstd -$l -T1: x$(python3 -c "print(f'{$src/$c:.3f}')"), $(python3 -c "print(f'{$src/($e-$s)/1e6:.0f}')") MB/s"
  done
  rm -f "$OUT/$name.mal"
done
