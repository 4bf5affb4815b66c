#!/usr/bin/env python3
"""Seed the fuzz corpora with valid inputs from docs/vectors/encoding-v1.json,
so the fuzzers start from real packages, bundles, transactions and headers."""
import json
import os

here = os.path.dirname(os.path.abspath(__file__))
v = json.load(open(os.path.join(here, "..", "docs", "vectors", "encoding-v1.json")))
seeds = {
    "decode_package": [v["package"]["bytes"], v["bundle"]["bytes"]],
    "decode_tx": [t["bytes"] for t in v["transactions"]] + [v["header"]["bytes"]],
}
for target, items in seeds.items():
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for i, h in enumerate(items):
        with open(os.path.join(d, f"seed-{i}"), "wb") as f:
            f.write(bytes.fromhex(h))
    print(f"{target}: {len(items)} seeds")
# The example registry, for the registry parser.
d = os.path.join(here, "corpus", "registry_toml")
os.makedirs(d, exist_ok=True)
with open(os.path.join(here, "..", "regions", "examples", "yangtze-delta.toml"), "rb") as src, open(os.path.join(d, "seed-example"), "wb") as f:
    f.write(src.read())
# JSON form of the package, for the serde path of decode_package.
with open(os.path.join(here, "corpus", "decode_package", "seed-json"), "w") as f:
    json.dump(v["package"]["json"], f)
