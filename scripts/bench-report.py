#!/usr/bin/env python3
"""Turn criterion results into the table of docs/performance.md.

Each benchmark group holds one measured operation and one or more `floor_*`
benchmarks: the raw cryptographic or storage work the operation cannot avoid,
measured in the same run. The table shows medians and the ratio to the floor.

Usage: scripts/bench-report.py [target/criterion]
"""
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
TARGET_RATIO = 1.2


def median_ns(group, bench):
    with open(os.path.join(root, group, bench, "new", "estimates.json")) as f:
        return json.load(f)["median"]["point_estimate"]


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


print("| group | operation | median | floor | floor median | ratio | target |")
print("|---|---|---|---|---|---|---|")
for group in sorted(os.listdir(root)):
    gdir = os.path.join(root, group)
    if not os.path.isdir(gdir) or group == "report":
        continue
    benches = sorted(b for b in os.listdir(gdir) if os.path.exists(os.path.join(gdir, b, "new", "estimates.json")))
    floors = [b for b in benches if b.startswith("floor")]
    ops = [b for b in benches if not b.startswith("floor")]
    for op in ops:
        m = median_ns(group, op)
        if not floors:
            print(f"| {group} | {op} | {fmt(m)} | – | – | – | – |")
        for fl in floors:
            f = median_ns(group, fl)
            ratio = m / f
            ok = "met" if ratio <= TARGET_RATIO else "MISSED"
            print(f"| {group} | {op} | {fmt(m)} | {fl} | {fmt(f)} | {ratio:.2f}× | ≤ {TARGET_RATIO}× {ok} |")
