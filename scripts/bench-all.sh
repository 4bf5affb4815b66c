#!/usr/bin/env bash
# Every benchmark of Tongban from one command: the `proofs` micro-benchmarks
# (criterion, each beside its floor), then every gateway benchmark (ledger,
# matches, bundles, inspector) with `tongban bench all`. Writes
# docs/bench-all-DATE.json and prints Markdown tables for docs/performance.md.
#
#   scripts/bench-all.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
day="$(date -u +%F)"
cargo build --release --locked -p gateway
if [ "${1:-}" != "--quick" ]; then
    cargo bench --locked -p proofs
    python3 scripts/bench-report.py target/criterion
fi
target/release/tongban bench all ${1:+"$1"} --json "docs/bench-all-$day.json"
echo "figures written to docs/bench-all-$day.json" >&2
