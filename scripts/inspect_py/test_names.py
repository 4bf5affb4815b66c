"""Name normalisation (docs/encoding.md section 6) done independently with
Python's unicodedata, checked against docs/vectors/name-normalisation-v1.json,
the vectors the Rust implementation is tested with."""

import json
import os
import re
import unicodedata
import unittest

FORMAT_CHARS = [
    (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C), (0x06DD, 0x06DD),
    (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2), (0x180E, 0x180E),
    (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F),
    (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD),
    (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
]
# Unicode's White_Space property.
WHITE_SPACE = re.compile(
    "[\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+"
)


def normalise_name(s):
    s = unicodedata.normalize("NFKC", s)
    s = "".join(c for c in s if not any(lo <= ord(c) <= hi for lo, hi in FORMAT_CHARS))
    s = s.lower()
    s = " ".join(w for w in WHITE_SPACE.split(s) if w)
    return unicodedata.normalize("NFKC", s)


class NameVectors(unittest.TestCase):
    def test_vectors(self):
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.path.join(here, "..", "..", "docs", "vectors", "name-normalisation-v1.json")
        with open(path, encoding="utf-8") as f:
            vectors = json.load(f)["vectors"]
        self.assertGreaterEqual(len(vectors), 10)
        for v in vectors:
            self.assertEqual(normalise_name(v["input"]), v["normalised"], v["why"])


if __name__ == "__main__":
    unittest.main()
