#!/usr/bin/env python3
"""The corpus of the differential test of the two inspectors (docs/encoding.md
section 15, "Strict reading"; issue 15 item 22): valid application evidence
packages, each of the eight classes of input on which the Rust and the Python
inspectors once disagreed, and seeded random mutations.  The test
(gateway/tests/inspectors_agree.rs) runs every file through both inspectors
and requires the same verdict.

    python3 scripts/inspect_py/corpus.py OUT_DIR --registry REGION.toml PACKAGE.json… [--seed N] [--random N]

Writes OUT_DIR/NAME.json for every input and OUT_DIR/manifest.json:
[{"file", "class", "expect": "accepted" | "refused" | null}].

Classes that change signed bytes (a re-committed application, a re-signed
access log) need the registry's keys: they are made only when the keys are
the public test keys of the example registry (SHA-256 of
"tongban/test-key/v1" followed by the member id or "<city>/endorser/<n>").
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import verify as V  # noqa: E402
import verify_app as A  # noqa: E402


def seed(label: str) -> bytes:
    return hashlib.sha256(b"tongban/test-key/v1" + label.encode()).digest()


def test_keys(reg: A.Registry) -> bool:
    """True iff the registry's member and endorser keys are the test keys."""
    for m in reg.members.values():
        if m.keys[0] != V.ed25519_public_from_seed(seed(m.id)):
            return False
    for chain_id, c in reg.chains.items():
        city = reg.chain_city[chain_id]
        for i, k in enumerate(c.keys):
            if k != V.ed25519_public_from_seed(seed(f"{city}/endorser/{i + 1}")):
                return False
    return True


# ---- re-signing with the test keys ----

def root_from_path(leaf: bytes, index: int, size: int, path: list) -> bytes:
    """RFC 9162 section 2.1.3.2: the root an inclusion path leads to."""
    f, s, x = index, size - 1, leaf
    for c in path:
        if f & 1 or f == s:
            x = V.node_hash(c, x)
            if not f & 1:
                while not f & 1 and f != 0:
                    f >>= 1
                    s >>= 1
        else:
            x = V.node_hash(x, c)
        f >>= 1
        s >>= 1
    return x


def recertify(b: dict, reg: A.Registry) -> None:
    """After `b["tx"]` changed: the header's tx_root from the proof, and the
    certificate signed again by the same endorsers."""
    tx = bytes.fromhex(b["tx"])
    p = b["proof"]
    root = root_from_path(V.leaf_hash(tx), p["index"], p["size"], [bytes.fromhex(h) for h in p["path"]])
    h = b["header"]["header"]
    h["tx_root"] = root.hex()
    header = V.Header(h["chain_id"], h["height"], bytes.fromhex(h["prev"]), h["timestamp_ms"], h["tx_count"], root)
    city = reg.chain_city[h["chain_id"]]
    for e in b["header"]["certificate"]["endorsements"]:
        e["signature"] = V.ed25519_sign(seed(f"{city}/endorser/{e['signer'] + 1}"),
                                        header.endorsement_message()).hex()


def resign(b: dict, reg: A.Registry, **changes) -> None:
    """Changes body fields of a self-signed transaction, signs it again with
    its author's test key and re-certifies its header."""
    tx = V.decode_tx(bytes.fromhex(b["tx"]))
    assert tx.auth == 1, "only self-signed transactions are re-signed"
    body = dict(tx.body, **changes)
    sb = V.encode_tx_signing(tx.chain_id, tx.author, tx.kind, body)
    b["tx"] = (sb + b"\x01" + V.ed25519_sign(seed(tx.author), sb)).hex()
    recertify(b, reg)


def last_step(pkg: dict) -> dict:
    return max(pkg["steps"], key=lambda b: (b["header"]["header"]["height"], b["proof"]["index"]))


def recommit(pkg: dict, app_text: str, reg: A.Registry) -> None:
    """The application's JSON replaced and committed again by its last step."""
    pkg["application"] = app_text
    resign(last_step(pkg), reg, detail=V.sha256(app_text.encode("utf-8")))


def app_text(app: dict) -> str:
    return json.dumps(app, ensure_ascii=False, separators=(",", ":"))


def encode_answer(a: A.Answer) -> bytes:
    out = V.enc_domain(A.TAG_MATCH_ANSWER) + a.digest + V.enc_u8(a.verdict)
    if a.verdict == 3:
        out += V.enc_str(a.rule_code) + V.enc_str(a.message)
    out += V.enc_u32(len(a.values))
    for n, v in a.values:
        out += V.enc_str(n) + V.enc_str(v)
    out += V.enc_u64(a.evaluated_height)
    out += b"\x00" if a.record is None else b"\x01" + a.record[0] + V.enc_u32(a.record[1])
    return out + a.nonce


def reanswer(pkg: dict, i: int, change, reg: A.Registry) -> None:
    """Evidence item i's opened answer changed by `change(answer)`, and the
    access log that commits to it signed again."""
    item = pkg["evidence"][i]
    ans = A.decode_answer(bytes.fromhex(item["answer"]))
    change(ans)
    raw = encode_answer(ans)
    item["answer"] = raw.hex()
    resign(item["access"], reg, answer=V.sha256(raw))


# ---- the classes ----

def rejected(pkg: dict, reg: A.Registry):
    """A completed package turned into the rejection of the same application:
    one evidence that held now does not hold, no services, no receipts."""
    app = json.loads(pkg["application"])
    if app["phase"] != "completed":
        return None
    for i, item in enumerate(pkg["evidence"]):
        st = app["evidence"].get(item["id"], {})
        if st.get("answer") == {"outcome": "holds", "values": {}}:
            break
    else:
        return None
    j = copy.deepcopy(pkg)
    reanswer(j, i, lambda a: setattr(a, "verdict", 1), reg)
    app["evidence"][item["id"]]["answer"] = {"outcome": "does_not_hold"}
    app["phase"] = "rejected"
    app["services"] = {}
    app["reason"] = f"rule not satisfied; evidence that did not hold: {item['id']}"
    j["receipts"] = []
    recommit(j, app_text(app), reg)
    return j, item["id"]


def failing_left_out(pkg: dict):
    """A rejection whose failing evidence (does not hold / no record) was left out."""
    app = json.loads(pkg["application"])
    if app["phase"] != "rejected":
        return None
    failing = [e for e, st in app["evidence"].items()
               if isinstance(st, dict) and st.get("state") == "answered"
               and st["answer"].get("outcome") in ("does_not_hold", "no_record")]
    if not failing:
        return None
    j = copy.deepcopy(pkg)
    j["evidence"] = [e for e in j["evidence"] if e["id"] not in failing]
    return j


def deep_nesting(pkg: dict, depth: int):
    """Nesting `depth` levels deep, in the package itself."""
    text = json.dumps(pkg, ensure_ascii=False)
    assert text.endswith("}")
    return text[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"


def deep_application(pkg: dict, depth: int, reg, keys: bool):
    """Nesting `depth` levels deep inside the application's JSON (committed
    again when the test keys allow)."""
    app = json.loads(pkg["application"])
    text = app_text(app)
    text = text[:-1] + ',"deep":' + "[" * depth + "]" * depth + "}"
    j = copy.deepcopy(pkg)
    if keys:
        recommit(j, text, reg)
    else:
        j["application"] = text
    return j


def duplicate_key_package(pkg: dict) -> str:
    text = json.dumps(pkg, ensure_ascii=False)
    return text[:-1] + ', "format": ' + json.dumps(pkg["format"]) + "}"


def duplicate_key_application(pkg: dict, reg) :
    """The application's JSON with `phase` written twice (same value), committed again."""
    app = json.loads(pkg["application"])
    text = app_text(app)
    text = text[:-1] + ',"phase":' + json.dumps(app["phase"]) + "}"
    j = copy.deepcopy(pkg)
    recommit(j, text, reg)
    return j


def lone_surrogate_package(pkg: dict) -> str:
    """A lone surrogate escape in a string of the package (a step's chain id)."""
    text = json.dumps(pkg, ensure_ascii=False)
    chain = pkg["steps"][0]["header"]["header"]["chain_id"]
    needle = '"chain_id": ' + json.dumps(chain)
    assert needle in text
    return text.replace(needle, '"chain_id": "' + chain + '\\ud800"', 1)


def lone_surrogate_application(pkg: dict, reg):
    """A lone surrogate escape in the application's `reason`, committed again."""
    app = json.loads(pkg["application"])
    app["reason"] = "x"
    text = app_text(app).replace('"reason":"x"', '"reason":"x\\udc00"')
    j = copy.deepcopy(pkg)
    recommit(j, text, reg)
    return j


def upper_hex(pkg: dict):
    j = copy.deepcopy(pkg)
    e = j["steps"][0]["header"]["certificate"]["endorsements"][0]
    e["signature"] = e["signature"].upper()
    return j


def explicit_null(pkg: dict):
    """`"record": null` on an evidence item without a record."""
    j = copy.deepcopy(pkg)
    for e in j["evidence"]:
        if "record" not in e:
            e["record"] = None
            return j
    return None


def disclosed_twice(pkg: dict, reg):
    """An answer that discloses one field twice (same value), its access log
    signed again; the application records the value once."""
    for i, item in enumerate(pkg["evidence"]):
        ans = A.decode_answer(bytes.fromhex(item["answer"]))
        if ans.values:
            j = copy.deepcopy(pkg)
            reanswer(j, i, lambda a: a.values.append(a.values[0]), reg)
            return j
    return None


def record_version(pkg: dict, reg):
    """An answer naming the proven record's leaf with another version."""
    for i, item in enumerate(pkg["evidence"]):
        ans = A.decode_answer(bytes.fromhex(item["answer"]))
        if ans.record is not None:
            j = copy.deepcopy(pkg)
            reanswer(j, i, lambda a: setattr(a, "record", (a.record[0], a.record[1] + 1)), reg)
            return j
    return None


def long_names(pkg: dict, reg):
    """A disclosed field name of 128 bytes (section 13's limit), recorded so by
    the application: accepted by both."""
    app = json.loads(pkg["application"])
    for i, item in enumerate(pkg["evidence"]):
        ans = A.decode_answer(bytes.fromhex(item["answer"]))
        if ans.values:
            j = copy.deepcopy(pkg)
            name = "n" * 128
            reanswer(j, i, lambda a: setattr(a, "values", [(name, a.values[0][1])]), reg)
            st = app["evidence"][item["id"]]
            st["answer"]["values"] = {name: ans.values[0][1]}
            recommit(j, app_text(app), reg)
            return j
    return None


def receipt_reason(pkg: dict, reg):
    """The application records another reason than the receipt says."""
    app = json.loads(pkg["application"])
    for s, st in app["services"].items():
        if isinstance(st, dict) and st.get("state") == "receipted":
            st["reason"] = st["reason"] + " (changed)"
            j = copy.deepcopy(pkg)
            recommit(j, app_text(app), reg)
            return j
    return None


# ---- random mutations (as in test_app.py) ----

def leaves(x, path=()):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from leaves(v, path + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from leaves(v, path + (i,))
    else:
        yield path, x


def random_mutation(pkg: dict, rng: random.Random):
    j = copy.deepcopy(pkg)
    kind = rng.choice(["leaf", "leaf", "leaf", "drop", "repeat", "type", "app"])
    all_leaves = list(leaves(j))
    path, value = rng.choice(all_leaves)

    def parent(p):
        d = j
        for k in p[:-1]:
            d = d[k]
        return d

    if kind == "leaf":
        if isinstance(value, bool):
            new = not value
        elif isinstance(value, int):
            new = value ^ (1 << rng.randrange(0, 8))
        elif isinstance(value, str) and value:
            pos = rng.randrange(len(value))
            c = rng.choice("0123456789abcdefABCDEF xz\u00e9\"\\")
            new = value[:pos] + c + value[pos + 1:]
        else:
            new = "x"
        parent(path)[path[-1]] = new
    elif kind == "drop":
        p = path[:rng.randrange(1, len(path) + 1)]
        d = parent(p)
        if isinstance(d, dict):
            del d[p[-1]]
        else:
            del d[p[-1]]
    elif kind == "repeat":
        lists = [p for p, _ in all_leaves for k in range(1, len(p)) if isinstance(p[k], int)]
        if lists:
            p = rng.choice(lists)
            k = max(i for i in range(1, len(p)) if isinstance(p[i], int))
            d = parent(p[:k + 1])
            d.insert(p[k], copy.deepcopy(d[p[k]]))
    elif kind == "type":
        parent(path)[path[-1]] = rng.choice([None, [], {}, "1", 1, -1, 2 ** 64, 1.5, True])
    else:
        app = j["application"]
        pos = rng.randrange(len(app))
        j["application"] = app[:pos] + rng.choice('x0"{}[],: ') + app[pos + 1:]
    return j


def random_recommit(pkg: dict, rng: random.Random, reg: A.Registry):
    """One leaf of the application's JSON changed, dropped or duplicated, and
    committed again with the test keys: every signature holds, so only the
    inspectors' reading of the application decides."""
    app = json.loads(pkg["application"])
    all_leaves = [(p, v) for p, v in leaves(app) if p and p[0] != "id"]
    path, value = rng.choice(all_leaves)
    d = app
    for k in path[:-1]:
        d = d[k]
    kind = rng.choice(["leaf", "leaf", "drop", "type"])
    if kind == "drop":
        del d[path[-1]]
    elif kind == "type":
        d[path[-1]] = rng.choice([None, [], {}, "", 0, True, "x"])
    elif isinstance(value, bool):
        d[path[-1]] = not value
    elif isinstance(value, int):
        d[path[-1]] = value + rng.choice([-1, 1, 1000])
    elif isinstance(value, str):
        d[path[-1]] = rng.choice(["", value + "x", "completed", "rejected", "holds", "does_not_hold",
                                  "answered", "receipted", "failed", value.upper()])
    else:
        d[path[-1]] = "x"
    j = copy.deepcopy(pkg)
    recommit(j, app_text(app), reg)
    return j, f"{kind} {'/'.join(map(str, path))}: {value!r} -> {d.get(path[-1], '(dropped)') if isinstance(d, dict) else '?'!r}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("packages", nargs="+")
    ap.add_argument("--registry", required=True)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--random", type=int, default=40, help="random mutations per valid package")
    ap.add_argument("--recommit", action="store_true",
                    help="also random changes of the application's JSON, committed again with the test keys")
    args = ap.parse_args(argv)
    with open(args.registry, "rb") as fh:
        reg = A.load_registry(fh.read())
    keys = test_keys(reg)
    os.makedirs(args.out, exist_ok=True)
    manifest = []

    def write(name, content, cls, expect, note=None):
        path = os.path.join(args.out, name + ".json")
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as fh:
            fh.write(text)
        manifest.append({"file": path, "class": cls, "expect": expect, **({"note": note} if note else {})})

    valid = []
    for n, p in enumerate(args.packages):
        with open(p, "rb") as fh:
            pkg = json.loads(fh.read())
        valid.append((f"p{n}", pkg))
        if keys:
            r = rejected(pkg, reg)
            if r is not None:
                valid.append((f"p{n}-rejected", r[0]))
    rng = random.Random(args.seed)
    for name, pkg in valid:
        write(name, pkg, "valid", "accepted")
        j = failing_left_out(pkg)
        if j is not None:
            write(f"{name}-failing-left-out", j, "rejection whose failing evidence was left out", "refused")
        write(f"{name}-deep-package", deep_nesting(pkg, 100_000), "deep nesting", "refused")
        write(f"{name}-deep-65", deep_nesting(pkg, 65), "deep nesting", "refused")
        write(f"{name}-deep-application", deep_application(pkg, 100_000, reg, keys), "deep nesting", "refused")
        write(f"{name}-duplicate-key", duplicate_key_package(pkg), "duplicate keys", "refused")
        write(f"{name}-lone-surrogate", lone_surrogate_package(pkg), "lone surrogates", "refused")
        write(f"{name}-upper-hex", upper_hex(pkg), "upper-case hex", "refused")
        j = explicit_null(pkg)
        if j is not None:
            write(f"{name}-explicit-null", j, "explicit nulls", "refused")
        if keys:
            write(f"{name}-deep-application-65", deep_application(pkg, 65, reg, keys), "deep nesting", "refused")
            write(f"{name}-duplicate-key-application", duplicate_key_application(pkg, reg), "duplicate keys",
                  "refused")
            write(f"{name}-lone-surrogate-application", lone_surrogate_application(pkg, reg), "lone surrogates",
                  "refused")
            j = disclosed_twice(pkg, reg)
            if j is not None:
                write(f"{name}-disclosed-twice", j, "a field disclosed twice", "refused")
            j = record_version(pkg, reg)
            if j is not None:
                write(f"{name}-record-version", j, "an answer naming another record version", "refused")
            j = long_names(pkg, reg)
            if j is not None:
                write(f"{name}-long-name", j, "a disclosed name at the limit", None)
            j = receipt_reason(pkg, reg)
            if j is not None:
                write(f"{name}-receipt-reason", j, "a receipt's reason", "refused")
        for k in range(args.random):
            write(f"{name}-random-{k}", random_mutation(pkg, rng), "random mutation", None)
            if keys and args.recommit:
                j, note = random_recommit(pkg, rng, reg)
                write(f"{name}-recommit-{k}", j, "random re-committed application", None, note)
    with open(os.path.join(args.out, "manifest.json"), "w") as fh:
        json.dump({"registry": os.path.abspath(args.registry), "test_keys": keys, "inputs": manifest}, fh, indent=1)
    print(f"{len(manifest)} inputs in {args.out}" + ("" if keys else " (no test keys: re-signed classes left out)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
