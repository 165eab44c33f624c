#!/usr/bin/env bash
# A plain `swift build -c release` against `make build`, in same-minute A B B A pairs:
#
#   Benchmarks/build_pairs.sh MODEL.mal...        (make_random_model.py makes the usual shapes)
#
# Builds malrun both ways (`.build/release` with -target-cpu/-march native, `.build-plain/release`
# with no CPU flags), then for each model, 2 and 1 threads, runs `malrun bench -p 512 -n 64` as
# make, plain, plain, make and prints tokens/s and the plain ÷ make ratio of the two means.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 MODEL.mal..." >&2; exit 2; }
swift build -c release -Xswiftc -target-cpu -Xswiftc native -Xcc -march=native --product malrun > /dev/null
swift build -c release --build-path .build-plain --product malrun > /dev/null
uptime
bench() {   # bench BIN MODEL THREADS -> "pp tg"
  "$1/malrun" bench "$2" -p 512 -n 64 --repetitions 3 --threads "$3" --json 2>/dev/null \
    | python3 -c "import json, sys; d = json.load(sys.stdin); print(*('%.2f' % x['avg_ts'] for x in d))"
}
echo "| model | threads | pp512 make / plain | tg64 make / plain | plain ÷ make (pp, tg) |"
echo "|---|---|---|---|---|"
for m in "$@"; do
  for t in 2 1; do
    a1=$(bench .build/release "$m" "$t"); b1=$(bench .build-plain/release "$m" "$t")
    b2=$(bench .build-plain/release "$m" "$t"); a2=$(bench .build/release "$m" "$t")
    python3 - "$(basename "$m")" "$t" "$a1" "$a2" "$b1" "$b2" <<'PY'
import sys
name, t, *runs = sys.argv[1:]
(a1, a2, b1, b2) = [list(map(float, r.split())) for r in runs]
a = [(x + y) / 2 for x, y in zip(a1, a2)]; b = [(x + y) / 2 for x, y in zip(b1, b2)]
print(f"| {name} | {t} | {a[0]:.1f} / {b[0]:.1f} | {a[1]:.2f} / {b[1]:.2f} | {b[0] / a[0]:.2f}, {b[1] / a[1]:.2f} |")
PY
  done
done
uptime
