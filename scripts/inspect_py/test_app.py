"""Tests of the application evidence package verifier (verify_app.py,
docs/encoding.md section 15).

Run from the repository root:

    python3 -m unittest discover -s scripts/inspect_py -p 'test_*.py'
"""

import copy
import hashlib
import json
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import verify as V  # noqa: E402
import verify_app as A  # noqa: E402
import corpus as C  # noqa: E402

PKG_PATH = os.path.join(REPO, "docs", "vectors", "application-package-v1.json")
REG_PATH = os.path.join(REPO, "regions", "examples", "yangtze-delta.toml")
NOW = 1_900_000_000_000

with open(PKG_PATH, "rb") as _fh:
    PKG_BYTES = _fh.read()
with open(REG_PATH, "rb") as _fh:
    REG_BYTES = _fh.read()
REG = A.load_registry(REG_BYTES)
PKG = json.loads(PKG_BYTES)


def verify_json(j, reg=REG, now=NOW):
    return A.verify_app_package(json.dumps(j, ensure_ascii=False).encode("utf-8"), reg, now_ms=now)


def failed(facts):
    return [f for f in facts if f.status != V.HOLDS]


def codes(facts):
    return [f.code for f in facts if f.status == V.FAILS]


def seed(label: str) -> bytes:
    return hashlib.sha256(b"tongban/test-key/v1" + label.encode()).digest()


# ---- leaves of the JSON document and their mutation ----

def leaves(x, path=()):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from leaves(v, path + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from leaves(v, path + (i,))
    else:
        yield path, x


HEX = "0123456789abcdef"


def mutate_str(s: str, pos: int) -> str:
    if s == "":
        return "x"
    pos %= len(s)
    c = s[pos]
    if c in HEX:
        n = HEX[(HEX.index(c) + 1) % 16]
    elif c == "z":
        n = "y"
    else:
        n = chr(ord(c) + 1) if ord(c) < 0x10FFFF else "a"
        if 0xD800 <= ord(n) <= 0xDFFF:
            n = "a"
    return s[:pos] + n + s[pos + 1:]


def mutate(v, pos: int):
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return v ^ 1
    if isinstance(v, str):
        return mutate_str(v, pos)
    if v is None:
        return 0
    raise TypeError(type(v))


def set_at(doc, path, value):
    d = doc
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value


def refused(j) -> bool:
    data = json.dumps(j, ensure_ascii=False).encode("utf-8")
    try:
        facts = A.verify_app_package(data, REG, now_ms=NOW)
    except Exception as e:  # any crash would be a bug, not a refusal
        raise AssertionError(f"verifier raised {type(e).__name__}: {e}")
    return not A.all_hold(facts)


# ---- forging with the test keys (issue 15, items 16-19) ----

def resign(tx, author=None, **changes) -> bytes:
    """The transaction's bytes with `changes` to its body, signed by `author`
    (its own author by default) with the test key."""
    author = author or tx.author
    body = dict(tx.body, **changes)
    sb = V.encode_tx_signing(tx.chain_id, author, tx.kind, body)
    return sb + b"\x01" + V.ed25519_sign(seed(author), sb)


def certify_one(b: dict, raw: bytes, height=None):
    """Makes bundle `b` prove `raw` alone in a block (at `height`, or its
    own), certified by the threshold of its city's test endorsers."""
    b["tx"] = raw.hex()
    b["proof"] = {"index": 0, "size": 1, "path": []}
    b.pop("batch", None)
    h = b["header"]["header"]
    if height is not None:
        h["height"] = height
    h["tx_count"] = 1
    h["tx_root"] = V.leaf_hash(raw).hex()
    header = V.Header(h["chain_id"], h["height"], bytes.fromhex(h["prev"]), h["timestamp_ms"], h["tx_count"],
                      bytes.fromhex(h["tx_root"]))
    city = REG.chain_city[h["chain_id"]]
    b["header"]["certificate"]["endorsements"] = [
        {"signer": i, "signature": V.ed25519_sign(seed(f"{city}/endorser/{i + 1}"),
                                                  header.endorsement_message()).hex()}
        for i in range(REG.chains[h["chain_id"]].threshold)]


def recommit(j: dict, app: dict):
    """Commits `app` in package `j` with a new last step of the centre's gateway."""
    text = json.dumps(app, ensure_ascii=False, separators=(",", ":"))
    j["application"] = text
    last = max(j["steps"], key=lambda b: (b["header"]["header"]["height"], b["proof"]["index"]))
    step = copy.deepcopy(last)
    tx = V.decode_tx(bytes.fromhex(step["tx"]))
    certify_one(step, resign(tx, detail=hashlib.sha256(text.encode("utf-8")).digest()),
                height=last["header"]["header"]["height"] + 1)
    j["steps"].append(step)


def item(j: dict, evidence: str) -> dict:
    return next(e for e in j["evidence"] if e["id"] == evidence)


def reforge_access(j: dict, evidence: str, author=None, **changes):
    e = item(j, evidence)
    tx = V.decode_tx(bytes.fromhex(e["access"]["tx"]))
    certify_one(e["access"], resign(tx, author, **changes))


def only(facts, code):
    return codes(facts) == [code]


class Forged(unittest.TestCase):
    """Packages re-signed with the test keys (anybody holds them): the rules
    must be semantic (section 15, checks 7, 14 and 15)."""

    def app(self):
        return json.loads(PKG["application"])

    def test_kit_recommits_and_verifies(self):
        j = copy.deepcopy(PKG)
        recommit(j, self.app())
        self.assertEqual(failed(verify_json(j)), [])

    def test_completed_with_no_services(self):
        j, app = copy.deepcopy(PKG), self.app()
        app["services"] = {}
        recommit(j, app)
        j["receipts"] = []
        self.assertTrue(only(verify_json(j), "application.phase_mismatch"), codes(verify_json(j)))

    def test_completed_with_every_service_pending_or_failed(self):
        for st in ({"state": "pending", "attempt": 1, "deadline_ms": 1}, {"state": "failed", "code": "x"}):
            j, app = copy.deepcopy(PKG), self.app()
            app["services"] = {k: st for k in app["services"]}
            recommit(j, app)
            j["receipts"] = []
            self.assertTrue(only(verify_json(j), "application.phase_mismatch"), st)

    def test_completed_with_one_service_left_out(self):
        j, app = copy.deepcopy(PKG), self.app()
        del app["services"]["gas-transfer"]
        recommit(j, app)
        j["receipts"] = [r for r in j["receipts"] if r["service"] != "gas-transfer"]
        self.assertTrue(only(verify_json(j), "application.services_mismatch"), codes(verify_json(j)))

    def test_completed_after_a_rejecting_receipt(self):
        j, app = copy.deepcopy(PKG), self.app()
        rc = next(r for r in j["receipts"] if r["service"] == "gas-transfer")
        tx = V.decode_tx(bytes.fromhex(rc["bundle"]["tx"]))
        certify_one(rc["bundle"], resign(tx, accepted=False, reason="account unknown"))
        app["services"]["gas-transfer"].update(accepted=False, reason="account unknown")
        recommit(j, app)
        self.assertTrue(only(verify_json(j), "application.phase_mismatch"), codes(verify_json(j)))

    def rejected(self):
        """The sample with deed tax proven not paid (the provider city's
        gateway commits a does-not-hold answer)."""
        j, app = copy.deepcopy(PKG), self.app()
        e = item(j, "deed-tax")
        ans = bytearray(bytes.fromhex(e["answer"]))
        at = len(V.enc_domain(A.TAG_MATCH_ANSWER)) + 32
        self.assertEqual(ans[at], 0)          # holds, no values disclosed
        ans[at] = 1                            # does not hold
        e["answer"] = ans.hex()
        reforge_access(j, "deed-tax", answer=hashlib.sha256(bytes(ans)).digest())
        app["evidence"]["deed-tax"]["answer"] = {"outcome": "does_not_hold"}
        app["phase"] = "rejected"
        app["reason"] = "rule not satisfied; evidence that did not hold: deed-tax"
        return j, app

    def test_a_rejection_with_nothing_dispatched_verifies(self):
        j, app = self.rejected()
        app["services"] = {}
        recommit(j, app)
        j["receipts"] = []
        self.assertEqual(failed(verify_json(j)), [])

    def test_rejected_while_services_were_receipted(self):
        j, app = self.rejected()
        recommit(j, app)
        self.assertTrue(only(verify_json(j), "application.phase_mismatch"), codes(verify_json(j)))

    def test_parameters_outside_the_declaration(self):
        for change in ({"discount": {"text": "100%"}}, {"buyer_phone": {"int": 13800000000}},
                       {"property_city": {"text": "wuhan"}}):
            j, app = copy.deepcopy(PKG), self.app()
            app["params"].update(change)
            recommit(j, app)
            facts = verify_json(j)
            self.assertIn("application.params_mismatch", codes(facts), change)

    def test_evidence_outside_the_declaration(self):
        j, app = copy.deepcopy(PKG), self.app()
        app["evidence"]["buyer-criminal-record"] = {"state": "unneeded"}
        recommit(j, app)
        self.assertTrue(only(verify_json(j), "application.evidence_mismatch"), codes(verify_json(j)))

    def test_access_log_by_the_hub_on_hefeis_chain(self):
        j = copy.deepcopy(PKG)
        e = item(j, "buyer-marital")
        self.assertEqual(V.decode_tx(bytes.fromhex(e["access"]["tx"])).author, "hefei.gateway")
        reforge_access(j, "buyer-marital", author="anhui-hub")
        self.assertTrue(refused(j))
        j = copy.deepcopy(PKG)
        reforge_access(j, "buyer-marital", author="hefei.gateway")
        self.assertFalse(refused(j))

    def test_access_log_dated_outside_the_request_window(self):
        req = item(PKG, "seller-title")["request"]
        skew = 30_000
        for at, ok in ((req["issued_ms"] - skew - 1, False), (req["expires_ms"] + 1, False),
                       (req["issued_ms"] - 3_600_000, False), (req["issued_ms"] - skew, True),
                       (req["expires_ms"], True)):
            j = copy.deepcopy(PKG)
            reforge_access(j, "seller-title", at_ms=at)
            facts = verify_json(j)
            if ok:
                self.assertEqual(failed(facts), [], at)
            else:
                self.assertTrue(only(facts, "match.access_time"), (at, codes(facts)))

    def test_facts_after_a_failed_commitment_are_skipped(self):
        j = copy.deepcopy(PKG)
        j["application"] = j["application"].replace("13800000000", "13800000001", 1)
        facts = verify_json(j)
        at = next(i for i, f in enumerate(facts) if f.name == "application.committed")
        self.assertEqual(facts[at].status, V.FAILS)
        later = facts[at + 1:]
        self.assertTrue(later)
        self.assertEqual([f for f in later if f.status != V.SKIPPED], [])


class SamplePackage(unittest.TestCase):
    def test_registry_hash_is_the_packages(self):
        self.assertEqual(REG.hash.hex(), PKG["registry_hash"])

    def test_sample_verifies(self):
        facts = A.verify_app_package(PKG_BYTES, REG, now_ms=NOW)
        self.assertEqual(failed(facts), [])
        names = {f.name for f in facts}
        # every part was judged
        for n in ("package.format", "package.registry", "application.parses", "application.id",
                  "application.bundle", "application.centre", "application.committed",
                  "evidence.complete", "application.decision", "receipts.complete"):
            self.assertIn(n, names)
        self.assertEqual(sum(1 for f in facts if f.name.endswith(".step")), len(PKG["steps"]))
        self.assertEqual(sum(1 for f in facts if f.name.endswith(".recorded") and f.name.startswith("evidence")),
                         len(PKG["evidence"]))
        self.assertEqual(sum(1 for f in facts if f.name.endswith(".recorded") and f.name.startswith("receipts")),
                         len(PKG["receipts"]))

    def test_questions_rebuilt_byte_for_byte(self):
        app = json.loads(PKG["application"])
        bundle = REG.bundles[app["bundle"]]
        evs = {e["id"]: e for e in bundle["evidence"]}
        for item in PKG["evidence"]:
            ev = evs[item["id"]]
            q = A.build_question(REG.contract(ev["contract"]), ev, app["params"])
            self.assertEqual(q, item["request"]["question"])

    def test_ids(self):
        app = json.loads(PKG["application"])
        app_id = bytes.fromhex(PKG["application_id"])
        for item in PKG["evidence"]:
            self.assertEqual(A.ask_id(app_id, item["id"], item["attempt"]).hex(), item["request"]["id"])
        self.assertEqual(app["id"], PKG["application_id"])

    def test_now_before_headers(self):
        facts = A.verify_app_package(PKG_BYTES, REG, now_ms=1_700_000_000_000)
        self.assertIn("header.from_future", codes(facts))

    def test_other_registry(self):
        reg2 = A.load_registry(REG_BYTES + b"\n# another registry\n")
        facts = A.verify_app_package(PKG_BYTES, reg2, now_ms=NOW)
        self.assertEqual(codes(facts), ["package.registry_mismatch"])
        # nothing else is checked
        self.assertEqual([f.name for f in facts], ["package.decodes", "package.format", "package.registry"])

    def test_wrong_format(self):
        j = copy.deepcopy(PKG)
        j["format"] = "tongban-application-evidence/v2"
        self.assertIn("package.format", codes(verify_json(j)))

    def test_unknown_field_refused(self):
        for where in ((), ("evidence", 0), ("evidence", 0, "request"), ("receipts", 0), ("steps", 0),
                      ("steps", 0, "header")):
            j = copy.deepcopy(PKG)
            d = j
            for k in where:
                d = d[k]
            d["extra"] = 1
            self.assertEqual(codes(verify_json(j)), ["package.malformed"], where)

    def test_dropped_evidence_is_missing(self):
        j = copy.deepcopy(PKG)
        j["evidence"] = [e for e in j["evidence"] if e["id"] != "deed-tax"]
        self.assertIn("evidence.missing", codes(verify_json(j)))

    def test_dropped_receipt_is_missing(self):
        j = copy.deepcopy(PKG)
        j["receipts"] = j["receipts"][1:]
        self.assertIn("receipt.missing", codes(verify_json(j)))

    def test_dropped_last_step_not_committed(self):
        j = copy.deepcopy(PKG)
        last = max(range(len(j["steps"])),
                   key=lambda i: (j["steps"][i]["header"]["header"]["height"], j["steps"][i]["proof"]["index"]))
        del j["steps"][last]
        self.assertIn("application.not_committed", codes(verify_json(j)))

    def test_swapped_answers(self):
        j = copy.deepcopy(PKG)
        a, b = j["evidence"][0], j["evidence"][1]
        a["answer"], b["answer"] = b["answer"], a["answer"]
        self.assertIn("match.answer_mismatch", codes(verify_json(j)))

    def test_receipt_under_another_service(self):
        j = copy.deepcopy(PKG)
        a, b = j["receipts"][0], j["receipts"][1]
        a["service"], b["service"] = b["service"], a["service"]
        self.assertIn("receipt.foreign", codes(verify_json(j)))

    def test_step_as_receipt(self):
        j = copy.deepcopy(PKG)
        j["receipts"][0]["bundle"] = j["steps"][0]
        self.assertIn("receipt.foreign", codes(verify_json(j)))

    def test_access_as_step(self):
        j = copy.deepcopy(PKG)
        j["steps"].append(j["evidence"][0]["access"])
        self.assertIn("step.mismatch", codes(verify_json(j)))

    def test_record_of_another_item(self):
        j = copy.deepcopy(PKG)
        with_record = [e for e in j["evidence"] if "record" in e]
        with_record[0]["record"] = with_record[1]["record"]
        self.assertTrue(refused(j))

    def test_record_dropped(self):
        j = copy.deepcopy(PKG)
        e = next(e for e in j["evidence"] if "record" in e)
        del e["record"]
        self.assertIn("match.answer_mismatch", codes(verify_json(j)))

    def test_recommitted_rejection_is_a_decision_mismatch(self):
        """Re-commit an application claiming "rejected" with the test keys
        (the registry's keys are derived from public labels): everything
        verifies except check 11, and check 15 (a rejection dispatches
        nothing, and gives a reason)."""
        j = copy.deepcopy(PKG)
        app = json.loads(j["application"])
        app["phase"] = "rejected"
        recommit(j, app)
        facts = verify_json(j)
        self.assertEqual(codes(facts), ["application.decision_mismatch", "application.phase_mismatch"])


class StrictReading(unittest.TestCase):
    """Section 15.1: one reading per input, the rule the Rust inspector
    follows too (gateway/tests/inspectors_agree.rs runs both)."""

    def fails_with(self, j, code):
        data = j if isinstance(j, bytes) else (j if isinstance(j, str) else json.dumps(j, ensure_ascii=False))
        if isinstance(data, str):
            data = data.encode("utf-8")
        try:
            facts = A.verify_app_package(data, REG, now_ms=NOW)
        except Exception as e:  # a crash is not a verdict
            raise AssertionError(f"verifier raised {type(e).__name__}: {e}")
        self.assertFalse(A.all_hold(facts))
        self.assertIn(code, codes(facts))
        return facts

    def test_deep_nesting_is_refused_not_a_crash(self):
        self.fails_with(C.deep_nesting(PKG, 100_000), "package.malformed")
        self.fails_with(C.deep_nesting(PKG, 65), "package.malformed")
        self.fails_with(C.deep_application(PKG, 100_000, REG, True), "application.malformed")
        self.fails_with(C.deep_application(PKG, 65, REG, True), "application.malformed")
        # 64 levels are allowed (the unknown key is what is refused then).
        facts = self.fails_with(C.deep_nesting(PKG, 62), "package.malformed")
        self.assertIn("unknown", facts[0].detail)

    def test_duplicate_keys_are_refused(self):
        self.fails_with(C.duplicate_key_package(PKG), "package.malformed")
        self.fails_with(C.duplicate_key_application(PKG, REG), "application.malformed")

    def test_lone_surrogates_are_refused_not_a_crash(self):
        self.fails_with(C.lone_surrogate_package(PKG), "package.malformed")
        self.fails_with(C.lone_surrogate_application(PKG, REG), "application.malformed")

    def test_upper_case_hex_is_refused(self):
        self.fails_with(C.upper_hex(PKG), "package.malformed")

    def test_explicit_null_is_refused(self):
        self.fails_with(C.explicit_null(PKG), "package.malformed")

    def test_a_field_disclosed_twice_is_refused(self):
        self.fails_with(C.disclosed_twice(PKG, REG), "match.decode")

    def test_a_receipts_reason_must_be_recorded(self):
        self.fails_with(C.receipt_reason(PKG, REG), "receipt.not_recorded")

    def test_a_rejection_whose_failing_evidence_was_left_out(self):
        rejected, failing = C.rejected(PKG, REG)
        facts = A.verify_app_package(json.dumps(rejected).encode(), REG, now_ms=NOW)
        self.assertEqual(failed(facts), [])
        facts = self.fails_with(C.failing_left_out(rejected), "evidence.missing")
        decision = [f for f in facts if f.name == "application.decision"]
        self.assertEqual([f.status for f in decision], [V.SKIPPED])

    def test_the_application_must_be_in_its_written_form(self):
        app = json.loads(PKG["application"])
        for change in (lambda a: a["evidence"]["deed-tax"]["answer"].__setitem__("outcome", 0),
                       lambda a: a.__setitem__("extra", 1),
                       lambda a: a["timeline"][0].__setitem__("detail", ""),
                       lambda a: a["timeline"][0].__setitem__("item", None),
                       lambda a: a["services"]["gas-transfer"].pop("at_ms"),
                       lambda a: a["params"]["buyer_name"].__setitem__("text", 5)):
            b = copy.deepcopy(app)
            change(b)
            j = copy.deepcopy(PKG)
            C.recommit(j, C.app_text(b), REG)
            self.fails_with(j, "application.malformed")

    def test_a_package_above_64_mib_is_refused(self):
        self.fails_with(b" " * (A.MAX_PACKAGE_BYTES + 1), "package.malformed")


class Rules(unittest.TestCase):
    def test_eval(self):
        rule = {"all": ["a", {"any": ["b", "c"]}, {"not": "d"}]}
        t = {"a", "c"}
        self.assertTrue(A.eval_rule(rule, lambda e: e in t))
        self.assertFalse(A.eval_rule(rule, lambda e: e in t | {"d"}))
        self.assertFalse(A.eval_rule(rule, lambda e: e in {"a"}))

    def test_canonical_json(self):
        self.assertEqual(A.canonical_json({"b": 1, "a": [{"z": "\u00e9", "y": False}], "é": None, "c": "\n"}),
                         '{"a":[{"y":false,"z":"é"}],"b":1,"c":"\\n","é":null}')


class Mutations(unittest.TestCase):
    def test_every_leaf_mutated_is_refused(self):
        t0 = time.time()
        all_leaves = list(leaves(PKG))
        self.assertGreaterEqual(len(all_leaves), 300)
        parts = set()
        accepted = []
        n = 0
        for path, value in all_leaves:
            positions = [len(path) * 7 + 3]
            if isinstance(value, str) and len(value) > 1:
                positions += [0, len(value) - 1, len(value) // 2]
            for pos in positions:
                j = copy.deepcopy(PKG)
                new = mutate(value, pos)
                if new == value:
                    continue
                set_at(j, path, new)
                n += 1
                parts.add(path[0])
                if not refused(j):
                    accepted.append((path, pos, value, new))
        self.assertEqual(accepted, [])
        self.assertEqual(parts, set(PKG))
        sys.stderr.write(f"\n[{n} mutations of {len(all_leaves)} leaves in {time.time() - t0:.1f}s] ")


if __name__ == "__main__":
    unittest.main()
