#!/usr/bin/env bash
# Records what the tools print and write for every fixture and sample, so that two builds (the
# commit before a redesign and the one after it) can be compared byte for byte:
#
#   Benchmarks/behaviour_snapshot.sh OLD_BIN /tmp/snap-old
#   Benchmarks/behaviour_snapshot.sh .build/release /tmp/snap-new
#   diff -r /tmp/snap-old /tmp/snap-new && echo identical
#
# Per model: `malconv inspect/convert/check/quantize/absorb-mla/export/verify --json`, `malrun
# info --json`, `malrun logits` (the safetensors bytes, MTP logits where the model has them),
# greedy `malrun generate`, `tokenize`, and every entry of every `.mal` written. Fields that
# measure time or name the scratch folder are blanked (the only ones that may differ).
set -u
BIN=${1:?usage: behaviour_snapshot.sh BIN_DIR OUT_DIR}
OUT=${2:?usage: behaviour_snapshot.sh BIN_DIR OUT_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
rm -rf "$OUT" && mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
MODELS="Tests/Fixtures/gpt2-tiny Tests/Fixtures/llama3-tiny Tests/Fixtures/deepseek-v3-tiny Tests/Fixtures/deepseek-v3-fp8
Tests/Fixtures/deepseek-v2-lite-tiny Samples/gpt2-fortunes Samples/llama3-fortunes Samples/deepseek-v3-fortunes
Samples/deepseek-v3-fortunes-fp8"

# Blanks timings and scratch paths in JSON (and any text) so that only behaviour is compared.
normalise() {
  sed -E -e "s#$WORK#WORK#g" -e "s#${WORK//\//\\\\/}#WORK#g" -e "s#$ROOT#ROOT#g" -e "s#${ROOT//\//\\\\/}#ROOT#g" \
    -e 's/"(seconds|elapsed|time|[a-z_]*_seconds|[a-z_]*_ms|[a-z_]*_per_s|throughput[a-z_]*)" *: *[-0-9.e+]+/"\1": 0/g' \
    -e 's/[0-9.]+ (s|ms|MB\/s|tok\/s|tokens\/s)\b/T \1/g'
}

# Every entry of a .mal (name, dtype code, codec, shape, content hash) and its metadata. The
# binary tokenizer is listed without its hash: builds before 2026-12-02 wrote its JSON tail with
# an unstable key order, so two conversions by the same build differed there.
entries() {
  "$PY" - "$1" <<'PYEOF'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
_, _, _, _, moff, mlen, toff, _, _, _ = struct.unpack_from("<HHIQQQQQQQ", b, 8)
print(json.dumps(json.loads(b[moff:moff + mlen]), sort_keys=True))
p = toff
count, _ = struct.unpack_from("<II", b, p); p += 8
for _ in range(count):
    nlen, dcode, codec, rank, tflags, _, csize, link, rawlen, thash, nchunks, _ = struct.unpack_from("<HBBBBHIIQQII", b, p); p += 40
    shape = list(struct.unpack_from(f"<{rank}Q", b, p)); p += 8 * rank
    name = b[p:p + nlen].decode(); p += nlen + 24 * nchunks
    print(name, dcode, codec, shape, tflags, link, rawlen, "-" if name == "aux/tokenizer.bin" else thash)
PYEOF
}

run() {   # run NAME CMD...: stdout+stderr and the exit status, normalised
  local name=$1; shift
  { "$@" 2>&1; echo "exit $?"; } | normalise > "$OUT/$name"
}

for m in $MODELS; do
  n=$(basename "$m")
  src="$ROOT/$m"
  run "$n.inspect.json" "$BIN/malconv" inspect "$src" --json
  run "$n.convert.json" "$BIN/malconv" convert "$src" -o "$WORK/$n.mal" --json
  run "$n.check.json" "$BIN/malconv" check "$WORK/$n.mal" --json
  run "$n.info.json" "$BIN/malrun" info "$WORK/$n.mal" --json
  run "$n.info-hf.json" "$BIN/malrun" info "$src" --json
  run "$n.export.json" "$BIN/malconv" export "$WORK/$n.mal" -o "$WORK/$n-export" --json
  (cd "$WORK/$n-export" 2>/dev/null && sha256sum $(ls | sort)) > "$OUT/$n.export.sha256"
  run "$n.quantize.json" "$BIN/malconv" quantize "$src" -o "$WORK/$n-fp8.mal" --json
  run "$n.quantize-1x128.json" "$BIN/malconv" quantize "$src" -o "$WORK/$n-fp8b.mal" --block 1x128 --json
  run "$n.check-fp8.json" "$BIN/malconv" check "$WORK/$n-fp8.mal" --json
  run "$n.verify.json" "$BIN/malconv" verify "$src" "$WORK/$n-fp8.mal" --json
  run "$n.tokenize.json" "$BIN/malrun" tokenize "$WORK/$n.mal" --text "The secret of success is" --special
  ids=$("$BIN/malrun" tokenize "$WORK/$n.mal" --text "The secret of success is" --special 2>/dev/null | tr -d '[] \n')
  [ -n "$ids" ] || ids=1,2,3
  for f in "$n.mal" "$n-fp8.mal"; do
    run "$f.logits.out" "$BIN/malrun" logits "$WORK/$f" --ids "$ids" -o "$WORK/$f.logits.safetensors"
    sha256sum < "$WORK/$f.logits.safetensors" > "$OUT/$f.logits.sha256" 2>/dev/null
    run "$f.generate.txt" "$BIN/malrun" generate "$WORK/$f" -p "The secret of success is" -n 16
  done
  if grep -q '"num_nextn_predict_layers": *[1-9]' "$src/config.json"; then
    run "$n.mtp-logits.out" "$BIN/malrun" logits "$WORK/$n.mal" --ids "$ids" --mtp -o "$WORK/$n.mtp.safetensors"
    sha256sum < "$WORK/$n.mtp.safetensors" > "$OUT/$n.mtp-logits.sha256"
    run "$n.speculative.txt" "$BIN/malrun" generate "$WORK/$n.mal" -p "The secret of success is" -n 16 --speculative mtp
  fi
  if grep -q '"kv_lora_rank"' "$src/config.json"; then
    for mode in split merged; do
      run "$n.absorb-$mode.json" "$BIN/malconv" absorb-mla "$WORK/$n.mal" -o "$WORK/$n-$mode.mal" --mode "$mode" --json
      run "$n-$mode.logits.out" "$BIN/malrun" logits "$WORK/$n-$mode.mal" --ids "$ids" -o "$WORK/$n-$mode.logits.safetensors"
      sha256sum < "$WORK/$n-$mode.logits.safetensors" > "$OUT/$n-$mode.logits.sha256" 2>/dev/null
    done
  fi
  for f in "$WORK"/*.mal; do entries "$f" > "$OUT/$(basename "$f").entries" 2>&1; done
  rm -rf "$WORK"/*
done
echo "snapshot in $OUT ($(ls "$OUT" | wc -l) files)"
