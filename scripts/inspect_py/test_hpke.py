"""The independent HPKE recipient (hpke_open.py) against RFC 9180's own test
vectors, then against Tongban's match vectors (docs/vectors/match-v1.json)."""

import glob
import hashlib
import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import hpke_open as H  # noqa: E402


def vectors_dir():
    env = os.environ.get("TONGBAN_VECTORS")
    return env if env else os.path.normpath(os.path.join(REPO, "..", "shared", "vectors"))


class Rfc9180(unittest.TestCase):
    def test_base_mode_suite_vectors(self):
        if os.environ.get("TONGBAN_VECTORS") == "skip":
            self.skipTest("TONGBAN_VECTORS=skip")
        files = glob.glob(os.path.join(vectors_dir(), "hpke-rfc9180", "*.json"))
        self.assertTrue(files, "RFC 9180 vectors not found under " + vectors_dir())
        cases = [
            c
            for f in files
            for c in json.load(open(f, encoding="utf-8"))
            if (c["mode"], c["kem_id"], c["kdf_id"], c["aead_id"]) == (0, 0x20, 1, 3)
        ]
        self.assertTrue(cases)
        for c in cases:
            sk = H.derive_secret_key(bytes.fromhex(c["ikmR"]))
            self.assertEqual(sk.hex(), c["skRm"])
            self.assertEqual(H.public_key(sk).hex(), c["pkRm"])
            # Sequence 0 only: Tongban seals one message per context.
            e = c["encryptions"][0]
            pt = H.open_base(sk, bytes.fromhex(c["enc"]), bytes.fromhex(c["info"]),
                             bytes.fromhex(e["aad"]), bytes.fromhex(e["ct"]))
            self.assertEqual(pt.hex(), e["pt"])


class TongbanMatchVectors(unittest.TestCase):
    def setUp(self):
        with open(os.path.join(REPO, "docs", "vectors", "match-v1.json"), encoding="utf-8") as fh:
            self.v = json.load(fh)

    def _open(self, part, aad=None):
        p = self.v[part]
        sk = H.derive_secret_key(bytes.fromhex(p["recipient_ikm"]))
        self.assertEqual(H.public_key(sk).hex(), p["recipient_public_key"])
        return H.open_base(sk, bytes.fromhex(p["enc"]), bytes.fromhex(p["info"]),
                           bytes.fromhex(aad if aad is not None else p["aad"]),
                           bytes.fromhex(p["ciphertext"]))

    def test_answer_opens_and_matches_its_commitment(self):
        pt = self._open("answer")
        self.assertEqual(pt.hex(), self.v["answer"]["plaintext"])
        self.assertEqual(hashlib.sha256(pt).hexdigest(), self.v["answer"]["commitment"])
        self.assertEqual(self.v["answer"]["aad"], self.v["request"]["digest"])

    def test_request_digest_is_sha256_of_signed_bytes_and_signature(self):
        r = self.v["request"]
        d = hashlib.sha256(bytes.fromhex(r["signing_bytes"]) + bytes.fromhex(r["signature"])).hexdigest()
        self.assertEqual(d, r["digest"])

    def test_subject_opens(self):
        self.assertEqual(self._open("subject").hex(), self.v["subject"]["plaintext"])

    def test_answer_moved_to_another_request_does_not_open(self):
        with self.assertRaises(Exception):
            self._open("answer", aad="00" * 32)


if __name__ == "__main__":
    unittest.main()
