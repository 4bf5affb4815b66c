"""Tests of the independent Tongban evidence verifier (verify.py).

Run from the repository root:

    python3 -m unittest discover -s scripts/inspect_py -p 'test_*.py'

Shared vectors (Ed25519 speccheck/Wycheproof, transparency-dev Merkle) are read
from $TONGBAN_VECTORS, else from ../shared/vectors relative to the repository
root.  If they are absent the vector tests fail with a clear message, unless
TONGBAN_VECTORS=skip.
"""

import base64
import copy
import glob
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

KAT_PATH = os.path.join(REPO, "docs", "vectors", "encoding-v1.json")
with open(KAT_PATH, encoding="utf-8") as _fh:
    KAT = json.load(_fh)

MAIN = bytes.fromhex(KAT["package"]["bytes"])
BATCH = bytes.fromhex(KAT["batch"]["package_bytes"])
ROOTS = V.trust_roots_from_kat(KAT)
NOW = ROOTS.now_ms

DEPT = "nanjing.civil-affairs"
DEPT_SEED = bytes.fromhex(KAT["keys"]["department"]["seed"])
ENDORSER_SEEDS = [hashlib.sha256(b"tongban/test-key/v1" + e["label"].encode()).digest()
                  for e in sorted(KAT["keys"]["endorsers"], key=lambda e: e["index"])]
OTHER_SEED = hashlib.sha256(b"tongban/test-key/v1" + b"test/other").digest()
HOSPITAL_SEED = hashlib.sha256(b"tongban/test-key/v1" + b"test/hospital").digest()
GATEWAY_SEED = hashlib.sha256(b"tongban/test-key/v1" + b"test/gateway").digest()
UTILITY_SEED = hashlib.sha256(b"tongban/test-key/v1" + b"test/utility").digest()
COMMITMENT = bytes.fromhex(KAT["record"]["commitment"])
SUBJECT = bytes.fromhex(KAT["subject"]["reference"])


def vectors_dir():
    v = os.environ.get("TONGBAN_VECTORS")
    if v == "skip":
        return None
    path = v or os.path.normpath(os.path.join(REPO, "..", "shared", "vectors"))
    if not os.path.isdir(path):
        raise AssertionError(
            f"shared test vectors not found at {path!r}: set TONGBAN_VECTORS to the vectors folder "
            f"(or TONGBAN_VECTORS=skip to skip the Ed25519/Merkle vector tests)")
    return path


def judge(data, roots=ROOTS):
    facts, pkg = V.verify_package(data, roots)
    return V.all_hold(facts), facts, pkg


def failing(facts):
    return {(f.name, f.code) for f in facts if f.status == V.FAILS}


def codes(facts):
    return {f.code for f in facts if f.status == V.FAILS}


# ---------------------------------------------------------------- builders

def sign_header(header, signers=(0, 2, 3)):
    msg = header.endorsement_message()
    return [(s, V.ed25519_sign(ENDORSER_SEEDS[s], msg)) for s in signers]


def make_tx(kind, body, author=DEPT, chain="nanjing", seed=DEPT_SEED, member=None):
    sb = V.encode_tx_signing(chain, author, kind, body)
    if member is None:
        return sb + b"\x01" + V.ed25519_sign(seed, sb)
    root, index = member
    return sb + b"\x02" + root + V.enc_u32(index)


def record_body(record_id="R-1", subjects=(SUBJECT,), commitment=COMMITMENT):
    return {"record_type": "marriage", "record_id": record_id, "subject_refs": list(subjects),
            "version": 1, "commitment": commitment, "issued_ms": NOW - 60000}


def make_bundle(txs, index, chain="nanjing", ts=None, signers=(0, 2, 3), batch=None, tx_count=None):
    leaves = [V.leaf_hash(t) for t in txs]
    header = V.Header(chain, 7, b"\x11" * 32, NOW - 1000 if ts is None else ts,
                      len(txs) if tx_count is None else tx_count, V.merkle_root(leaves))
    proof = V.Proof(index, len(txs), V.inclusion_path(index, leaves))
    return V.Bundle(header, sign_header(header, signers), txs[index], proof, batch)


def status_disclosure(bundle=0):
    f = next(x for x in KAT["record"]["fields"] if x["name"] == "status")
    j = KAT["package"]["json"]["disclosures"][0]["field"]["proof"]
    return V.Disclosure(bundle, "status", V.Value.from_json(f["value"]), bytes.fromhex(f["salt"]),
                        V.Proof(j["index"], j["size"], [bytes.fromhex(h) for h in j["path"]]))


def package(bundles, disclosures=(), fmt=1, registry_hash=None):
    return V.Package(fmt, ROOTS.registry_hash if registry_hash is None else registry_hash,
                     list(bundles), list(disclosures)).encode()


def make_batch(n=2, author=DEPT, seal_seed=DEPT_SEED, seal_author=None, seal_kind=3):
    """Members of a sealed batch and the seal's bundle."""
    bodies = [record_body(f"B-{i}") for i in range(n)]
    sbs = [V.encode_tx_signing("nanjing", author, 1, b) for b in bodies]
    leaves = [V.leaf_hash(s) for s in sbs]
    root = V.merkle_root(leaves)
    if seal_kind == 3:
        seal = make_tx(3, {"root": root, "count": n}, author=seal_author or author, seed=seal_seed)
    else:
        seal = make_tx(1, record_body("not-a-seal"), author=seal_author or author, seed=seal_seed)
    members = [s + b"\x02" + root + V.enc_u32(i) for i, s in enumerate(sbs)]
    seal_bundle = make_bundle([seal, V.sha256(b"filler")], 0)
    paths = [V.Proof(i, n, V.inclusion_path(i, leaves)) for i in range(n)]
    return members, seal_bundle, paths, root


def roots_with_others():
    """KAT trust roots plus a Nanjing hospital and a Suzhou department."""
    roots = copy.deepcopy(ROOTS)
    roots.members["nanjing.hospital"] = V.Member("nanjing.hospital", "hospital",
                                                  [V.ed25519_public_from_seed(HOSPITAL_SEED)], "nanjing")
    roots.members["suzhou.civil-affairs"] = V.Member("suzhou.civil-affairs", "department",
                                                      [V.ed25519_public_from_seed(OTHER_SEED)], "suzhou",
                                                      frozenset({"marriage"}))
    return roots


def roots_with_service_members():
    """roots_with_others() plus the Nanjing gateway, a Nanjing utility and the Suzhou gateway."""
    roots = roots_with_others()
    for mid, role, seed, chain in [("nanjing.gateway", "gateway", GATEWAY_SEED, "nanjing"),
                                   ("nanjing.water", "utility", UTILITY_SEED, "nanjing"),
                                   ("suzhou.gateway", "gateway", OTHER_SEED, "suzhou")]:
        roots.members[mid] = V.Member(mid, role, [V.ed25519_public_from_seed(seed)], chain)
    return roots


def hand_u32(n):
    return n.to_bytes(4, "big")


def hand_str(b):
    """str of section 2 from already-encoded UTF-8 bytes: u32 length, then the bytes."""
    return hand_u32(len(b)) + b


def hand_tx_head(author, kind, chain=b"nanjing"):
    """domain("tongban/tx/v1") ‖ str(chain_id) ‖ str(author) ‖ u8(kind), written out by hand."""
    return (b"\x00\x00\x00\x0d" + b"tongban/tx/v1" + hand_str(chain) + hand_str(author) + bytes([kind]))


# ---------------------------------------------------------------- tests

class KnownAnswers(unittest.TestCase):
    def test_main_package_verifies(self):
        ok, facts, _ = judge(MAIN)
        self.assertTrue(ok, [f.line() for f in facts if f.status != V.HOLDS])
        self.assertEqual(len(facts), 15)

    def test_batch_package_verifies(self):
        ok, facts, _ = judge(BATCH)
        self.assertTrue(ok, [f.line() for f in facts if f.status != V.HOLDS])
        self.assertTrue(any(f.name.startswith("bundle[0].seal.") for f in facts))

    def test_kat_self_test(self):
        lines = []
        self.assertTrue(V.kat_self_test(KAT, out=lines.append), "\n".join(lines))

    def test_reencoding_is_identity(self):
        for data in (MAIN, BATCH):
            self.assertEqual(V.decode_package(data).encode(), data)

    def test_cli(self):
        import subprocess
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            good = os.path.join(d, "good.bin")
            bad = os.path.join(d, "bad.bin")
            with open(good, "wb") as fh:
                fh.write(MAIN)
            with open(bad, "wb") as fh:
                fh.write(MAIN[:-1] + bytes([MAIN[-1] ^ 1]))
            script = os.path.join(HERE, "verify.py")
            r = subprocess.run([sys.executable, script, good, "--kat", KAT_PATH], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("VALID", r.stdout)
            r = subprocess.run([sys.executable, script, bad, "--kat", KAT_PATH], capture_output=True, text=True)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("disclosure.mismatch", r.stdout)
            r = subprocess.run([sys.executable, script, "--kat-self-test", "--kat", KAT_PATH],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


class Mutations(unittest.TestCase):
    def _flip_all(self, data, bits):
        V._VERIFY_CACHE.clear()  # honest timings: no signature verdict carried over between tests
        verdicts = {"decode": 0, "verify": 0}
        for pos in range(len(data)):
            for bit in bits(pos):
                m = bytearray(data)
                m[pos] ^= 1 << bit
                ok, facts, pkg = judge(bytes(m))
                self.assertFalse(ok, f"flipping bit {bit} of byte {pos} still verifies")
                verdicts["decode" if pkg is None else "verify"] += 1
        return verdicts

    def test_every_byte_of_main_package_one_bit(self):
        t = time.time()
        v = self._flip_all(MAIN, lambda pos: [pos % 8])
        dt = time.time() - t
        self.assertLess(dt, 60)
        print(f"\n  main package: {len(MAIN)} single-bit mutations ({v['decode']} refused by the decoder, "
              f"{v['verify']} decoded and failed verification) in {dt:.1f}s", file=sys.stderr)

    def test_every_bit_of_main_package(self):
        t = time.time()
        v = self._flip_all(MAIN, lambda pos: range(8))
        print(f"\n  main package: all {8 * len(MAIN)} bit flips ({v['decode']} refused by the decoder, "
              f"{v['verify']} failed verification) in {time.time() - t:.1f}s", file=sys.stderr)

    def test_every_byte_of_batch_package_one_bit(self):
        t = time.time()
        v = self._flip_all(BATCH, lambda pos: [pos % 8])
        print(f"\n  batch package: {len(BATCH)} single-bit mutations ({v['decode']} refused by the decoder, "
              f"{v['verify']} failed verification) in {time.time() - t:.1f}s", file=sys.stderr)

    def test_truncation_and_trailing_bytes(self):
        for data in (MAIN, BATCH):
            for n in range(len(data)):
                with self.assertRaises(V.DecodeError):
                    V.decode_package(data[:n])
            for extra in (b"\x00", b"\xff", b"\x00" * 32):
                with self.assertRaises(V.DecodeError):
                    V.decode_package(data + extra)
                ok, facts, pkg = judge(data + extra)
                self.assertFalse(ok)
                self.assertEqual(codes(facts), {"package.malformed"})


class Ed25519(unittest.TestCase):
    def test_sign_verify_roundtrip(self):
        pk = V.ed25519_public_from_seed(DEPT_SEED)
        self.assertEqual(pk.hex(), KAT["keys"]["department"]["public"])
        sig = V.ed25519_sign(DEPT_SEED, b"abc")
        self.assertTrue(V._ed25519_verify_strict_uncached(pk, b"abc", sig))
        self.assertFalse(V._ed25519_verify_strict_uncached(pk, b"abd", sig))
        # S + L is the same scalar but not canonical
        s = int.from_bytes(sig[32:], "little") + V.L
        self.assertFalse(V._ed25519_verify_strict_uncached(pk, b"abc", sig[:32] + s.to_bytes(32, "little")))

    def test_rfc8032_test1(self):
        sk = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
        pk = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        sig = bytes.fromhex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                            "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
        self.assertEqual(V.ed25519_public_from_seed(sk), pk)
        self.assertEqual(V.ed25519_sign(sk, b""), sig)
        self.assertTrue(V._ed25519_verify_strict_uncached(pk, b"", sig))

    def test_small_order_and_noncanonical_keys_refused(self):
        # the eight small-order points, plus non-canonical encodings of some of them
        small = ["0100000000000000000000000000000000000000000000000000000000000000",
                 "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
                 "0000000000000000000000000000000000000000000000000000000000000000",
                 "0000000000000000000000000000000000000000000000000000000000000080",
                 "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
                 "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
                 "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
                 "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
                 "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p + 1
                 "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p
                 "0100000000000000000000000000000000000000000000000000000000000080"]  # -0 sign
        for h in small:
            self.assertFalse(V.ed25519_key_ok(bytes.fromhex(h)), h)
        for e in KAT["keys"]["endorsers"]:
            self.assertTrue(V.ed25519_key_ok(bytes.fromhex(e["public"])))
        # y = 3 is a point of large order; y = p + 3 encodes it non-canonically and is refused
        y3 = (3).to_bytes(32, "little")
        self.assertTrue(V.ed25519_key_ok(y3))
        for y in (3, 4, 18):
            for sign in (0, 1):
                enc = ((y + V.P) | (sign << 255)).to_bytes(32, "little")
                self.assertFalse(V.ed25519_key_ok(enc), enc.hex())
                self.assertFalse(V._ed25519_verify_strict_uncached(enc, b"m", y3 + bytes(32)))

    def test_speccheck(self):
        vd = vectors_dir()
        if vd is None:
            self.skipTest("TONGBAN_VECTORS=skip")
        with open(os.path.join(vd, "ed25519-speccheck", "cases.json")) as fh:
            cases = json.load(fh)
        self.assertEqual(len(cases), 10)
        got = [V._ed25519_verify_strict_uncached(bytes.fromhex(c["pub_key"]), bytes.fromhex(c["message"]),
                                                 bytes.fromhex(c["signature"])) for c in cases]
        self.assertEqual([i for i, g in enumerate(got) if g], [3], "only case 3 (0-based) is accepted")

    def test_wycheproof_all(self):
        vd = vectors_dir()
        if vd is None:
            self.skipTest("TONGBAN_VECTORS=skip")
        with open(os.path.join(vd, "wycheproof", "ed25519_test.json")) as fh:
            w = json.load(fh)
        n = 0
        t = time.time()
        for g in w["testGroups"]:
            pk = bytes.fromhex(g["publicKey"]["pk"])
            for c in g["tests"]:
                got = V._ed25519_verify_strict_uncached(pk, bytes.fromhex(c["msg"]), bytes.fromhex(c["sig"]))
                self.assertIn(c["result"], ("valid", "invalid"))
                self.assertEqual(got, c["result"] == "valid", f"tcId {c['tcId']} {c['flags']} {c['comment']}")
                n += 1
        self.assertEqual(n, w["numberOfTests"])
        print(f"\n  wycheproof: all {n} Ed25519 cases in {time.time() - t:.1f}s", file=sys.stderr)


class Merkle(unittest.TestCase):
    def test_doc_examples(self):
        self.assertEqual(V.leaf_hash(b"").hex(), KAT["primitives"]["leaf_hash_of_empty"])
        self.assertEqual(V.merkle_root([]).hex(), KAT["primitives"]["empty_tree_root"])

    def test_path_length_rule(self):
        for n in range(1, 70):
            leaves = [V.leaf_hash(bytes([i])) for i in range(n)]
            root = V.merkle_root(leaves)
            for i in range(n):
                p = V.inclusion_path(i, leaves)
                self.assertEqual(len(p), V.inclusion_path_length(i, n))
                self.assertIsNone(V.verify_inclusion(leaves[i], i, n, p, root))
                self.assertEqual(V.verify_inclusion(leaves[i], i, n, p + [root], root), "path_length")
                if p:
                    self.assertEqual(V.verify_inclusion(leaves[i], i, n, p[:-1], root), "path_length")
                self.assertEqual(V.verify_inclusion(leaves[i], i + n, n, p, root), "index_out_of_range")
        self.assertEqual(V.verify_inclusion(b"\0" * 32, 0, 0, [], b"\0" * 32), "empty_tree")

    def test_transparency_dev_vectors(self):
        vd = vectors_dir()
        if vd is None:
            self.skipTest("TONGBAN_VECTORS=skip")
        base = os.path.join(vd, "transparency-dev-merkle")
        with open(os.path.join(base, "reference_leaves_roots.json")) as fh:
            ref = json.load(fh)
        leaves = [V.leaf_hash(bytes.fromhex(x)) for x in ref["leaf_inputs_hex"]]
        for size, root in ref["root_by_size_hex"].items():
            self.assertEqual(V.merkle_root(leaves[:int(size)]).hex(), root)
        files = sorted(glob.glob(os.path.join(base, "testdata", "inclusion", "**", "*.json"), recursive=True))
        self.assertTrue(files)
        b64 = lambda s: base64.b64decode(s) if s is not None else b""  # noqa: E731
        for f in files:
            with open(f) as fh:
                c = json.load(fh)
            res = V.verify_inclusion(b64(c.get("leafHash")), c["leafIdx"], c["treeSize"],
                                     [b64(x) for x in (c.get("proof") or [])], b64(c.get("root")))
            self.assertEqual(res is not None, c["wantErr"], f)


class Checks(unittest.TestCase):
    """Packages with one chosen defect each (signatures valid unless the defect is the signature)."""

    def setUp(self):
        self.txs = [make_tx(1, record_body()), make_tx(2, {"record_type": "marriage", "record_id": "R-0",
                                                            "version": 1, "reason": 2, "at_ms": NOW - 5000})]

    def assertFails(self, data, *expected, roots=ROOTS):
        ok, facts, _ = judge(data, roots)
        self.assertFalse(ok)
        got = codes(facts)
        for e in expected:
            self.assertIn(e, got, [f.line() for f in facts if f.status != V.HOLDS])
        return facts

    def assertValid(self, data, roots=ROOTS):
        ok, facts, _ = judge(data, roots)
        self.assertTrue(ok, [f.line() for f in facts if f.status != V.HOLDS])

    def test_builder_sanity(self):
        self.assertValid(package([make_bundle(self.txs, 0)], [status_disclosure()]))
        self.assertValid(package([make_bundle(self.txs, 1)]))

    def test_package_level(self):
        b = make_bundle(self.txs, 0)
        self.assertFails(package([b], fmt=2), "package.format")
        self.assertFails(package([b], registry_hash=b"\x01" * 32), "package.registry_mismatch")
        self.assertFails(package([]), "package.empty")

    def test_chain_unknown(self):
        tx = make_tx(1, record_body(), chain="shanghai")
        facts = self.assertFails(package([make_bundle([tx], 0, chain="shanghai")]), "chain.unknown")
        self.assertIn(("bundle[0].certificate", V.SKIPPED), {(f.name, f.status) for f in facts})

    def test_certificate(self):
        b = make_bundle(self.txs, 0)
        for signers, code in [((0, 2, 4), "certificate.unknown_signer"), ((0, 2, 2), "certificate.duplicate_signer"),
                              ((2, 0, 2), "certificate.duplicate_signer"), ((0, 3, 2), "certificate.unordered"),
                              ((0, 2), "certificate.below_threshold")]:
            bb = copy.deepcopy(b)
            bb.endorsements = [(s, V.sha256(b"x") * 2) if s >= 4 else (s, V.ed25519_sign(
                ENDORSER_SEEDS[s], bb.header.endorsement_message())) for s in signers]
            self.assertFails(package([bb]), code)
        bb = copy.deepcopy(b)
        bb.endorsements[1] = (bb.endorsements[1][0], bb.endorsements[0][1])
        self.assertFails(package([bb]), "certificate.bad_signature")
        self.assertValid(package([make_bundle(self.txs, 0, signers=(0, 1, 2, 3))]))
        # a certificate made for another chain never counts (endorsement message names the chain)
        other = V.ChainRoots("suzhou", ROOTS.chains["nanjing"].keys, 3)
        self.assertEqual(V.certify(b.header, b.endorsements, other)[0], "certificate.wrong_chain")
        h2 = copy.deepcopy(b.header)
        h2.chain_id = "suzhou"
        self.assertEqual(V.certify(h2, b.endorsements, other)[0], "certificate.bad_signature")

    def test_from_future(self):
        self.assertValid(package([make_bundle(self.txs, 0, ts=NOW + 30000)]))
        self.assertFails(package([make_bundle(self.txs, 0, ts=NOW + 30001)]), "header.from_future")

    def test_proof_size_and_merkle(self):
        facts = self.assertFails(package([make_bundle(self.txs, 0, tx_count=3)]), "proof.size_mismatch")
        self.assertIn(("bundle[0].inclusion", V.SKIPPED), {(f.name, f.status) for f in facts})
        b = make_bundle(self.txs, 0)
        bb = copy.deepcopy(b)
        bb.proof.index = 2
        self.assertFails(package([bb]), "merkle.index_out_of_range")
        bb = copy.deepcopy(b)
        bb.proof.path.append(b"\0" * 32)
        self.assertFails(package([bb]), "merkle.path_length")
        bb = copy.deepcopy(b)
        bb.proof.path[0] = b"\0" * 32
        self.assertFails(package([bb]), "merkle.root_mismatch")
        bb = copy.deepcopy(b)
        bb.proof.index = 1  # right path length, wrong position
        self.assertFails(package([bb]), "merkle.root_mismatch")
        empty = make_bundle(self.txs, 0, tx_count=0)
        empty.proof.size = 0
        self.assertFails(package([empty]), "merkle.empty_tree")

    def test_tx_malformed(self):
        good = make_tx(1, record_body())
        sb = V.encode_tx_signing("nanjing", DEPT, 1, record_body())
        two = sorted([SUBJECT, V.sha256(b"s2")])
        bad = [
            good + b"\x00",                                                 # trailing byte
            good[:-1],                                                      # truncated
            sb + b"\x03" + b"\0" * 64,                                      # unknown authorization tag
            make_tx(1, record_body(subjects=two[::-1])),                    # subjects not increasing
            make_tx(1, record_body(subjects=[SUBJECT, SUBJECT])),           # repeated subject
            make_tx(1, record_body(subjects=[])),                           # no subject
            make_tx(1, record_body(subjects=sorted(V.sha256(bytes([i])) for i in range(9)))),  # 9 subjects
            make_tx(2, {"record_type": "m", "record_id": "r", "version": 1, "reason": 3, "at_ms": 0}),
            # unknown kinds: 07 (the first number after the six kinds of section 8; this case used 04
            # until kind 04, the access-log entry, was specified), 00 and ff
            good.replace(b"\x00\x00\x00\x15nanjing.civil-affairs\x01", b"\x00\x00\x00\x15nanjing.civil-affairs\x07", 1),
            good.replace(b"\x00\x00\x00\x15nanjing.civil-affairs\x01", b"\x00\x00\x00\x15nanjing.civil-affairs\x00", 1),
            good.replace(b"\x00\x00\x00\x15nanjing.civil-affairs\x01", b"\x00\x00\x00\x15nanjing.civil-affairs\xff", 1),
            good.replace(b"nanjing.civil-affairs", b"nanjing.civil-affair\xff", 1),   # invalid UTF-8
            good.replace(b"\x00\x00\x00\x0dtongban/tx/v1", b"\x00\x00\x00\x0dtongban/tx/v2", 1),
        ]
        for i, tx in enumerate(bad):
            facts = self.assertFails(package([make_bundle([tx], 0)]), "tx.malformed")
            skipped = {f.name for f in facts if f.status == V.SKIPPED}
            self.assertEqual(skipped, {"bundle[0].tx_chain", "bundle[0].authorization"}, i)
        # at the limits: 8 subjects and 128-byte strings decode
        self.assertValid(package([make_bundle([make_tx(1, record_body(
            record_id="r" * 128, subjects=sorted(V.sha256(bytes([i])) for i in range(8))))], 0)]))
        self.assertFails(package([make_bundle([make_tx(1, record_body(record_id="r" * 129))], 0)]), "tx.malformed")

    def test_tx_wrong_chain_and_authors(self):
        self.assertFails(package([make_bundle([make_tx(1, record_body(), chain="suzhou")], 0)]), "tx.wrong_chain")
        self.assertFails(package([make_bundle([make_tx(1, record_body(), author="nanjing.nobody")], 0)]),
                         "tx.unknown_author")
        self.assertFails(package([make_bundle([make_tx(1, record_body(), seed=OTHER_SEED)], 0)]), "tx.bad_signature")
        roots = roots_with_others()
        self.assertFails(package([make_bundle([make_tx(1, record_body(), author="nanjing.hospital",
                                                       seed=HOSPITAL_SEED)], 0)]), "tx.author_role", roots=roots)
        # a department of another city, even with a valid signature and the record type
        self.assertFails(package([make_bundle([make_tx(1, record_body(), author="suzhou.civil-affairs",
                                                       seed=OTHER_SEED)], 0)]), "tx.foreign_author", roots=roots)
        self.assertFails(package([make_bundle([make_tx(3, {"root": b"\1" * 32, "count": 1},
                                                       author="suzhou.civil-affairs", seed=OTHER_SEED)], 0)]),
                         "tx.foreign_author", roots=roots)
        # a record type the author does not own (commitment and revocation)
        self.assertFails(package([make_bundle([make_tx(1, dict(record_body(), record_type="divorce"))], 0)]),
                         "tx.not_owner", roots=roots)
        self.assertFails(package([make_bundle([make_tx(2, {"record_type": "birth", "record_id": "R-0",
                                                            "version": 1, "reason": 1, "at_ms": 0})], 0)]),
                         "tx.not_owner", roots=roots)
        self.assertFails(package([make_bundle([make_tx(1, dict(record_body(), record_type="divorce"),
                                                       author="nanjing.civil-affair", seed=OTHER_SEED)], 0)]),
                         "tx.unknown_author", roots=roots)
        # a batch seal may be made by any member
        self.assertValid(package([make_bundle([make_tx(3, {"root": b"\1" * 32, "count": 1},
                                                       author="nanjing.hospital", seed=HOSPITAL_SEED)], 0)]),
                         roots=roots)

    def test_batches(self):
        members, seal_bundle, paths, root = make_batch(3)
        ok_bundle = make_bundle(members, 1, batch=V.BatchEvidence(seal_bundle, paths[1]))
        self.assertValid(package([ok_bundle]))
        # member without evidence, self-signed with evidence
        self.assertFails(package([make_bundle(members, 1)]), "tx.needs_batch")
        self.assertFails(package([make_bundle(self.txs, 0, batch=V.BatchEvidence(seal_bundle, paths[1]))]),
                         "tx.unexpected_batch")
        # wrong member path index / size / hashes
        for p in (paths[0], V.Proof(1, 4, paths[1].path), V.Proof(1, 3, [b"\0" * 32] * len(paths[1].path)),
                  V.Proof(1, 3, paths[1].path + [b"\0" * 32])):
            self.assertFails(package([make_bundle(members, 1, batch=V.BatchEvidence(seal_bundle, p))]),
                             "tx.batch_mismatch")
        # member claims another root
        other = members[1][:-36] + V.sha256(b"other root") + members[1][-4:]
        self.assertFails(package([make_bundle([other], 0, batch=V.BatchEvidence(seal_bundle, paths[1]))]),
                         "tx.batch_mismatch")
        # seal by another author
        roots = roots_with_others()
        m2, sb2, p2, _ = make_batch(2, seal_seed=HOSPITAL_SEED, seal_author="nanjing.hospital")
        self.assertFails(package([make_bundle(m2, 0, batch=V.BatchEvidence(sb2, p2[0]))]), "tx.batch_mismatch",
                         roots=roots)
        # seal bundle holding something else than a seal
        m3, sb3, p3, _ = make_batch(2, seal_kind=1)
        self.assertFails(package([make_bundle(m3, 0, batch=V.BatchEvidence(sb3, p3[0]))]), "tx.batch_mismatch")
        # seal bundle failing its own checks: reported under .seal, member authorisation skipped
        bad_seal = copy.deepcopy(seal_bundle)
        bad_seal.endorsements = bad_seal.endorsements[:2]
        facts = self.assertFails(package([make_bundle(members, 1, batch=V.BatchEvidence(bad_seal, paths[1]))]),
                                 "certificate.below_threshold")
        st = {f.name: f.status for f in facts}
        self.assertEqual(st["bundle[0].seal.certificate"], V.FAILS)
        self.assertEqual(st["bundle[0].authorization"], V.SKIPPED)
        # a seal signed by the wrong key
        bad_sig = make_tx(3, {"root": root, "count": 3}, seed=OTHER_SEED)
        sb4 = make_bundle([bad_sig], 0)
        self.assertFails(package([make_bundle(members, 1, batch=V.BatchEvidence(sb4, paths[1]))]), "tx.bad_signature")
        # a seal that is itself a batch member (not self-signed)
        sb5 = make_bundle([make_tx(3, {"root": root, "count": 3}, member=(root, 0))], 0)
        self.assertFails(package([make_bundle(members, 1, batch=V.BatchEvidence(sb5, paths[1]))]), "tx.needs_batch")
        # seal_fields may not nest batch evidence: refused by the decoder
        nested = copy.deepcopy(ok_bundle)
        nested.batch.seal.batch = V.BatchEvidence(seal_bundle, paths[1])
        ok, facts, pkg = judge(package([nested]))
        self.assertIsNone(pkg)
        self.assertEqual(codes(facts), {"package.malformed"})

    def test_disclosures(self):
        b = make_bundle(self.txs, 0)
        self.assertValid(package([b], [status_disclosure(0)]))
        facts = self.assertFails(package([b], [status_disclosure(1)]), "disclosure.no_bundle")
        self.assertFails(package([b, make_bundle(self.txs, 1)], [status_disclosure(1)]), "disclosure.not_a_record")
        d = status_disclosure(0)
        d.value = V.Value(1, "divorced")
        self.assertFails(package([b], [d]), "disclosure.mismatch")
        d = status_disclosure(0)
        d.name = "Status"
        self.assertFails(package([b], [d]), "disclosure.mismatch")
        d = status_disclosure(0)
        d.proof.index = 3
        self.assertFails(package([b], [d]), "disclosure.mismatch")
        # disclosure on a bundle that failed: skipped, never holding
        bad = make_bundle(self.txs, 0, ts=NOW + 10 ** 6)
        facts = self.assertFails(package([bad], [status_disclosure(0)]), "header.from_future")
        st = {f.name: f.status for f in facts}
        self.assertEqual(st["disclosure[0].record"], V.SKIPPED)
        self.assertEqual(st["disclosure[0].opens"], V.SKIPPED)
        # every field of the KAT record can be disclosed
        secret = bytes.fromhex(KAT["record"]["secret"])
        fields = {f["name"]: V.Value.from_json(f["value"]) for f in KAT["record"]["fields"]}
        names = sorted(fields)
        leaves = [V.leaf_hash(V.field_leaf_data(n, V.field_salt(secret, n), fields[n])) for n in names]
        ds = [V.Disclosure(0, n, fields[n], V.field_salt(secret, n),
                           V.Proof(i, len(names), V.inclusion_path(i, leaves))) for i, n in enumerate(names)]
        self.assertValid(package([b], ds))


class Decoder(unittest.TestCase):
    def test_limits_refused_before_allocation(self):
        pkg = V.decode_package(MAIN)
        head = V.enc_domain(V.TAG_EVIDENCE) + V.enc_u16(1) + pkg.registry_hash
        for blob, what in [(head + V.enc_u32(4097), "bundles"),
                           (head + V.enc_u32(0) + V.enc_u32(4097), "disclosures"),
                           (head + V.enc_u32(1) + pkg.bundles[0].header.encode() + V.enc_u32(257), "certificate"),
                           (head + V.enc_u32(1) + pkg.bundles[0].header.encode() + V.enc_u32(0) + V.enc_u32(65537),
                            "tx"),
                           (head + V.enc_u32(1) + pkg.bundles[0].header.encode() + V.enc_u32(0) + V.enc_u32(0)
                            + V.enc_u64(0) + V.enc_u64(1) + V.enc_u32(65), "proof path")]:
            with self.assertRaises(V.DecodeError) as cm:
                V.decode_package(blob)
            self.assertIn("above limit", str(cm.exception), what)
            self.assertIn(what, str(cm.exception))

    def test_values(self):
        def dec(b):
            r = V.Reader(b)
            v = V.read_value(r)
            r.end()
            return v
        self.assertEqual(dec(b"\x04\x07\xd0\x02\x1d").v, (2000, 2, 29))
        for bad in [b"\x04\x07\xcf\x02\x1d", b"\x04\x07\xd0\x0d\x01", b"\x04\x07\xd0\x04\x1f", b"\x04\x07\xd0\x01\x00",
                    b"\x03\x02", b"\x05", b"\x00", b"\x01" + V.enc_u32(4097) + b"a" * 4097, b"\x01\x00\x00\x00\x01\xc0",
                    b"\x02" + b"\0" * 7, b"\x03\x01\x00"]:
            with self.assertRaises(V.DecodeError, msg=bad.hex()):
                dec(bad)
        self.assertEqual(dec(b"\x01" + V.enc_u32(4096) + b"a" * 4096).v, "a" * 4096)
        self.assertEqual(dec(b"\x02\xff\xff\xff\xff\xff\xff\xff\xfe").v, -2)

    def test_field_names(self):
        self.assertTrue(V.valid_field_name("a_1"))
        self.assertTrue(V.valid_field_name("a" * 64))
        for bad in ["", "a" * 65, "A", "a-b", "é", "a b"]:
            self.assertFalse(V.valid_field_name(bad), bad)


class ServiceKinds(unittest.TestCase):
    """Transaction kinds 05 (application step) and 06 (service receipt), section 8."""

    APPLICATION = bytes(range(32))
    DETAIL = hashlib.sha256(b"step detail").digest()
    DELIVERY = hashlib.sha256(b"delivery").digest()
    REQUEST = hashlib.sha256(b"sealed request as delivered").digest()
    AT = 1558310400123  # 0x0000016ad289b07b

    def step_signing(self, bundle="new-business", step="受理", item="id-card", author=b"nanjing.gateway"):
        # raw[32](application) ‖ str(bundle) ‖ str(step) ‖ str(item) ‖ raw[32](detail) ‖ u64(at_ms)
        return (hand_tx_head(author, 0x05) + self.APPLICATION + hand_str(bundle.encode()) + hand_str(step.encode())
                + hand_str(item.encode()) + self.DETAIL + bytes.fromhex("0000016ad289b07b"))

    def receipt_signing(self, accepted=b"\x01", reason=b"", service=b"water.connect", author=b"nanjing.water"):
        # raw[32](delivery) ‖ raw[32](application) ‖ str(service) ‖ raw[32](request) ‖ u8(accepted)
        # ‖ str(reason) ‖ u64(at_ms)
        return (hand_tx_head(author, 0x06) + self.DELIVERY + self.APPLICATION + hand_str(service) + self.REQUEST
                + accepted + hand_str(reason) + bytes.fromhex("0000016ad289b07b"))

    @staticmethod
    def signed(sb, seed):
        return sb + b"\x01" + V.ed25519_sign(seed, sb)

    def assertRefused(self, data, msg=None):
        with self.assertRaises(V.TxError, msg=msg) as cm:
            V.decode_tx(data)
        return str(cm.exception)

    def test_at_constant(self):
        self.assertEqual(self.AT.to_bytes(8, "big").hex(), "0000016ad289b07b")

    def test_application_step_decodes(self):
        sb = self.step_signing()
        self.assertEqual(len(sb), 17 + 11 + 19 + 1 + 32 + 16 + 10 + 11 + 32 + 8)
        tx_bytes = self.signed(sb, GATEWAY_SEED)
        tx = V.decode_tx(tx_bytes)
        self.assertEqual(tx.chain_id, "nanjing")
        self.assertEqual(tx.author, "nanjing.gateway")
        self.assertEqual(tx.kind, 5)
        self.assertEqual(tx.body, {"application": self.APPLICATION, "bundle": "new-business", "step": "受理",
                                   "item": "id-card", "detail": self.DETAIL, "at_ms": self.AT})
        self.assertEqual(tx.signing_bytes, sb)
        self.assertEqual(tx.auth, 1)
        self.assertEqual(tx.signature, tx_bytes[-64:])
        self.assertIsNone(tx.batch_root)
        self.assertIsNone(tx.batch_index)
        self.assertTrue(V.ed25519_verify_strict(V.ed25519_public_from_seed(GATEWAY_SEED), tx.signing_bytes,
                                                tx.signature))
        self.assertEqual(V.encode_tx_signing(tx.chain_id, tx.author, tx.kind, tx.body), sb)
        # empty strings decode (the decoder sets no lower bound)
        tx = V.decode_tx(self.signed(self.step_signing(bundle="", step="", item=""), GATEWAY_SEED))
        self.assertEqual((tx.body["bundle"], tx.body["step"], tx.body["item"]), ("", "", ""))

    def test_service_receipt_decodes(self):
        for accepted, reason in [(b"\x01", b""), (b"\x00", "水压不足".encode())]:
            sb = self.receipt_signing(accepted=accepted, reason=reason)
            self.assertEqual(len(sb), 17 + 11 + 17 + 1 + 32 + 32 + 17 + 32 + 1 + 4 + len(reason) + 8)
            tx_bytes = self.signed(sb, UTILITY_SEED)
            tx = V.decode_tx(tx_bytes)
            self.assertEqual(tx.chain_id, "nanjing")
            self.assertEqual(tx.author, "nanjing.water")
            self.assertEqual(tx.kind, 6)
            self.assertEqual(tx.body, {"delivery": self.DELIVERY, "application": self.APPLICATION,
                                       "service": "water.connect", "request": self.REQUEST,
                                       "accepted": accepted == b"\x01", "reason": reason.decode(),
                                       "at_ms": self.AT})
            self.assertIs(tx.body["accepted"], accepted == b"\x01")
            self.assertEqual(tx.signing_bytes, sb)
            self.assertEqual(tx.auth, 1)
            self.assertEqual(tx.signature, tx_bytes[-64:])
            self.assertTrue(V.ed25519_verify_strict(V.ed25519_public_from_seed(UTILITY_SEED), tx.signing_bytes,
                                                    tx.signature))
            self.assertEqual(V.encode_tx_signing(tx.chain_id, tx.author, tx.kind, tx.body), sb)

    def test_batch_member_authorization(self):
        root = hashlib.sha256(b"batch root").digest()
        for sb in (self.step_signing(), self.receipt_signing()):
            tx = V.decode_tx(sb + b"\x02" + root + hand_u32(7))
            self.assertEqual((tx.auth, tx.batch_root, tx.batch_index, tx.signature), (2, root, 7, None))
            self.assertEqual(tx.signing_bytes, sb)

    def test_accepted_byte(self):
        for b in (b"\x02", b"\x03", b"\x80", b"\xff"):
            msg = self.assertRefused(self.signed(self.receipt_signing(accepted=b), UTILITY_SEED), b.hex())
            self.assertIn("accepted", msg)

    def test_reason_length(self):
        for reason in (b"r" * 1024, "é".encode() * 512):
            tx = V.decode_tx(self.signed(self.receipt_signing(reason=reason), UTILITY_SEED))
            self.assertEqual(tx.body["reason"], reason.decode())
        for reason in (b"r" * 1025, "é".encode() * 512 + b"r", b"r" * 4096):
            msg = self.assertRefused(self.signed(self.receipt_signing(reason=reason), UTILITY_SEED), len(reason))
            self.assertIn("above limit 1024", msg)
        # so large the whole transaction is above 65,536 bytes: refused by that limit first
        msg = self.assertRefused(self.signed(self.receipt_signing(reason=b"r" * 65536), UTILITY_SEED))
        self.assertIn("above 65536", msg)
        # a length prefix of 1025 is refused even when fewer bytes follow (checked before reading them)
        sb = self.receipt_signing(reason=b"")
        cut = sb.index(self.REQUEST) + 32 + 1
        msg = self.assertRefused(sb[:cut] + hand_u32(1025) + b"r" * 8)
        self.assertIn("above limit 1024", msg)
        self.assertRefused(self.signed(self.receipt_signing(reason=b"\xc3"), UTILITY_SEED))  # invalid UTF-8

    def test_trailing_and_truncated(self):
        root = hashlib.sha256(b"batch root").digest()
        for sb, seed in ((self.step_signing(), GATEWAY_SEED), (self.receipt_signing(), UTILITY_SEED)):
            for good in (self.signed(sb, seed), sb + b"\x02" + root + hand_u32(0)):
                V.decode_tx(good)
                for extra in (b"\x00", b"\x01", b"\x00" * 64):
                    msg = self.assertRefused(good + extra, extra.hex())
                    self.assertIn("trailing", msg)
                for n in range(len(good)):
                    self.assertRefused(good[:n], n)
            # unknown authorization tag after a complete body
            self.assertRefused(sb + b"\x03" + b"\x00" * 64)
        # kind 07 is not defined
        self.assertRefused(self.signed(hand_tx_head(b"nanjing.gateway", 0x07) + self.APPLICATION, GATEWAY_SEED))

    def test_package_author_roles(self):
        roots = roots_with_service_members()
        step = self.signed(self.step_signing(), GATEWAY_SEED)
        receipt = self.signed(self.receipt_signing(), UTILITY_SEED)
        dept_receipt = self.signed(self.receipt_signing(author=DEPT.encode()), DEPT_SEED)
        txs = [step, receipt, dept_receipt]
        for i in range(len(txs)):
            ok, facts, _ = judge(package([make_bundle(txs, i)]), roots)
            self.assertTrue(ok, [f.line() for f in facts if f.status != V.HOLDS])
        wrong = [
            self.signed(self.step_signing(author=DEPT.encode()), DEPT_SEED),                # step by a department
            self.signed(self.step_signing(author=b"nanjing.water"), UTILITY_SEED),          # step by a utility
            self.signed(self.receipt_signing(author=b"nanjing.gateway"), GATEWAY_SEED),     # receipt by a gateway
            self.signed(self.receipt_signing(author=b"nanjing.hospital"), HOSPITAL_SEED),   # receipt by a hospital
        ]
        for i, t in enumerate(wrong):
            ok, facts, _ = judge(package([make_bundle([t], 0)]), roots)
            self.assertFalse(ok, i)
            self.assertEqual(codes(facts), {"tx.author_role"}, i)
        # right role, another city's gateway; right role, wrong key
        ok, facts, _ = judge(package([make_bundle([self.signed(self.step_signing(author=b"suzhou.gateway"),
                                                               OTHER_SEED)], 0)]), roots)
        self.assertEqual(codes(facts), {"tx.foreign_author"})
        ok, facts, _ = judge(package([make_bundle([self.signed(self.receipt_signing(), GATEWAY_SEED)], 0)]), roots)
        self.assertEqual(codes(facts), {"tx.bad_signature"})
        # a receipt is not a record commitment: a disclosure on it is refused
        ok, facts, _ = judge(package([make_bundle(txs, 1)], [status_disclosure(0)]), roots)
        self.assertEqual(codes(facts), {"disclosure.not_a_record"})
        # in a package, a malformed receipt is tx.malformed
        bad = self.signed(self.receipt_signing(accepted=b"\x02"), UTILITY_SEED)
        ok, facts, _ = judge(package([make_bundle([bad], 0)]), roots)
        self.assertEqual(codes(facts), {"tx.malformed"})


class AccessLog(unittest.TestCase):
    """Transaction kind 04 (access-log entry, author role gateway), section 8."""

    QUESTION = hashlib.sha256(b"question").digest()
    ANSWER = hashlib.sha256(b"answer commitment").digest()
    REQUEST_ID = bytes(range(0x40, 0x60))
    # increasing in byte order (first byte 01 < 02), decreasing if read as little-endian integers
    REF_A = b"\x01" + b"\x00" * 30 + b"\x02"
    REF_B = b"\x02" + b"\x00" * 30 + b"\x01"
    AT = 1558310400123  # 0x0000016ad289b07b

    def access_signing(self, refs=None, requester=b"nanjing.service-centre", provider=b"nanjing.civil-affairs",
                       contract=b"marriage-status", author=b"nanjing.gateway", count=None, chain=b"nanjing"):
        # str(requester) ‖ str(provider) ‖ str(contract) ‖ u32(contract_version)
        # ‖ list<raw[32]>(subject_refs) ‖ raw[32](question) ‖ raw[32](answer) ‖ raw[32](request_id) ‖ u64(at_ms)
        refs = [self.REF_A, self.REF_B] if refs is None else refs
        return (hand_tx_head(author, 0x04, chain) + hand_str(requester) + hand_str(provider) + hand_str(contract)
                + hand_u32(3) + hand_u32(len(refs) if count is None else count) + b"".join(refs)
                + self.QUESTION + self.ANSWER + self.REQUEST_ID + bytes.fromhex("0000016ad289b07b"))

    @staticmethod
    def signed(sb, seed=GATEWAY_SEED):
        return sb + b"\x01" + V.ed25519_sign(seed, sb)

    def assertRefused(self, data, *fragments):
        with self.assertRaises(V.TxError) as cm:
            V.decode_tx(data)
        for f in fragments:
            self.assertIn(f, str(cm.exception))
        return str(cm.exception)

    def test_byte_by_byte(self):
        sb = (bytes.fromhex("0000000d") + b"tongban/tx/v1"             # domain("tongban/tx/v1")
              + bytes.fromhex("00000007") + b"nanjing"                 # str(chain_id)
              + bytes.fromhex("0000000f") + b"nanjing.gateway"         # str(author)
              + bytes.fromhex("04")                                    # u8(kind) access-log entry
              + bytes.fromhex("00000016") + b"nanjing.service-centre"  # str(requester)
              + bytes.fromhex("00000015") + b"nanjing.civil-affairs"   # str(provider)
              + bytes.fromhex("0000000f") + b"marriage-status"         # str(contract)
              + bytes.fromhex("00000003")                              # u32(contract_version) 3
              + bytes.fromhex("00000002")                              # list count 2
              + bytes.fromhex("01" + "00" * 30 + "02")                 # subject_refs[0]
              + bytes.fromhex("02" + "00" * 30 + "01")                 # subject_refs[1]
              + self.QUESTION                                          # raw[32](question)
              + self.ANSWER                                            # raw[32](answer)
              + bytes.fromhex("404142434445464748494a4b4c4d4e4f"
                              "505152535455565758595a5b5c5d5e5f")      # raw[32](request_id)
              + bytes.fromhex("0000016ad289b07b"))                     # u64(at_ms)
        self.assertEqual(len(sb), 17 + 11 + 19 + 1 + 26 + 25 + 19 + 4 + 4 + 64 + 96 + 8)
        self.assertEqual(sb, self.access_signing())
        tx_bytes = self.signed(sb)
        self.assertEqual(len(tx_bytes), len(sb) + 65)
        tx = V.decode_tx(tx_bytes)
        self.assertEqual(tx.chain_id, "nanjing")
        self.assertEqual(tx.author, "nanjing.gateway")
        self.assertEqual(tx.kind, 4)
        self.assertEqual(tx.body, {"requester": "nanjing.service-centre", "provider": "nanjing.civil-affairs",
                                   "contract": "marriage-status", "contract_version": 3,
                                   "subject_refs": [self.REF_A, self.REF_B], "question": self.QUESTION,
                                   "answer": self.ANSWER, "request_id": self.REQUEST_ID, "at_ms": self.AT})
        self.assertEqual(tx.signing_bytes, sb)
        self.assertEqual(tx.auth, 1)
        self.assertEqual(tx.signature, tx_bytes[-64:])
        self.assertIsNone(tx.batch_root)
        self.assertIsNone(tx.batch_index)
        self.assertTrue(V.ed25519_verify_strict(V.ed25519_public_from_seed(GATEWAY_SEED), tx.signing_bytes,
                                                tx.signature))
        self.assertEqual(V.encode_tx_signing(tx.chain_id, tx.author, tx.kind, tx.body), sb)
        # as a batch member
        root = hashlib.sha256(b"batch root").digest()
        tx = V.decode_tx(sb + b"\x02" + root + hand_u32(5))
        self.assertEqual((tx.auth, tx.batch_root, tx.batch_index, tx.signature), (2, root, 5, None))
        # empty strings decode (no lower bound at the decoding level)
        tx = V.decode_tx(self.signed(self.access_signing(requester=b"", provider=b"", contract=b"")))
        self.assertEqual((tx.body["requester"], tx.body["provider"], tx.body["contract"]), ("", "", ""))

    def test_subject_count(self):
        refs = sorted(hashlib.sha256(bytes([i])).digest() for i in range(9))
        for n in (1, 8):
            tx = V.decode_tx(self.signed(self.access_signing(refs=refs[:n])))
            self.assertEqual(tx.body["subject_refs"], refs[:n])
            self.assertEqual(V.encode_tx_signing(tx.chain_id, tx.author, tx.kind, tx.body), tx.signing_bytes)
        self.assertRefused(self.signed(self.access_signing(refs=[])), "without subject references")
        self.assertRefused(self.signed(self.access_signing(refs=refs)), "subject_refs", "above limit 8")
        # a count above 8 is refused before the references are read
        sb = self.access_signing()
        cut = sb.index(hand_u32(3) + hand_u32(2)) + 4
        for count in (9, 0xFFFFFFFF):
            self.assertRefused(sb[:cut] + hand_u32(count), "above limit 8")
        # a count that does not match the references that follow
        self.assertRefused(self.signed(self.access_signing(count=1)))
        self.assertRefused(self.signed(self.access_signing(count=3)))

    def test_subject_order(self):
        self.assertRefused(self.signed(self.access_signing(refs=[self.REF_B, self.REF_A])), "strictly increasing")
        self.assertRefused(self.signed(self.access_signing(refs=[self.REF_A, self.REF_A])), "strictly increasing")
        refs = sorted(hashlib.sha256(bytes([i])).digest() for i in range(8))
        for i in range(7):
            swapped = refs[:i] + [refs[i + 1], refs[i]] + refs[i + 2:]
            self.assertRefused(self.signed(self.access_signing(refs=swapped)), "strictly increasing")
            repeated = refs[:i] + [refs[i], refs[i]] + refs[i + 2:]
            self.assertRefused(self.signed(self.access_signing(refs=repeated)), "strictly increasing")
        # references that differ only in their last byte
        low, high = b"\x00" * 31 + b"\x01", b"\x00" * 31 + b"\x02"
        V.decode_tx(self.signed(self.access_signing(refs=[low, high])))
        self.assertRefused(self.signed(self.access_signing(refs=[high, low])), "strictly increasing")

    def test_trailing_and_truncated(self):
        sb = self.access_signing()
        root = hashlib.sha256(b"batch root").digest()
        for good in (self.signed(sb), sb + b"\x02" + root + hand_u32(0)):
            V.decode_tx(good)
            for extra in (b"\x00", b"\x01", b"\x00" * 32, b"\x00" * 64):
                self.assertRefused(good + extra, "trailing")
            for n in range(len(good)):
                self.assertRefused(good[:n])
        self.assertRefused(sb + b"\x03" + b"\x00" * 64, "unknown authorization tag")

    def test_unknown_kinds_still_refused(self):
        for kind in (0x00, 0x07, 0x08, 0xFF):
            self.assertRefused(self.signed(hand_tx_head(b"nanjing.gateway", kind) + b"\x00" * 200),
                               "unknown transaction kind")
        with self.assertRaises(ValueError):
            V.encode_tx_signing("nanjing", "nanjing.gateway", 7, {})

    def test_package_author_roles(self):
        roots = roots_with_service_members()
        good = self.signed(self.access_signing())
        ok, facts, _ = judge(package([make_bundle([good], 0)]), roots)
        self.assertTrue(ok, [f.line() for f in facts if f.status != V.HOLDS])
        ok, facts, _ = judge(package([make_bundle([make_tx(1, record_body()), good], 1)]), roots)
        self.assertTrue(ok, [f.line() for f in facts if f.status != V.HOLDS])
        for author, seed in [(DEPT.encode(), DEPT_SEED), (b"nanjing.water", UTILITY_SEED),
                             (b"nanjing.hospital", HOSPITAL_SEED)]:
            tx = self.signed(self.access_signing(author=author), seed)
            ok, facts, _ = judge(package([make_bundle([tx], 0)]), roots)
            self.assertEqual(codes(facts), {"tx.author_role"}, author)
        tx = self.signed(self.access_signing(author=b"suzhou.gateway"), OTHER_SEED)
        ok, facts, _ = judge(package([make_bundle([tx], 0)]), roots)
        self.assertEqual(codes(facts), {"tx.foreign_author"})
        tx = self.signed(self.access_signing(author=b"nanjing.nobody"))
        ok, facts, _ = judge(package([make_bundle([tx], 0)]), roots)
        self.assertEqual(codes(facts), {"tx.unknown_author"})
        ok, facts, _ = judge(package([make_bundle([self.signed(self.access_signing(), DEPT_SEED)], 0)]), roots)
        self.assertEqual(codes(facts), {"tx.bad_signature"})
        tx = self.signed(self.access_signing(chain=b"suzhou"))
        ok, facts, _ = judge(package([make_bundle([tx], 0)]), roots)
        self.assertIn("tx.wrong_chain", codes(facts))
        # an access-log entry is not a record commitment
        ok, facts, _ = judge(package([make_bundle([good], 0)], [status_disclosure(0)]), roots)
        self.assertEqual(codes(facts), {"disclosure.not_a_record"})
        # malformed entries in a package: tx.malformed, and the rest of the bundle skipped
        for bad in (self.signed(self.access_signing(refs=[])), self.signed(self.access_signing(
                refs=[self.REF_B, self.REF_A])), good + b"\x00"):
            ok, facts, _ = judge(package([make_bundle([bad], 0)]), roots)
            self.assertEqual(codes(facts), {"tx.malformed"})
            self.assertEqual({f.name for f in facts if f.status == V.SKIPPED},
                             {"bundle[0].tx_chain", "bundle[0].authorization"})


class BodyStringLimits(unittest.TestCase):
    """Section 8: every str field of a transaction body at most 128 bytes (reason: 1,024); chain_id at most 64."""

    @staticmethod
    def cases():
        """(kind, field, signing bytes with that field set to b) for one builder per field."""
        a, s = AccessLog(), ServiceKinds()
        return [
            (4, "requester", lambda b: a.access_signing(requester=b)),
            (4, "provider", lambda b: a.access_signing(provider=b)),
            (4, "contract", lambda b: a.access_signing(contract=b)),
            (5, "bundle", lambda b: s.step_signing(bundle=b.decode())),
            (5, "step", lambda b: s.step_signing(step=b.decode())),
            (5, "item", lambda b: s.step_signing(item=b.decode())),
            (6, "service", lambda b: s.receipt_signing(service=b)),
        ]

    def test_128_passes_129_refused(self):
        seen = set()
        for kind, field, build in self.cases():
            seen.add(kind)
            # bytes, not characters: 42 three-byte characters + 2 = 128 bytes; 43 of them = 129 bytes
            for ok in (b"x" * 128, "受".encode() * 42 + b"ab"):
                self.assertEqual(len(ok), 128)
                tx = V.decode_tx(build(ok) + b"\x02" + b"\x00" * 36)
                self.assertEqual(tx.kind, kind)
                self.assertEqual(tx.body[field], ok.decode(), field)
                self.assertEqual(V.encode_tx_signing(tx.chain_id, tx.author, tx.kind, tx.body), tx.signing_bytes)
            for bad in (b"x" * 129, "受".encode() * 43, b"x" * 1024):
                with self.assertRaises(V.TxError, msg=(field, len(bad))) as cm:
                    V.decode_tx(build(bad) + b"\x02" + b"\x00" * 36)
                self.assertIn(f"{field}: length/count {len(bad)} above limit 128", str(cm.exception))
            # the length prefix alone is refused, before the bytes are read
            sb = build(b"MARK")
            cut = sb.index(hand_str(b"MARK"))
            with self.assertRaises(V.TxError) as cm:
                V.decode_tx(sb[:cut] + hand_u32(129))
            self.assertIn(f"{field}: length/count 129 above limit 128", str(cm.exception))
        self.assertEqual(seen, {4, 5, 6})

    def test_in_a_package(self):
        roots = roots_with_service_members()
        a, s = AccessLog(), ServiceKinds()
        for n, holds in ((128, True), (129, False)):
            for sb, seed in ((a.access_signing(contract=b"c" * n), GATEWAY_SEED),
                             (s.step_signing(step="s" * n), GATEWAY_SEED),
                             (s.receipt_signing(service=b"w" * n), UTILITY_SEED)):
                ok, facts, _ = judge(package([make_bundle([sb + b"\x01" + V.ed25519_sign(seed, sb)], 0)]), roots)
                self.assertEqual(ok, holds, [f.line() for f in facts if f.status != V.HOLDS])
                if not holds:
                    self.assertEqual(codes(facts), {"tx.malformed"})

    def test_author_and_chain_id(self):
        a = AccessLog()
        V.decode_tx(a.access_signing(author=b"g" * 128) + b"\x02" + b"\x00" * 36)
        with self.assertRaises(V.TxError) as cm:
            V.decode_tx(a.access_signing(author=b"g" * 129) + b"\x02" + b"\x00" * 36)
        self.assertIn("author: length/count 129 above limit 128", str(cm.exception))
        V.decode_tx(a.access_signing(chain=b"c" * 64) + b"\x02" + b"\x00" * 36)
        with self.assertRaises(V.TxError) as cm:
            V.decode_tx(a.access_signing(chain=b"c" * 65) + b"\x02" + b"\x00" * 36)
        self.assertIn("chain_id: length/count 65 above limit 64", str(cm.exception))
        # the reason of kind 06 keeps its own limit of 1,024 bytes (see ServiceKinds.test_reason_length)
        s = ServiceKinds()
        V.decode_tx(s.receipt_signing(reason=b"r" * 1024) + b"\x02" + b"\x00" * 36)


if __name__ == "__main__":
    unittest.main()
