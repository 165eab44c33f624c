#!/usr/bin/env bash
# `make bench-scale`: random-weight checkpoints at the shapes of real Hub configs (never committed;
# written under WORK, default /tmp/malconv-scale, and removed step by step) through every step a
# user runs, printing the wall time and peak resident memory of each (/usr/bin/time).
#
#   Benchmarks/bench_scale.sh [WORK]          MODELS="llama-3.2-1b llama-3.1-8b deepseek-v3" by default
# (about 80 GB of free disk and 25 minutes for all three); MODELS=deepseek-v3-over-memory below
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
# DeepSeek-V3 cut to 1 dense + 1 MoE layer with every real dimension (hidden 7168, 128 heads,
# q_lora 1536, kv_lora 512, 256 experts top-8 in 8 groups), FP8 in the release layout: 15.8 GB.
cut="--layers 2 --set first_k_dense_replace=1 --set num_nextn_predict_layers=0 --fp8"
drop() { [ -w /proc/sys/vm/drop_caches ] && sync && echo 3 > /proc/sys/vm/drop_caches; }   # cold: root only
# deepseek-v3-over-memory (not in the default list: 55 GB of disk, 8 minutes): the same cut with
# 3 layers, 27.4 GB of FP8, more than this machine's memory; refused without --mmap, run with it.
over_memory() {
  local cfg=Tests/Fixtures/real-configs/deepseek-v3/config.json hf=$W/$model
  step "write the random checkpoint (3-layer cut, FP8)" $BIN/malbench random-checkpoint "$cfg" "$hf" ${cut/--layers 2/--layers 3}
  printf "| %s | checkpoint size | %s | |\n" "$model" "$(du -sh "$hf" | cut -f1)"
  step "convert --codec raw" $BIN/malconv convert "$hf" -o "$W/r.mal" --force --codec raw
  rm -rf "$hf"
  if $BIN/malrun bench "$W/r.mal" -p 0 -n 16 --repetitions 1 > "$W/out.txt" 2>&1; then
    echo "| $model | load + 16 tokens without --mmap | ran: not larger than memory here | |"
  else
    echo "| $model | load + 16 tokens without --mmap | refused: $(grep -o 'needs [^;]*' "$W/out.txt" | head -1) | |"
  fi
  step "load mapped + 16 tokens (--mmap)" $BIN/malrun bench "$W/r.mal" --mmap -p 0 -n 16 --repetitions 1
  grep "tg16" "$W/out.txt" | sed 's/^/    /'
  rm -f "$W/r.mal"
}
for model in ${MODELS:-llama-3.2-1b llama-3.1-8b deepseek-v3}; do
  if [ "$model" = deepseek-v3-over-memory ]; then over_memory; continue; fi
  cfg=Tests/Fixtures/real-configs/$model/config.json
  hf=$W/$model
  if [ "$model" = deepseek-v3 ]; then
    step "write the random checkpoint (2-layer cut, FP8)" $BIN/malbench random-checkpoint "$cfg" "$hf" $cut
  else
    step "write the random checkpoint" $BIN/malbench random-checkpoint "$cfg" "$hf"
  fi
  printf "| %s | checkpoint size | %s | |\n" "$model" "$(du -sh "$hf" | cut -f1)"
  step "inspect" $BIN/malconv inspect "$hf"
  step "convert to .mal" $BIN/malconv convert "$hf" -o "$W/m.mal" --force
  step "check" $BIN/malconv check "$W/m.mal"
  drop || true
  step "load + 16 tokens (bench tg16; cold if root)" $BIN/malrun bench "$W/m.mal" -p 0 -n 16 --repetitions 1
  step "load + 16 tokens again" $BIN/malrun bench "$W/m.mal" -p 0 -n 16 --repetitions 1
  if [ "$model" = deepseek-v3 ]; then
    step "absorb-mla" $BIN/malconv absorb-mla "$W/m.mal" -o "$W/a.mal" --force
    rm -f "$W/a.mal"
  else
    step "quantize to FP8 .mal" $BIN/malconv quantize "$hf" -o "$W/q.mal" --force
    step "dequantize the FP8 .mal to BF16 .mal" $BIN/malconv dequantize "$W/q.mal" -o "$W/d.mal" --force
    rm -f "$W/d.mal"
    step "export .mal to an HF folder" $BIN/malconv export "$W/m.mal" -o "$W/export" --force --max-shard-size 5GB
    rm -rf "$W/export"
    step "verify BF16 vs FP8 (tensors)" $BIN/malconv verify "$W/m.mal" "$W/q.mal"
  fi
  rm -f "$W"/m.mal "$W"/q.mal
  step "convert --codec raw" $BIN/malconv convert "$hf" -o "$W/r.mal" --force --codec raw
  drop || true
  step "load mapped + 16 tokens (--mmap; cold if root)" $BIN/malrun bench "$W/r.mal" --mmap -p 0 -n 16 --repetitions 1
  step "load mapped + 16 tokens again" $BIN/malrun bench "$W/r.mal" --mmap -p 0 -n 16 --repetitions 1
  rm -rf "$hf" "$W"/*.mal
done
uptime
