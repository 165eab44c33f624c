#!/usr/bin/env bash
# Formats/MAL.md is complete enough for an independent implementation: the files that
# Formats/tools/mal_example.py writes from the spec alone pass `malconv check` (and the model runs
# and tokenizes in malrun), and it reads and verifies every kind of file malconv writes (raw and
# compressed codecs, aliases, FP8 with scale links, absorbed MLA, aux files).
#   Tests/Scripts/format_check.sh PYTHON BIN     (make test: the first python3 with xxhash and zstandard)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${1:-python3}
BIN=${2:-.build/debug}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
tool=Formats/tools/mal_example.py
$PY $tool write "$W/example.mal"
$BIN/malconv check "$W/example.mal" > /dev/null
$PY $tool write-model "$W/model.mal"
$BIN/malconv check "$W/model.mal" > /dev/null
$BIN/malrun "$W/model.mal" -p "Hello" -n 4 > /dev/null 2>&1
[ "$($BIN/malrun tokenize "$W/model.mal" --text "Hi!")" = "[72, 105, 33]" ]
$BIN/malconv convert Samples/gpt2-fortunes -o "$W/gpt2.mal" > /dev/null
$BIN/malconv convert Tests/Fixtures/llama3-tiny -o "$W/llama.mal" --dtype bf16 > /dev/null
$BIN/malconv convert Samples/deepseek-v3-fortunes -o "$W/ds.mal" > /dev/null
$BIN/malconv quantize Samples/deepseek-v3-fortunes -o "$W/ds-fp8.mal" > /dev/null
$BIN/malconv absorb-mla "$W/ds-fp8.mal" -o "$W/ds-absorbed.mal" --mode merged > /dev/null
for f in "$W"/*.mal; do $PY $tool read "$f" > /dev/null; done
echo "format_check: mal_example.py's files pass check and run; it reads $(ls "$W"/*.mal | wc -l) files malconv wrote"
