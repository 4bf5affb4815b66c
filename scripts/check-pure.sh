#!/usr/bin/env bash
# The pure crates (proofs, regions) must not depend on I/O, async runtimes,
# networking, storage, clocks or randomness sources (style.md: "folder = crate =
# trust boundary"). Time, randomness and trust roots are arguments.
set -euo pipefail
cd "$(dirname "$0")/.."

forbidden='^(tokio|async-std|smol|mio|sled|libp2p|libp2p-[a-z-]+|axum|hyper|reqwest|tower|getrandom|rand|chrono|time|socket2)$'
status=0
for crate in proofs regions; do
  deps=$(cargo tree -p "$crate" -e normal --prefix none --format '{p}' --locked | awk '{print $1}' | sort -u)
  bad=$(echo "$deps" | grep -E "$forbidden" || true)
  if [ -n "$bad" ]; then
    echo "check-pure: $crate depends on I/O or ambient-authority crates:" $bad
    status=1
  fi
  # Source-level guard: no clock, no OS randomness, no network, and file access only
  # in regions' one loader.
  hits=$(grep -rnE 'std::(net|process|thread)|SystemTime|Instant::now|OsRng|thread_rng|getrandom' "$crate/src" || true)
  if [ -n "$hits" ]; then
    echo "check-pure: $crate/src uses a clock, randomness or network:"; echo "$hits"; status=1
  fi
  fs=$(grep -rln 'std::fs' "$crate/src" || true)
  allowed=""
  [ "$crate" = regions ] && allowed="regions/src/load.rs"
  for f in $fs; do
    if [ "$f" != "$allowed" ]; then
      echo "check-pure: $f touches the file system"; status=1
    fi
  done
done
[ $status -eq 0 ] && echo "check-pure: proofs and regions are pure"
exit $status
