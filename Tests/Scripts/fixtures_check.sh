#!/usr/bin/env bash
# Compares the repository's copies of the reference data with the shared originals, byte for byte and
# both ways (a file missing on either side is a difference):
#   Tests/Fixtures              <- SHARED/fixtures            (minus real-configs/, checked next)
#   Tests/Fixtures/real-configs <- SHARED/reference/real-configs
#   Samples                     <- SHARED/samples
# SHARED is $MAL_SHARED or the folder `shared` beside the checkout. Exit 0 identical, 1 different,
# 2 no originals to compare with.
set -euo pipefail
cd "$(dirname "$0")/../.."
shared=${MAL_SHARED:-../shared}
if [ ! -d "$shared/fixtures" ]; then echo "fixtures-check: no $shared/fixtures to compare with" >&2; exit 2; fi
status=0
compare() {  # original copy [excluded-top-level-entry]
  if ! diff -r ${3:+-x "$3"} "$1" "$2" >/dev/null; then
    echo "fixtures-check: $2 differs from $1:" >&2
    diff -rq ${3:+-x "$3"} "$1" "$2" >&2 || true
    status=1
  fi
}
compare "$shared/fixtures" Tests/Fixtures real-configs
compare "$shared/reference/real-configs" Tests/Fixtures/real-configs
compare "$shared/samples" Samples
[ $status = 0 ] && echo "fixtures-check: Tests/Fixtures and Samples are byte-identical to $shared"
exit $status
