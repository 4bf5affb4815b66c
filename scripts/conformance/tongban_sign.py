"""Signing helpers for the conformance checker, written from docs/encoding.md
(sections 2, 3, 5, 6, 8, 13, 15) and gateway/src/auth.rs.

Only the primitives (Ed25519, X25519, ChaCha20-Poly1305) come from the
`cryptography` package. Everything here uses TEST keys of an example gateway.
"""

import hashlib
import hmac
import json
import os
import struct

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

# --- field encodings (section 2) -------------------------------------------


def u8(v):
    return struct.pack(">B", v)


def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def i64(v):
    return struct.pack(">q", v)


def enc_str(s):
    b = s.encode("utf-8")
    return u32(len(b)) + b


def enc_bytes(b):
    return u32(len(b)) + b


domain = enc_str


def sha256(b):
    return hashlib.sha256(b).digest()


def hmac256(k, b):
    return hmac.new(k, b, hashlib.sha256).digest()


# --- Merkle trees (section 3) ----------------------------------------------


def leaf_hash(data):
    return sha256(b"\x00" + data)


def merkle_root(hashes):
    n = len(hashes)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return sha256(b"\x01" + merkle_root(hashes[:k]) + merkle_root(hashes[k:]))


# --- key files (gateway/src/keyfile.rs) ------------------------------------


def load_keys(directory):
    """Every Ed25519 key file in `directory`: {member id: private key}, and the
    subject key (bytes) if present."""
    signing, subject = {}, None
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not name.endswith(".key") or not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                k = json.load(f)
        except (OSError, ValueError):
            continue
        if k.get("tongban_key") != 1:
            continue
        secret = bytes.fromhex(k["secret"])
        if k["kind"] == "ed25519":
            signing[k["id"]] = Ed25519PrivateKey.from_private_bytes(secret)
        elif k["kind"] == "subject":
            subject = secret
    return signing, subject


def public_hex(key):
    return key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    ).hex()


# --- signed requests (gateway/src/auth.rs) ---------------------------------


def request_headers(key, member, audience, method, path_and_query, body, timestamp_ms=None, nonce=None):
    ts = timestamp_ms if timestamp_ms is not None else int(__import__("time").time() * 1000)
    nonce = nonce or os.urandom(16).hex()
    msg = (
        domain("tongban/http/v1")
        + enc_str(audience)
        + enc_str(method)
        + enc_str(path_and_query)
        + u64(ts)
        + enc_str(nonce)
        + sha256(body)
    )
    return {
        "tongban-member": member,
        "tongban-timestamp": str(ts),
        "tongban-nonce": nonce,
        "tongban-signature": key.sign(msg).hex(),
    }


# --- values, commitments, subject references (sections 4-6) -----------------


def encode_value(kind, v):
    if kind == "text":
        return b"\x01" + enc_str(v)
    if kind == "int":
        return b"\x02" + i64(v)
    if kind == "bool":
        return b"\x03" + u8(1 if v else 0)
    if kind == "date":
        y, m, d = (int(x) for x in v.split("-"))
        return b"\x04" + u16(y) + u8(m) + u8(d)
    raise ValueError(f"unknown kind {kind}")


def commitment(kinds, fields, secret):
    leaves = []
    for name in sorted(fields, key=lambda n: n.encode()):
        salt = hmac256(secret, domain("tongban/salt/v1") + enc_str(name))
        data = domain("tongban/field/v1") + enc_str(name) + salt + encode_value(kinds[name], fields[name])
        leaves.append(leaf_hash(data))
    return merkle_root(leaves)


_RESIDENT_W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_CREDIT_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_W = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


def _resident_ok(s):
    if len(s) != 18 or not s[:17].isdigit() or not s[:17].isascii():
        return False
    return "10X98765432"[sum(int(c) * w for c, w in zip(s, _RESIDENT_W)) % 11] == s[17]


def _credit_ok(s):
    if len(s) != 18 or any(c not in _CREDIT_CHARS for c in s):
        return False
    total = sum(_CREDIT_CHARS.index(c) * w for c, w in zip(s, _CREDIT_W))
    return _CREDIT_CHARS[(31 - total % 31) % 31] == s[17]


def normalise_subject(s):
    t = s.strip()
    if _resident_ok(t.upper()) or _credit_ok(t.upper()):
        return t.upper()
    return t


def subject_ref(subject_key, ident):
    return hmac256(subject_key, domain("tongban/subject/v1") + enc_str(normalise_subject(ident)))


def resident_id(prefix17):
    """A synthetic resident identity number with a valid check character."""
    return prefix17 + "10X98765432"[sum(int(c) * w for c, w in zip(prefix17, _RESIDENT_W)) % 11]


# --- transactions (section 8) ----------------------------------------------


def tx_prefix(chain_id, author, kind):
    return domain("tongban/tx/v1") + enc_str(chain_id) + enc_str(author) + u8(kind)


def publication_bytes(registry, chain_id, department, subject_key, rec):
    rt = registry.record_type(rec["record_type"])
    kinds = {f["name"]: f["kind"] for f in rt["fields"]}
    c = commitment(kinds, rec["fields"], bytes.fromhex(rec["secret"]))
    refs = sorted({subject_ref(subject_key, rec["fields"][n]) for n in rt["subject"] if n in rec["fields"]})
    return (
        tx_prefix(chain_id, department, 1)
        + enc_str(rec["record_type"])
        + enc_str(rec["record_id"])
        + u32(len(refs))
        + b"".join(refs)
        + u32(rec["version"])
        + c
        + u64(rec["issued_ms"])
    )


def sign_publication(registry, chain_id, department, key, subject_key, rec):
    out = dict(rec)
    out["signature"] = key.sign(publication_bytes(registry, chain_id, department, subject_key, rec)).hex()
    return out


def sign_revocation(chain_id, department, key, rev):
    reason = {"revoked": 1, "superseded": 2}[rev["reason"]]
    msg = (
        tx_prefix(chain_id, department, 2)
        + enc_str(rev["record_type"])
        + enc_str(rev["record_id"])
        + u32(rev["version"])
        + u8(reason)
        + u64(rev["at_ms"])
    )
    out = dict(rev)
    out["signature"] = key.sign(msg).hex()
    return out


def sign_import(registry, chain_id, department, key, subject_key, req):
    leaves = [
        leaf_hash(publication_bytes(registry, chain_id, department, subject_key, r)) for r in req["records"]
    ]
    msg = tx_prefix(chain_id, department, 3) + merkle_root(leaves) + u32(len(leaves))
    out = dict(req)
    out["seal_signature"] = key.sign(msg).hex()
    return out


def sign_receipt(chain_id, recipient, key, delivery, accepted, reason, at_ms):
    """A receipt (kind 06) for a delivery as the inbox lists it."""
    request = sha256(bytes.fromhex(delivery["sealed"]["enc"]) + bytes.fromhex(delivery["sealed"]["ciphertext"]))
    msg = (
        tx_prefix(chain_id, recipient, 6)
        + bytes.fromhex(delivery["id"])
        + bytes.fromhex(delivery["application"])
        + enc_str(delivery["service"])
        + request
        + u8(1 if accepted else 0)
        + enc_str(reason)
        + u64(at_ms)
    )
    return {
        "delivery": delivery["id"],
        "accepted": accepted,
        "reason": reason,
        "at_ms": at_ms,
        "signature": key.sign(msg).hex(),
    }


# --- HPKE seal (RFC 9180 base mode, suite 0x0020/0x0001/0x0003) --------------

_KEM = b"KEM" + (0x0020).to_bytes(2, "big")
_HPKE = b"HPKE" + (0x0020).to_bytes(2, "big") + (0x0001).to_bytes(2, "big") + (0x0003).to_bytes(2, "big")


def _lextract(suite, salt, label, ikm):
    return hmac.new(salt or b"\x00" * 32, b"HPKE-v1" + suite + label + ikm, hashlib.sha256).digest()


def _lexpand(suite, prk, label, info, length):
    info = length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def hpke_seal(recipient_public, info, aad, plaintext):
    eph = X25519PrivateKey.generate()
    enc = eph.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    dh = eph.exchange(X25519PublicKey.from_public_bytes(recipient_public))
    eae_prk = _lextract(_KEM, b"", b"eae_prk", dh)
    shared = _lexpand(_KEM, eae_prk, b"shared_secret", enc + recipient_public, 32)
    context = b"\x00" + _lextract(_HPKE, b"", b"psk_id_hash", b"") + _lextract(_HPKE, b"", b"info_hash", info)
    secret = _lextract(_HPKE, shared, b"secret", b"")
    k = _lexpand(_HPKE, secret, b"key", context, 32)
    nonce = _lexpand(_HPKE, secret, b"base_nonce", context, 12)
    return {"enc": enc.hex(), "ciphertext": ChaCha20Poly1305(k).encrypt(nonce, plaintext, aad).hex()}


# --- selective matches (section 13) ------------------------------------------


def match_request(key, requester, provider, provider_hpke, contract, contract_version, question, subject, now_ms,
                  ttl_ms=60_000, rid=None):
    rid = rid or os.urandom(32)
    aad = domain("tongban/match-subject-aad/v1") + rid + enc_str(requester) + enc_str(provider)
    sealed = hpke_seal(provider_hpke, b"tongban/match-subject/v1", aad, subject.encode())
    issued, expires = now_ms - 1000, now_ms + ttl_ms
    msg = (
        domain("tongban/match-request/v1")
        + rid
        + enc_str(requester)
        + enc_str(provider)
        + enc_str(contract)
        + u32(contract_version)
        + enc_str(question)
        + u64(issued)
        + u64(expires)
        + bytes.fromhex(sealed["enc"])
        + enc_bytes(bytes.fromhex(sealed["ciphertext"]))
    )
    return {
        "id": rid.hex(),
        "requester": requester,
        "provider": provider,
        "contract": contract,
        "contract_version": contract_version,
        "question": question,
        "issued_ms": issued,
        "expires_ms": expires,
        "subject": sealed,
        "signature": key.sign(msg).hex(),
    }


# --- the registry file -------------------------------------------------------


class Registry:
    """The few registry facts the checker needs (read with tomllib)."""

    def __init__(self, path):
        try:
            import tomllib
        except ModuleNotFoundError:  # Python < 3.11
            import tomli as tomllib

        with open(path, "rb") as f:
            self.doc = tomllib.load(f)

    def record_type(self, rid):
        for rt in self.doc.get("record_types", []):
            if rt["id"] == rid:
                return rt
        raise KeyError(rid)

    def contract(self, cid):
        for c in self.doc.get("contracts", []):
            if c["id"] == cid:
                return c
        raise KeyError(cid)

    def member(self, mid):
        for city in self.doc.get("cities", []):
            for group in ("departments", "utilities", "centres"):
                for m in city.get(group, []):
                    if m["id"] == mid:
                        return m
            if city.get("gateway", {}).get("id") == mid:
                return city["gateway"]
        raise KeyError(mid)

    def city(self, cid):
        for city in self.doc.get("cities", []):
            if city["id"] == cid:
                return city
        raise KeyError(cid)
