#!/usr/bin/env bash
# Builds the fuzz targets (libFuzzer + AddressSanitizer; Package.swift declares them when MAL_FUZZ is set) and runs each one for
# FUZZ_SECONDS seconds (or until FUZZ_RUNS inputs, when that is set and comes first), from its seed corpus (Fuzz/Corpus/<target>,
# never written) plus a working corpus in .build-fuzz/corpus/<target>. A crash, a sanitizer report, a
# leak, a hang (-timeout) or an out-of-memory (-rss_limit_mb) stops that target; its input is saved
# in .build-fuzz/crashes/<target>/ and the script exits 1 after the other targets ran.
#   Fuzz/run.sh [target ...]          (make fuzz FUZZ_SECONDS=N)
set -uo pipefail
cd "$(dirname "$0")/.."
ALL="safetensors index config tokenizer-json tokenizer-config mal"
TARGETS=${*:-$ALL}
SECONDS_EACH=${FUZZ_SECONDS:-60}
SCRATCH=.build-fuzz
export MAL_FUZZ=1
# SwiftPM passes -sanitize=fuzzer to the executables only: the libraries get coverage explicitly.
build=(swift build --scratch-path "$SCRATCH" --sanitize=fuzzer --sanitize=address
       -Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table -Xcc -fsanitize=fuzzer-no-link)
for t in $TARGETS; do
  "${build[@]}" --product "fuzz-$t" 2>&1 | grep -Ev "ld.gold: warning: Cannot export local symbol"
  [ "${PIPESTATUS[0]}" = 0 ] || exit 1
done
BIN=$("${build[@]}" --show-bin-path)
# The Swift backtracer fights ASan after a crash (and can hang); huge failable allocations must return nil.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1:detect_leaks=1}
failed=0
for t in $TARGETS; do
  mkdir -p "$SCRATCH/corpus/$t" "$SCRATCH/crashes/$t"
  limit=(-max_total_time="$SECONDS_EACH")
  [ -n "${FUZZ_RUNS:-}" ] && limit+=(-runs="$FUZZ_RUNS")
  log="$SCRATCH/crashes/$t/last.log"
  "$BIN/fuzz-$t" "${limit[@]}" -timeout=10 -rss_limit_mb=4096 -max_len=262144 -print_final_stats=1 \
      -artifact_prefix="$SCRATCH/crashes/$t/" "$SCRATCH/corpus/$t" "Fuzz/Corpus/$t" >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*')
  peak=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$')
  corpus=$(ls "$SCRATCH/corpus/$t" | wc -l)
  if [ $rc = 0 ]; then
    printf 'fuzz %-17s ok: %9s inputs in %5s s, corpus %5s, peak %s MB\n' "$t" "${runs:-?}" "${secs:-?}" "$corpus" "${peak:-?}"
  else
    failed=1
    printf 'fuzz %-17s FAILED (exit %s): see %s and the input in %s\n' "$t" "$rc" "$log" "$SCRATCH/crashes/$t/"
    grep -E 'ERROR|SUMMARY|#[0-9]+ .*(Mal|Fuzz)' "$log" | head -12 >&2
  fi
done
exit $failed
