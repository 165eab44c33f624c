#!/usr/bin/env bash
# `make bench-scale`: random-weight checkpoints at the shapes of real Hub configs (never committed;
# written under WORK, default /tmp/malconv-scale, and removed step by step) through every step a
# user runs, printing the wall time and peak resident memory of each (/usr/bin/time).
#
#   Benchmarks/bench_scale.sh [WORK]          MODELS="llama-3.2-1b llama-3.1-8b" by default
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
W=${1:-/tmp/malconv-scale}
mkdir -p "$W"
step() {   # step NAME CMD...: one row of the table
  local name=$1; shift
  if ! /usr/bin/time -f "%e %M" -o "$W/time.txt" "$@" > "$W/out.txt" 2>&1; then
    echo "| $model | $name | failed: $(tail -1 "$W/out.txt") | |"; return 1
  fi
  read -r s kb < "$W/time.txt"
  printf "| %s | %s | %s s | %d MB |\n" "$model" "$name" "$s" $((kb / 1024))
}
uptime
echo "| model | step | time | peak RSS |"
echo "|---|---|---|---|"
for model in ${MODELS:-llama-3.2-1b llama-3.1-8b}; do
  cfg=Tests/Fixtures/real-configs/$model/config.json
  hf=$W/$model
  step "write the random checkpoint" $BIN/malbench random-checkpoint "$cfg" "$hf"
  printf "| %s | checkpoint size | %s | |\n" "$model" "$(du -sh "$hf" | cut -f1)"
  step "inspect" $BIN/malconv inspect "$hf"
  step "convert to .mal" $BIN/malconv convert "$hf" -o "$W/m.mal" --force
  step "check" $BIN/malconv check "$W/m.mal"
  step "load + 16 tokens (bench tg16)" $BIN/malrun bench "$W/m.mal" -p 0 -n 16 --repetitions 1
  step "quantize to FP8 .mal" $BIN/malconv quantize "$hf" -o "$W/q.mal" --force
  step "dequantize the FP8 .mal to BF16 .mal" $BIN/malconv dequantize "$W/q.mal" -o "$W/d.mal" --force
  rm -f "$W/d.mal"
  step "export .mal to an HF folder" $BIN/malconv export "$W/m.mal" -o "$W/export" --force --max-shard-size 5GB
  rm -rf "$W/export"
  step "verify BF16 vs FP8 (tensors)" $BIN/malconv verify "$W/m.mal" "$W/q.mal"
  step "convert --codec raw" $BIN/malconv convert "$hf" -o "$W/r.mal" --force --codec raw
  step "load mapped + 16 tokens (--mmap)" $BIN/malrun bench "$W/r.mal" --mmap -p 0 -n 16 --repetitions 1
  rm -rf "$hf" "$W"/*.mal
done
uptime
