#!/usr/bin/env python3
"""Independent verifier of Tongban application evidence packages
(format ``tongban-application-evidence/v1``, docs/encoding.md section 15).

Written only from docs/encoding.md (sections 2, 3, 8-11, 13 and 15), the
example registry regions/examples/yangtze-delta.toml (its format) and the
sample package docs/vectors/application-package-v1.json (ground truth for the
written form of predicates).  Nothing is derived from the reference
implementation's source.  Primitives (Ed25519 strict, Merkle, encoders,
transaction decoding, bundle checks 4-11) come from verify.py.

Usage (from the repository root):

    python3 scripts/inspect_py/verify_app.py PACKAGE.json… --registry REGION.toml [--now-ms MS] [--json]

Exit status 0 iff every fact of every package holds; 1 otherwise; 2 on usage
errors.  Input is read strictly (section 15, "Strict reading").

Points the document leaves open are marked "ASSUMPTION" in the code.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import json
import os
import re
import sys
import time
import tomllib
from dataclasses import dataclass, field
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import verify as V  # noqa: E402
from verify import (  # noqa: E402
    DecodeError, Reader, enc_domain, enc_str, enc_bytes, enc_u32, enc_u64, sha256, leaf_hash,
    HOLDS, FAILS, SKIPPED, Fact,
)

FORMAT = "tongban-application-evidence/v1"

TAG_APPLICATION = "tongban/application/v1"
TAG_DELIVERY = "tongban/delivery/v1"
TAG_ASK = "tongban/application-ask/v1"
TAG_MATCH_REQUEST = "tongban/match-request/v1"
TAG_MATCH_QUESTION = "tongban/match-question/v1"
TAG_MATCH_ANSWER = "tongban/match-answer/v1"

MAX_QUESTION = 16 * 1024          # section 13: question <= 16 KiB
MAX_ID = 128                      # section 13: ids <= 128 bytes
MAX_VALIDITY_MS = 300_000         # section 13: expires_ms - issued_ms
MAX_DISCLOSED = 64                # section 13: disclosed values <= 64
# Section 13's limits for the strings of the answer plaintext.
MAX_ANSWER_NAME = 128
MAX_ANSWER_VALUE = 4096
MAX_RULE_CODE = 128
MAX_RULE_MESSAGE = 4096


# --------------------------------------------------------------------------
# Ids (section 15) and match-request bytes (section 13)
# --------------------------------------------------------------------------


def _question_record_type(question):
    """The `record_type` member of a question's JSON text (section 13), or None."""
    try:
        q = json.loads(question)
    except ValueError:
        return None
    return q.get("record_type") if isinstance(q, dict) else None

def application_id(centre: str, bundle: str, reference: str) -> bytes:
    return sha256(enc_domain(TAG_APPLICATION) + enc_str(centre) + enc_str(bundle) + enc_str(reference))


def delivery_id(app_id: bytes, service: str) -> bytes:
    return sha256(enc_domain(TAG_DELIVERY) + app_id + enc_str(service))


def ask_id(app_id: bytes, evidence: str, attempt: int) -> bytes:
    return sha256(enc_domain(TAG_ASK) + app_id + enc_str(evidence) + enc_u32(attempt))


@dataclass
class MatchRequest:
    id: bytes
    requester: str
    provider: str
    contract: str
    contract_version: int
    question: str
    issued_ms: int
    expires_ms: int
    subject_enc: bytes
    subject_ciphertext: bytes
    signature: bytes

    def signing_bytes(self) -> bytes:
        return (enc_domain(TAG_MATCH_REQUEST) + self.id + enc_str(self.requester) + enc_str(self.provider)
                + enc_str(self.contract) + enc_u32(self.contract_version) + enc_str(self.question)
                + enc_u64(self.issued_ms) + enc_u64(self.expires_ms) + self.subject_enc
                + enc_bytes(self.subject_ciphertext))

    def digest(self) -> bytes:
        return sha256(self.signing_bytes() + self.signature)

    def question_hash(self) -> bytes:
        return question_hash(self.question)


def question_hash(question: str) -> bytes:
    return sha256(enc_domain(TAG_MATCH_QUESTION) + enc_str(question))


# --------------------------------------------------------------------------
# Answer plaintext (section 13)
# --------------------------------------------------------------------------

VERDICT_NAMES = {0: "holds", 1: "does_not_hold", 2: "no_record", 3: "denied"}


@dataclass
class Answer:
    digest: bytes
    verdict: int
    rule_code: str
    message: str
    values: list            # [(name, value)]
    evaluated_height: int
    record: Optional[tuple]  # (leaf, version) or None
    nonce: bytes


def decode_answer(data: bytes) -> Answer:
    r = Reader(data)
    r.domain(TAG_MATCH_ANSWER)
    digest = r.raw(32)
    at = r.i
    verdict = r.u8()
    code = message = ""
    if verdict == 3:
        code = r.string(MAX_RULE_CODE, "rule code")
        message = r.string(MAX_RULE_MESSAGE, "message")
    elif verdict not in (0, 1, 2):
        raise r.err(f"unknown verdict {verdict:#04x} at offset {at}")
    n = r.length(MAX_DISCLOSED, "disclosed values")
    values = []
    for _ in range(n):
        name = r.string(MAX_ANSWER_NAME, "disclosed name")
        if any(name == n for n, _ in values):
            # section 15, "Strict reading": a field is disclosed at most once
            raise r.err(f"field {name!r} disclosed twice")
        values.append((name, r.string(MAX_ANSWER_VALUE, "disclosed value")))
    height = r.u64()
    at = r.i
    tag = r.u8()
    if tag == 0:
        record = None
    elif tag == 1:
        record = (r.raw(32), r.u32())
    else:
        raise r.err(f"unknown record tag {tag:#04x} at offset {at}")
    nonce = r.raw(32)
    r.end()
    return Answer(digest, verdict, code, message, values, height, record, nonce)


# --------------------------------------------------------------------------
# Registry (TOML, format of regions/examples/yangtze-delta.toml)
# --------------------------------------------------------------------------

class RegistryError(ValueError):
    pass


def _key(hexstr: str, what: str) -> bytes:
    try:
        k = bytes.fromhex(hexstr)
    except (TypeError, ValueError):
        raise RegistryError(f"{what}: not hex") from None
    if hexstr != k.hex():  # section 15.1: hex is lower case only, no spaces
        raise RegistryError(f"{what}: hex not lower case")
    if len(k) != 32 or not V.ed25519_key_ok(k):  # section 7: refused at load time
        raise RegistryError(f"{what}: key not canonical or of small order")
    return k


@dataclass
class Registry:
    hash: bytes
    doc: dict
    cities: dict                                   # city id -> city table
    chain_city: dict                               # chain id -> city id
    member_city: dict                              # member id -> city id
    contracts: dict                                # contract id -> [contract tables]
    bundles: dict                                  # bundle id -> bundle table
    centres: set
    chains: dict = field(default_factory=dict)     # chain id -> ChainRoots
    members: dict = field(default_factory=dict)    # member id -> Member

    def roots(self, now_ms: int) -> V.TrustRoots:
        return V.TrustRoots(self.hash, self.chains, self.members, now_ms)

    def gateway_of_city(self, city_id: str) -> Optional[str]:
        c = self.cities.get(city_id)
        return None if c is None or "gateway" not in c else c["gateway"]["id"]

    def department(self, city_id: str, department: str) -> Optional[str]:
        # ASSUMPTION: a bundle names a department by a short name
        # ("real-estate"); the registry has no field for it, so the department
        # of city c is the one whose id is "<c>.<short name>".
        c = self.cities.get(city_id)
        if c is None:
            return None
        want = f"{city_id}.{department}"
        return want if any(d["id"] == want for d in c.get("departments", [])) else None

    def utility(self, city_id: str, kind: str) -> Optional[str]:
        # ASSUMPTION: a service's `utility = "gas"` names the utility of that
        # `kind` in the city; exactly one must exist.
        c = self.cities.get(city_id)
        if c is None:
            return None
        ids = [u["id"] for u in c.get("utilities", []) if u.get("kind") == kind]
        return ids[0] if len(ids) == 1 else None

    def contract(self, cid: str) -> Optional[dict]:
        # ASSUMPTION: "the evidence's contract at its registry version": a
        # registry lists one version per contract id; with several, the
        # highest version is taken.
        vs = self.contracts.get(cid)
        if not vs:
            return None
        return max(vs, key=lambda c: c.get("version", 0))


def load_registry(data: bytes) -> Registry:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise RegistryError(f"registry does not parse: {e}") from None
    reg = Registry(sha256(data), doc, {}, {}, {}, {}, {}, set())
    for city in doc.get("cities", []):
        cid = city["id"]
        reg.cities[cid] = city
        chain = city.get("chain")
        chain_id = ""
        if chain is not None:
            chain_id = chain["chain_id"]
            keys = [_key(k, f"{cid} endorser") for k in chain["endorsers"]]
            reg.chains[chain_id] = V.ChainRoots(chain_id, keys, int(chain["threshold"]))
            reg.chain_city[chain_id] = cid

        def add(m, role, owns=()):
            if m["id"] in reg.members:
                raise RegistryError(f"member {m['id']!r} twice")
            reg.members[m["id"]] = V.Member(m["id"], role, [_key(m["signing_key"], m["id"])], chain_id,
                                            frozenset(owns))
            reg.member_city[m["id"]] = cid

        if "gateway" in city:
            add(city["gateway"], "gateway")
        for d in city.get("departments", []):
            add(d, "department", d.get("owns", []))
        for u in city.get("utilities", []):
            add(u, "utility")
        for c in city.get("centres", []):
            add(c, "centre")
            reg.centres.add(c["id"])
    for h in doc.get("hubs", []):
        # a hub owns no chain: it can author nothing that passes check 11
        reg.members[h["id"]] = V.Member(h["id"], "hub", [_key(h["signing_key"], h["id"])], "", frozenset())
    for c in doc.get("contracts", []):
        reg.contracts.setdefault(c["id"], []).append(c)
    for b in doc.get("bundles", []):
        reg.bundles[b["id"]] = b
    return reg


# --------------------------------------------------------------------------
# Package JSON (strict: unknown or missing keys, wrong types refused)
# --------------------------------------------------------------------------

class PackageError(DecodeError):
    pass


def _obj(j, required, optional=(), what="object") -> dict:
    if not isinstance(j, dict):
        raise PackageError(f"{what}: not an object")
    keys = set(j)
    missing = set(required) - keys
    unknown = keys - set(required) - set(optional)
    if missing:
        raise PackageError(f"{what}: missing {sorted(missing)}")
    if unknown:
        raise PackageError(f"{what}: unknown {sorted(unknown)}")
    return j


def _int(j, bits, what) -> int:
    if type(j) is not int or not 0 <= j < (1 << bits):
        raise PackageError(f"{what}: not a u{bits}")
    return j


def _str(j, what, limit=None) -> str:
    if not isinstance(j, str):
        raise PackageError(f"{what}: not a string")
    if limit is not None and len(j.encode("utf-8")) > limit:
        raise PackageError(f"{what}: longer than {limit} bytes")
    return j


def _hex(j, what, n=None) -> bytes:
    s = _str(j, what)
    # section "All hex below is lower case": upper case is refused
    if s != s.lower():
        raise PackageError(f"{what}: hex not lower case")
    try:
        b = bytes.fromhex(s)
    except ValueError:
        raise PackageError(f"{what}: not hex") from None
    if len(s) != 2 * len(b):  # bytes.fromhex skips white space
        raise PackageError(f"{what}: not hex")
    if n is not None and len(b) != n:
        raise PackageError(f"{what}: {len(b)} bytes, expected {n}")
    return b


def _proof(j, what) -> V.Proof:
    _obj(j, ("index", "size", "path"), what=what)
    path = j["path"]
    if not isinstance(path, list) or len(path) > V.MAX_PATH:
        raise PackageError(f"{what}.path: not a list of at most {V.MAX_PATH}")
    return V.Proof(_int(j["index"], 64, what + ".index"), _int(j["size"], 64, what + ".size"),
                   [_hex(h, f"{what}.path", 32) for h in path])


def parse_bundle(j, what="bundle", nested=False) -> V.Bundle:
    """Section 10's JSON form of a bundle."""
    _obj(j, ("header", "tx", "proof"), () if nested else ("batch",), what)
    hw = _obj(j["header"], ("header", "certificate"), what=what + ".header")
    h = _obj(hw["header"], ("chain_id", "height", "prev", "timestamp_ms", "tx_count", "tx_root"),
             what=what + ".header.header")
    header = V.Header(_str(h["chain_id"], "chain_id", V.MAX_CHAIN_ID), _int(h["height"], 64, "height"),
                      _hex(h["prev"], "prev", 32), _int(h["timestamp_ms"], 64, "timestamp_ms"),
                      _int(h["tx_count"], 64, "tx_count"), _hex(h["tx_root"], "tx_root", 32))
    cert = _obj(hw["certificate"], ("endorsements",), what=what + ".certificate")
    es = cert["endorsements"]
    if not isinstance(es, list) or len(es) > V.MAX_ENDORSEMENTS:
        raise PackageError(f"{what}: endorsements not a list of at most {V.MAX_ENDORSEMENTS}")
    endorsements = []
    for e in es:
        _obj(e, ("signer", "signature"), what=what + ".endorsement")
        endorsements.append((_int(e["signer"], 16, "signer"), _hex(e["signature"], "signature", 64)))
    tx = _hex(j["tx"], what + ".tx")
    if len(tx) > V.MAX_TX:
        raise PackageError(f"{what}.tx: above {V.MAX_TX} bytes")
    batch = None
    if "batch" in j:
        # ASSUMPTION: section 10 writes the JSON form as {"seal": bundle, "member": proof}.
        bj = _obj(j["batch"], ("seal", "member"), what=what + ".batch")
        batch = V.BatchEvidence(parse_bundle(bj["seal"], what + ".batch.seal", nested=True),
                                _proof(bj["member"], what + ".batch.member"))
    return V.Bundle(header, endorsements, tx, _proof(j["proof"], what + ".proof"), batch)


@dataclass
class EvidenceItem:
    id: str
    attempt: int
    request: MatchRequest
    access: V.Bundle
    record: Optional[V.Bundle]
    answer: bytes


@dataclass
class Receipt:
    service: str
    bundle: V.Bundle


@dataclass
class AppPackage:
    format: str
    registry_hash: bytes
    application_id: bytes
    application: str
    steps: list
    evidence: list
    receipts: list


def parse_request(j, what) -> MatchRequest:
    _obj(j, ("id", "requester", "provider", "contract", "contract_version", "question", "issued_ms",
             "expires_ms", "subject", "signature"), what=what)
    s = _obj(j["subject"], ("enc", "ciphertext"), what=what + ".subject")
    req = MatchRequest(
        _hex(j["id"], "request id", 32), _str(j["requester"], "requester", MAX_ID),
        _str(j["provider"], "provider", MAX_ID), _str(j["contract"], "contract", MAX_ID),
        _int(j["contract_version"], 32, "contract_version"), _str(j["question"], "question", MAX_QUESTION),
        _int(j["issued_ms"], 64, "issued_ms"), _int(j["expires_ms"], 64, "expires_ms"),
        _hex(s["enc"], "subject.enc", 32), _hex(s["ciphertext"], "subject.ciphertext"),
        _hex(j["signature"], "signature", 64))
    # ASSUMPTION: section 13's validity window is a well-formedness rule of a
    # request; section 15 has no code for it, so a violation is refused as an
    # undecodable package.
    if not req.issued_ms < req.expires_ms <= req.issued_ms + MAX_VALIDITY_MS:
        raise PackageError(f"{what}: expires_ms not within (issued_ms, issued_ms + {MAX_VALIDITY_MS}]")
    return req


MAX_JSON_DEPTH = 64                # section 15, "Strict reading"
MAX_PACKAGE_BYTES = 64 << 20       # section 15, "Strict reading"
# A string (to its closing quote, or to the end if unterminated: one pass,
# never quadratic) or a bracket.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]+|\\.)*"?|[\[\]{}]', re.S)


def _json_depth_ok(text: str) -> bool:
    """Arrays and objects nest at most MAX_JSON_DEPTH levels (the outermost
    value is level 1).  Checked on the text before it is parsed, so that no
    parser recurses deeper."""
    depth = 0
    for m in _JSON_TOKEN.finditer(text):
        c = m.group()
        if c == "[" or c == "{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return False
        elif c == "]" or c == "}":
            depth -= 1
    return True


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


def strict_json(text: str, allow_null: bool, what: str):
    """Section 15, "Strict reading": RFC 8259 JSON nested at most 64 levels,
    no key twice in an object, no lone surrogate (escaped or not), and no
    `null` unless allowed.  Raises ValueError naming the rule."""
    if not _json_depth_ok(text):
        raise ValueError(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        j = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except ValueError as e:
        raise ValueError(f"{what}: not JSON: {e}") from None

    def walk(x):
        if x is None:
            if not allow_null:
                raise ValueError(f"{what}: null is not allowed here: an absent field is left out")
        elif isinstance(x, str):
            try:
                x.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"{what}: a lone surrogate in a string") from None
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(k)
                walk(v)

    walk(j)
    return j


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def application_form(app) -> None:
    """Section 15.1: the application JSON is in the written form of section
    15 -- every field there with its type, no other field, optional fields
    (`item`, `detail` of a timeline entry) left out rather than empty.
    Raises ValueError naming the first place that is not."""

    def fail(path, what):
        raise ValueError(f"not in the written form of an application (section 15) at `{path}`: {what}")

    def obj(x, path, required, optional=()):
        if not isinstance(x, dict):
            fail(path, "not an object")
        for k in required:
            if k not in x:
                fail(f"{path}.{k}" if path else k, "missing")
        for k in x:
            if k not in required and k not in optional:
                fail(f"{path}.{k}" if path else k, "unknown field")

    def uint(x, bits, path):
        if type(x) is not int or not 0 <= x < (1 << bits):
            fail(path, f"not a u{bits}")

    def text(x, path):
        if not isinstance(x, str):
            fail(path, "not a string")

    obj(app, "", ("id", "bundle", "centre", "params", "submitted_ms", "phase", "evidence", "services", "reason",
                  "timeline"))
    for k in ("id", "bundle", "centre"):
        text(app[k], k)
    if not isinstance(app["params"], dict):
        fail("params", "not an object")
    for name, v in app["params"].items():
        p = f"params.{name}"
        if not isinstance(v, dict) or len(v) != 1:
            fail(p, "not a value")
        (kind, x), = v.items()
        if kind == "text":
            text(x, p)
        elif kind == "int":
            if type(x) is not int or not -(1 << 63) <= x < (1 << 63):
                fail(p, "not an i64")
        elif kind == "bool":
            if type(x) is not bool:
                fail(p, "not a bool")
        elif kind == "date":
            if not (isinstance(x, str) and _DATE.fullmatch(x)
                    and 1 <= int(x[:4]) and V.valid_date(int(x[:4]), int(x[5:7]), int(x[8:]))):
                fail(p, "not a date YYYY-MM-DD")
        else:
            fail(p, f"unknown kind {kind!r}")
    uint(app["submitted_ms"], 64, "submitted_ms")
    if app["phase"] not in ("matching", "dispatching", "completed", "rejected", "failed"):
        fail("phase", "unknown phase")
    if not isinstance(app["evidence"], dict):
        fail("evidence", "not an object")
    for e, st in app["evidence"].items():
        p = f"evidence.{e}"
        kind = st.get("state") if isinstance(st, dict) else None
        if kind == "pending":
            obj(st, p, ("state", "attempt", "deadline_ms"))
            uint(st["attempt"], 32, p + ".attempt")
            uint(st["deadline_ms"], 64, p + ".deadline_ms")
        elif kind == "answered":
            obj(st, p, ("state", "answer", "attempt", "at_ms"))
            uint(st["attempt"], 32, p + ".attempt")
            uint(st["at_ms"], 64, p + ".at_ms")
            a, q = st["answer"], p + ".answer"
            outcome = a.get("outcome") if isinstance(a, dict) else None
            if outcome == "holds":
                obj(a, q, ("outcome", "values"))
                if not isinstance(a["values"], dict):
                    fail(q + ".values", "not an object")
                for n, v in a["values"].items():
                    text(v, f"{q}.values.{n}")
            elif outcome in ("does_not_hold", "no_record"):
                obj(a, q, ("outcome",))
            elif outcome == "denied":
                obj(a, q, ("outcome", "code"))
                text(a["code"], q + ".code")
            else:
                fail(q + ".outcome", "unknown outcome")
        elif kind == "failed":
            obj(st, p, ("state", "code"))
            text(st["code"], p + ".code")
        elif kind == "unneeded":
            obj(st, p, ("state",))
        else:
            fail(p + ".state", "unknown state")
    if not isinstance(app["services"], dict):
        fail("services", "not an object")
    for sv, st in app["services"].items():
        p = f"services.{sv}"
        kind = st.get("state") if isinstance(st, dict) else None
        if kind == "pending":
            obj(st, p, ("state", "attempt", "deadline_ms"))
            uint(st["attempt"], 32, p + ".attempt")
            uint(st["deadline_ms"], 64, p + ".deadline_ms")
        elif kind == "receipted":
            obj(st, p, ("state", "accepted", "reason", "at_ms"))
            if type(st["accepted"]) is not bool:
                fail(p + ".accepted", "not a bool")
            text(st["reason"], p + ".reason")
            uint(st["at_ms"], 64, p + ".at_ms")
        elif kind == "failed":
            obj(st, p, ("state", "code"))
            text(st["code"], p + ".code")
        else:
            fail(p + ".state", "unknown state")
    if app["reason"] is not None:
        text(app["reason"], "reason")
    if not isinstance(app["timeline"], list):
        fail("timeline", "not a list")
    for i, t in enumerate(app["timeline"]):
        p = f"timeline.{i}"
        obj(t, p, ("at_ms", "what"), ("item", "detail"))
        uint(t["at_ms"], 64, p + ".at_ms")
        text(t["what"], p + ".what")
        if "item" in t:
            text(t["item"], p + ".item")
        if "detail" in t:
            text(t["detail"], p + ".detail")
            if t["detail"] == "":
                fail(p + ".detail", "empty (an empty detail is left out)")


def parse_package(data: bytes) -> AppPackage:
    if len(data) > MAX_PACKAGE_BYTES:
        raise PackageError(f"package larger than {MAX_PACKAGE_BYTES} bytes (64 MiB)")
    try:
        j = strict_json(data.decode("utf-8"), False, "package")
    except UnicodeDecodeError as e:
        raise PackageError(f"not UTF-8: {e}") from None
    except ValueError as e:
        raise PackageError(str(e)) from None
    _obj(j, ("format", "registry_hash", "application_id", "application", "steps", "evidence", "receipts"),
         what="package")
    for k in ("steps", "evidence", "receipts"):
        if not isinstance(j[k], list):
            raise PackageError(f"{k}: not a list")
    evidence = []
    for i, e in enumerate(j["evidence"]):
        w = f"evidence[{i}]"
        _obj(e, ("id", "attempt", "request", "access", "answer"), ("record",), w)
        evidence.append(EvidenceItem(
            _str(e["id"], w + ".id", MAX_ID), _int(e["attempt"], 32, w + ".attempt"),
            parse_request(e["request"], w + ".request"), parse_bundle(e["access"], w + ".access"),
            parse_bundle(e["record"], w + ".record") if "record" in e else None,
            _hex(e["answer"], w + ".answer")))
    receipts = []
    for i, r in enumerate(j["receipts"]):
        w = f"receipts[{i}]"
        _obj(r, ("service", "bundle"), what=w)
        receipts.append(Receipt(_str(r["service"], w + ".service", MAX_ID), parse_bundle(r["bundle"], w + ".bundle")))
    return AppPackage(
        _str(j["format"], "format"), _hex(j["registry_hash"], "registry_hash", 32),
        _hex(j["application_id"], "application_id", 32), _str(j["application"], "application"),
        [parse_bundle(b, f"steps[{i}]") for i, b in enumerate(j["steps"])], evidence, receipts)


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


# --------------------------------------------------------------------------
# Questions (section 15) and rules
# --------------------------------------------------------------------------

def _json_of_value(v):
    """A TOML or application value as JSON (dates as "YYYY-MM-DD")."""
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    if isinstance(v, list):
        return [_json_of_value(x) for x in v]
    if isinstance(v, dict):
        return {k: _json_of_value(x) for k, x in v.items()}
    return v


def param_value(params: dict, name: str):
    """The JSON value of an application parameter.  ASSUMPTION: parameters
    are stored as section 4 JSON values ({"text": …}, {"int": …}, …) and bind
    as the bare value (text -> string, int -> number, bool -> bool, date ->
    "YYYY-MM-DD" string)."""
    v = params.get(name)
    if not isinstance(v, dict) or len(v) != 1:
        raise KeyError(f"parameter {name!r} missing or not a value")
    (kind, x), = v.items()
    if kind not in ("text", "int", "bool", "date"):
        raise KeyError(f"parameter {name!r} of unknown kind {kind!r}")
    return x


def bind_predicates(preds, params: dict):
    """Replace every `param = "p"` by `value = <parameter p>` (recursively,
    through `count`).  ASSUMPTION: everything else (including `days_ago`) is
    written as it stands in the registry."""
    out = []
    for p in preds:
        q = {}
        for k, v in p.items():
            if k == "param":
                if "value" in p:
                    raise KeyError("predicate has both param and value")
                q["value"] = param_value(params, v)
            elif k == "count":
                q["count"] = bind_predicates(v, params)
            else:
                q[k] = _json_of_value(v)
        out.append(q)
    return out


def canonical_json(x) -> str:
    """serde_json's compact form with map keys in byte order.  Python orders
    str keys by code point, which is the UTF-8 byte order."""
    return json.dumps(x, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)


def build_question(contract: dict, ev: dict, params: dict) -> str:
    return canonical_json({
        "record_type": contract["record_type"],
        "predicates": bind_predicates(ev.get("predicates", []), params),
        "disclose": list(ev.get("disclose", [])),
        "purpose": contract["purpose"],
    })


def resolve_city(spec: str, params: dict) -> str:
    if isinstance(spec, str) and spec.startswith("param:"):
        v = param_value(params, spec[len("param:"):])
        if not isinstance(v, str):
            raise KeyError(f"city parameter {spec!r} is not text")
        return v
    return spec


def eval_rule(rule, outcome) -> bool:
    if isinstance(rule, str):
        return outcome(rule)
    if isinstance(rule, dict) and len(rule) == 1:
        (op, arg), = rule.items()
        if op == "all":
            return all(eval_rule(r, outcome) for r in arg)
        if op == "any":
            return any(eval_rule(r, outcome) for r in arg)
        if op == "not":
            return not eval_rule(arg, outcome)
    raise ValueError(f"unknown rule {rule!r}")


# --------------------------------------------------------------------------
# Verification (section 15)
# --------------------------------------------------------------------------

# Section 15, "What a package cannot show" (printed after every report).
CANNOT_SHOW = [
    "The verdicts, the disclosed values, and that each record evaluated was then its latest version and "
    "not revoked, are the provider's signed word (its gateway's access log), not facts the package proves.",
    "Whether the provider applied its contract (parties, fields, validity, budget) is attested by its "
    "access log, not re-derived.",
    "A package shows a committed state of the application, not that it is the latest state: a later step "
    "may exist and be left out.  Its times and timeline are the centre gateway's claims.",
    "Evidence that may be left out and still verify: answers not recorded as answered (pending, failed, "
    "denied or unneeded evidence, earlier attempts), every step but the last, receipts of services not "
    "recorded as receipted.",
    "Which person a request was about (sealed to the provider, named on chain only by a keyed reference), "
    "and what a service request carried (sealed to its recipient).",
]

APPROVED_PHASES = ("dispatching", "completed")
REJECTED_PHASES = ("rejected",)


class _Facts(V._Facts):
    pass


def _bundle(b: V.Bundle, prefix: str, roots, facts):
    """Section 11's checks 4-11 (facts numbered as in section 11)."""
    return V._check_bundle(b, prefix, roots, facts)


def verify_app_package(data: bytes, registry: Registry, registry_bytes_hash: Optional[bytes] = None,
                       now_ms: Optional[int] = None):
    """Returns the list of facts.  Check numbers are those of section 15's
    table; the facts of a bundle's checks 4-11 keep section 11's numbers and
    are named after the bundle (steps[i], evidence[i].access, …)."""
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    roots = registry.roots(now_ms)
    facts = _Facts()
    F = facts
    try:
        pkg = parse_package(data)
    except DecodeError as e:
        F.add(0, "package.decodes", False, "package.malformed", str(e))
        return facts.items
    F.add(0, "package.decodes", True)

    # 1
    ok1 = F.add(1, "package.format", pkg.format == FORMAT, "package.format", f"format {pkg.format!r}")
    ok1 = F.add(1, "package.registry", hmac.compare_digest(pkg.registry_hash, registry.hash),
                "package.registry_mismatch", f"package names {pkg.registry_hash.hex()}") and ok1
    if not ok1:
        return facts.items

    # 2
    app = None
    try:
        app = strict_json(pkg.application, True, "application")
        application_form(app)
        for k, t in (("id", str), ("bundle", str), ("centre", str), ("params", dict), ("phase", str),
                     ("evidence", dict), ("services", dict)):
            if not isinstance(app.get(k), t):
                raise ValueError(f"field {k!r} missing or not a {t.__name__}")
        app_id = bytes.fromhex(app["id"])
        if len(app_id) != 32 or app["id"] != app_id.hex():
            raise ValueError("id is not 32 bytes of lower-case hex")
        F.add(2, "application.parses", True)
    except ValueError as e:
        F.add(2, "application.parses", False, "application.malformed", str(e))
        app = None
    if app is None:
        F.skip(2, "application.id", "application.parses")
        return facts.items
    if not F.add(2, "application.id", app_id == pkg.application_id, "application.id_mismatch",
                 f"application id {app['id']}, package {pkg.application_id.hex()}"):
        return facts.items
    bundle = registry.bundles.get(app["bundle"])
    if not F.add(2, "application.bundle", bundle is not None, "application.unknown_bundle",
                 f"bundle {app['bundle']!r}"):
        return facts.items
    centre = app["centre"]
    if not F.add(2, "application.centre", centre in registry.centres, "application.unknown_centre",
                 f"centre {centre!r}"):
        return facts.items
    params = app["params"]
    centre_city = registry.member_city[centre]
    centre_gateway = registry.gateway_of_city(centre_city)
    centre_chain = registry.members[centre].chain

    # 3
    steps_ok = True
    step_txs = []
    for i, b in enumerate(pkg.steps):
        p = f"steps[{i}]"
        tx, ok = _bundle(b, p, roots, facts)
        if not ok:
            F.skip(3, f"{p}.step", p)
            steps_ok = False
            continue
        detail = None
        if tx.kind != V.KIND_APPLICATION_STEP:
            detail = f"kind {tx.kind}"
        elif tx.body["application"] != app_id:
            detail = "another application"
        elif tx.body["bundle"] != app["bundle"]:
            detail = f"bundle {tx.body['bundle']!r}"
        elif tx.author != centre_gateway or tx.chain_id != centre_chain:
            detail = f"author {tx.author!r}, centre's gateway {centre_gateway!r}"
        if F.add(3, f"{p}.step", detail is None, "step.mismatch", detail or ""):
            step_txs.append((b.header.height, b.proof.index, tx))
        else:
            steps_ok = False

    # 4
    committed = False
    if not steps_ok:
        F.skip(4, "application.committed", "steps")
    else:
        # ASSUMPTION: a package without any step fails check 4 (nothing commits the application).
        last = max(step_txs, key=lambda t: (t[0], t[1]), default=None)
        committed = F.add(4, "application.committed",
                          last is not None and last[2].body["detail"] == sha256(pkg.application.encode("utf-8")),
                          "application.not_committed",
                          "no step" if last is None else f"last step {last[2].body['step']!r} at height {last[0]}")
    if not committed:
        # Checks 5-15 read the application: without check 4 they are skipped.
        for i in range(len(pkg.evidence)):
            F.skip(5, f"evidence[{i}].request", "application.committed")
        F.skip(10, "evidence.complete", "application.committed")
        F.skip(11, "application.decision", "application.committed")
        for i in range(len(pkg.receipts)):
            F.skip(12, f"receipts[{i}].receipt", "application.committed")
        F.skip(13, "receipts.complete", "application.committed")
        F.skip(14, "application.fit", "application.committed")
        F.skip(15, "application.phase", "application.committed")
        return facts.items

    # 5-9 per evidence item
    ev_defs = {e["id"]: e for e in bundle.get("evidence", [])}
    app_ev = app["evidence"]
    proven = {}   # evidence id -> verdict name (items passing checks 5-9)
    for i, item in enumerate(pkg.evidence):
        p = f"evidence[{i}]"
        outcome = _verify_item(item, p, app, app_id, params, ev_defs, registry, roots, F)
        if outcome is not None:
            proven[item.id] = outcome

    # 10
    items_ok = all(f.status == HOLDS for f in facts.items if f.name.startswith("evidence["))
    missing = [e for e, st in app_ev.items() if isinstance(st, dict) and st.get("state") == "answered"
               and e not in proven]
    if not items_ok and missing:
        F.skip(10, "evidence.complete", "evidence items")
    else:
        F.add(10, "evidence.complete", not missing, "evidence.missing", f"missing {missing}")

    # 11
    phase = app["phase"]
    if not items_ok or missing:
        F.skip(11, "application.decision", "evidence")
    else:
        try:
            value = eval_rule(bundle["rule"], lambda e: proven.get(e) == "holds")
        except (ValueError, TypeError, KeyError) as e:
            value = None
            F.add(11, "application.decision", False, "application.decision_mismatch", f"rule: {e}")
        if value is not None:
            # Services are ordered only on approval: "failed" with services
            # failed after it was approved.
            if phase in APPROVED_PHASES or (phase == "failed" and app["services"]):
                F.add(11, "application.decision", value, "application.decision_mismatch",
                      f"phase {phase!r} but the rule gives rejected")
            elif phase in REJECTED_PHASES:
                F.add(11, "application.decision", not value, "application.decision_mismatch",
                      f"phase {phase!r} but the rule gives approved")
            else:
                # ASSUMPTION: another phase states no decision, so nothing to compare.
                F.add(11, "application.decision", True, detail=f"phase {phase!r} states no decision")

    # 12
    services = {s["id"]: s for s in bundle.get("services", [])}
    app_sv = app["services"]
    receipted = set()
    for i, rc in enumerate(pkg.receipts):
        p = f"receipts[{i}]"
        tx, ok = _bundle(rc.bundle, f"{p}.bundle", roots, facts)
        if not ok:
            F.skip(12, f"{p}.receipt", f"{p}.bundle")
            F.skip(12, f"{p}.recorded", f"{p}.bundle")
            continue
        svc = services.get(rc.service)
        detail = None
        recipient = None
        if svc is None:
            detail = f"service {rc.service!r} not in the bundle"
        else:
            try:
                city = resolve_city(svc.get("city"), params)
            except KeyError as e:
                detail = str(e)
            else:
                if "department" in svc:
                    recipient = registry.department(city, svc["department"])
                elif "utility" in svc:
                    recipient = registry.utility(city, svc["utility"])
                if recipient is None:
                    detail = f"no recipient for service {rc.service!r} in city {city!r}"
        if detail is None:
            if tx.kind != V.KIND_RECEIPT:
                detail = f"kind {tx.kind}"
            elif tx.body["application"] != app_id:
                detail = "another application"
            elif tx.body["service"] != rc.service:
                detail = f"service {tx.body['service']!r}"
            elif tx.body["delivery"] != delivery_id(app_id, rc.service):
                detail = "delivery is not delivery_id(application, service)"
            elif tx.author != recipient:
                detail = f"author {tx.author!r}, recipient {recipient!r}"
        if not F.add(12, f"{p}.receipt", detail is None, "receipt.foreign", detail or ""):
            F.skip(12, f"{p}.recorded", f"{p}.receipt")
            continue
        st = app_sv.get(rc.service)
        # ASSUMPTION: "the same outcome" = state "receipted" with the same
        # `accepted` and `reason`; at_ms is not compared (the sample's
        # application records another time than the receipt's at_ms).
        same = (isinstance(st, dict) and st.get("state") == "receipted"
                and st.get("accepted") is tx.body["accepted"] and st.get("reason") == tx.body["reason"])
        if F.add(12, f"{p}.recorded", same, "receipt.not_recorded",
                 f"application records {st!r}, receipt accepted={tx.body['accepted']}"):
            receipted.add(rc.service)

    # 13
    receipts_ok = all(f.status == HOLDS for f in facts.items if f.name.startswith("receipts["))
    missing = [s for s, st in app_sv.items() if isinstance(st, dict) and st.get("state") == "receipted"
               and s not in receipted]
    if not receipts_ok and missing:
        F.skip(13, "receipts.complete", "receipts")
    else:
        F.add(13, "receipts.complete", not missing, "receipt.missing", f"missing {missing}")

    # 14
    misfit = check_fit(app, bundle, registry)
    if not F.add(14, "application.fit", misfit is None, *(misfit or ("", ""))):
        F.skip(15, "application.phase", "application.fit")
        return facts.items
    # 15
    d = check_phase(app, bundle)
    F.add(15, "application.phase", d is None, "application.phase_mismatch", d or "")
    return facts.items


PARAM_KINDS = {"text": ("text", str), "city": ("text", str), "int": ("int", int), "bool": ("bool", bool),
               "date": ("date", str)}


def check_fit(app: dict, bundle: dict, registry: Registry) -> Optional[tuple]:
    """Check 14: None, or (code, detail).  The parameters are exactly the
    bundle's declared ones, each of its kind (a city parameter names a city
    of the registry); the evidence is exactly the bundle's; the services are
    none or exactly the bundle's."""
    declared = {p["id"]: p["kind"] for p in bundle.get("params", [])}
    params = app["params"]
    if set(params) != set(declared):
        return ("application.params_mismatch",
                f"parameters {sorted(params)}, the bundle declares {sorted(declared)}")
    for name, kind in declared.items():
        v = params[name]
        want, typ = PARAM_KINDS.get(kind, (None, None))
        ok = isinstance(v, dict) and len(v) == 1 and want in v and type(v[want]) is typ
        if ok and kind == "city":
            ok = v["text"] in registry.cities
        if not ok:
            return ("application.params_mismatch", f"parameter {name!r} is not a {kind}: {v!r}")
    ev = {e["id"] for e in bundle.get("evidence", [])}
    if set(app["evidence"]) != ev:
        return ("application.evidence_mismatch", f"evidence {sorted(app['evidence'])}, the bundle's {sorted(ev)}")
    sv = {x["id"] for x in bundle.get("services", [])}
    if app["services"] and set(app["services"]) != sv:
        return ("application.services_mismatch",
                f"services {sorted(app['services'])}, the bundle's: none or {sorted(sv)}")
    return None


def check_phase(app: dict, bundle: dict) -> Optional[str]:
    """Check 15: None, or what disagrees.  The phase agrees with the
    evidence, the services and the reason (section 15's table)."""
    def states(m):
        return [x.get("state") if isinstance(x, dict) else None for x in m.values()]
    ev, sv = states(app["evidence"]), app["services"]
    sv_states = states(sv)
    ev_pending = "pending" in ev
    reason = app.get("reason") is not None
    all_services = len(sv) == len(bundle.get("services", []))
    done = all(isinstance(x, dict) and x.get("state") == "receipted" and x.get("accepted") is True
               for x in sv.values())
    not_done = any(isinstance(x, dict) and (x.get("state") == "failed"
                                            or (x.get("state") == "receipted" and x.get("accepted") is False))
                   for x in sv.values())
    phase = app["phase"]
    if phase == "matching":
        ok = not sv and ev_pending and "unneeded" not in ev and not reason
    elif phase == "dispatching":
        ok = bool(sv) and all_services and "pending" in sv_states and not ev_pending and not reason
    elif phase == "completed":
        ok = all_services and done and not ev_pending and not reason
    elif phase == "rejected":
        ok = not sv and not ev_pending and reason
    elif phase == "failed":
        ok = not ev_pending and reason and (
            ("failed" in ev) if not sv else (all_services and "pending" not in sv_states and not_done))
    else:
        ok = False
    if ok:
        return None
    return (f"phase {phase!r} with evidence states {sorted(ev)}, service states {sorted(map(str, sv_states))}, "
            f"reason {'given' if reason else 'none'}")


def _verify_item(item: EvidenceItem, p: str, app: dict, app_id: bytes, params: dict, ev_defs: dict,
                 registry: Registry, roots, F) -> Optional[str]:
    """Checks 5-9 for one evidence item; returns the proven verdict name if
    every one holds."""
    req = item.request
    # 5
    ev = ev_defs.get(item.id)
    if not F.add(5, f"{p}.defined", ev is not None, "evidence.unknown", f"evidence {item.id!r}"):
        for n in (5, 6, 7, 8, 9):
            F.skip(n, f"{p}.{ {5: 'request', 6: 'signature', 7: 'access', 8: 'answer', 9: 'recorded'}[n] }",
                   f"{p}.defined")
        return None
    detail = None
    provider = contract = None
    try:
        city = resolve_city(ev.get("city"), params)
        provider = registry.department(city, ev["department"])
        contract = registry.contract(ev["contract"])
        if provider is None:
            detail = f"no department {ev['department']!r} in city {city!r}"
        elif contract is None:
            detail = f"no contract {ev['contract']!r}"
        else:
            want = {
                "id": ask_id(app_id, item.id, item.attempt),
                "requester": app["centre"],
                "provider": provider,
                "contract": ev["contract"],
                "contract_version": contract["version"],
                "question": build_question(contract, ev, params),
            }
            for k, v in want.items():
                if getattr(req, k) != v:
                    detail = f"{k}: request has {getattr(req, k)!r}, application makes {v!r}"
                    break
    except (KeyError, TypeError, ValueError) as e:
        detail = f"cannot rebuild the request: {e}"
    if not F.add(5, f"{p}.request", detail is None, "evidence.foreign_request", detail or ""):
        for n, s in ((6, "signature"), (7, "access"), (8, "answer"), (9, "recorded")):
            F.skip(n, f"{p}.{s}", f"{p}.request")
        return None
    # 6
    centre_key = registry.members[app["centre"]].keys[0]
    if not F.add(6, f"{p}.signature", V.ed25519_verify_strict(centre_key, req.signing_bytes(), req.signature),
                 "match.bad_signature", f"requester {req.requester!r}"):
        for n, s in ((7, "access"), (8, "answer"), (9, "recorded")):
            F.skip(n, f"{p}.{s}", f"{p}.signature")
        return None
    # 7: section 13 checks 1-5.  Check 1 (request_id) has no separate field in
    # a package: the access log's request id is compared in check 4.
    access_tx, ok = _bundle(item.access, f"{p}.access", roots, F)
    record_tx = None
    if not ok:
        F.skip(7, f"{p}.access_log", f"{p}.access")
    else:
        provider_city = registry.member_city[provider]
        gw = registry.gateway_of_city(provider_city)
        d = None
        code = "match.access_author"
        if access_tx.author != gw or access_tx.auth != 1:
            d = f"author {access_tx.author!r} (auth {access_tx.auth}), gateway {gw!r}"
        elif access_tx.kind != V.KIND_ACCESS_LOG:
            code, d = "match.access_kind", f"kind {access_tx.kind}"
        else:
            b = access_tx.body
            code = "match.access_mismatch"
            for k, got, want in (("requester", b["requester"], req.requester), ("provider", b["provider"], req.provider),
                                 ("contract", b["contract"], req.contract),
                                 ("contract_version", b["contract_version"], req.contract_version),
                                 ("request_id", b["request_id"], req.id),
                                 ("question", b["question"], req.question_hash())):
                if got != want:
                    d = f"{k} differs"
                    break
            # The answer's time (the access log's at_ms) lies in the request's
            # window: from issued_ms less the clock skew to expires_ms.
            if d is None and not req.issued_ms - roots.skew_ms <= b["at_ms"] <= req.expires_ms:
                code, d = "match.access_time", (f"at_ms {b['at_ms']} outside [{req.issued_ms} - {roots.skew_ms}, "
                                                f"{req.expires_ms}]")
        ok = F.add(7, f"{p}.access_log", d is None, code, d or "")
    if item.record is not None:
        record_tx, rok = _bundle(item.record, f"{p}.record", roots, F)
        if not rok or not ok:
            F.skip(7, f"{p}.record_log", f"{p}.record" if not rok else f"{p}.access_log")
            ok = False
        else:
            d = None
            if record_tx.kind != V.KIND_RECORD:
                d = f"kind {record_tx.kind}"
            elif record_tx.author != req.provider:
                d = f"author {record_tx.author!r}, provider {req.provider!r}"
            # Section 13 check 5: the record type the question names.
            elif record_tx.body.get("record_type") != _question_record_type(req.question):
                d = (f"record type {record_tx.body.get('record_type')!r}, "
                     f"question asks about {_question_record_type(req.question)!r}")
            # ASSUMPTION: "names the access log's subject reference": every
            # reference of the access log is among the record's.
            elif not set(access_tx.body["subject_refs"]) <= set(record_tx.body["subject_refs"]):
                d = "record does not name the access log's subject reference"
            ok = F.add(7, f"{p}.record_log", d is None, "match.record_mismatch", d or "")
    if not ok:
        F.skip(8, f"{p}.answer", f"{p} check 7")
        F.skip(9, f"{p}.recorded", f"{p} check 7")
        return None
    # 8: section 13 checks 7-8
    try:
        ans = decode_answer(item.answer)
    except DecodeError as e:
        F.add(8, f"{p}.answer", False, "match.decode", str(e))
        F.skip(9, f"{p}.recorded", f"{p}.answer")
        return None
    d = None
    if ans.digest != req.digest():
        d = "answer names another request"
    elif sha256(item.answer) != access_tx.body["answer"]:
        d = "answer is not the one committed in the access log"
    elif not ans.evaluated_height < item.access.header.height:
        d = f"evaluated_height {ans.evaluated_height} not below the access entry's height"
    elif (ans.record is None) != (item.record is None):
        d = "record named but not proven" if item.record is None else "record proven but not named"
    elif ans.record is not None:
        leaf, version = ans.record
        if leaf != leaf_hash(item.record.tx) or version != record_tx.body["version"]:
            d = "named record is not the proven one"
        elif item.record.header.height > ans.evaluated_height:
            d = "record height above evaluated_height"
    if not F.add(8, f"{p}.answer", d is None, "match.answer_mismatch", d or ""):
        F.skip(9, f"{p}.recorded", f"{p}.answer")
        return None
    # 9
    verdict = VERDICT_NAMES[ans.verdict]
    st = app["evidence"].get(item.id)
    d = None
    if not isinstance(st, dict):
        d = "application records nothing for this evidence"
    elif st.get("attempt") != item.attempt:
        d = f"application records attempt {st.get('attempt')!r}"
    else:
        want = _recorded_answer(ans, verdict)
        if st.get("answer") != want:
            d = f"application records {st.get('answer')!r}, answer is {want!r}"
    if not F.add(9, f"{p}.recorded", d is None, "evidence.answer_mismatch", d or ""):
        return None
    return verdict


def _recorded_answer(ans: Answer, verdict: str) -> dict:
    """How the application JSON records an answer (section 15, "The
    application JSON"): holds with the disclosed values; does_not_hold and
    no_record with the outcome alone; a denial with its code."""
    if verdict == "holds":
        return {"outcome": "holds", "values": dict(ans.values)}
    if verdict == "denied":
        return {"outcome": "denied", "code": ans.rule_code}
    return {"outcome": verdict}


def all_hold(facts: list) -> bool:
    return bool(facts) and all(f.status == HOLDS for f in facts)


def _read_bounded(path: str) -> bytes:
    """At most MAX_PACKAGE_BYTES + 1 bytes of a file (`-`: standard input):
    a larger package is refused without reading the rest."""
    if path == "-":
        return sys.stdin.buffer.read(MAX_PACKAGE_BYTES + 1)
    with open(path, "rb") as fh:
        return fh.read(MAX_PACKAGE_BYTES + 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Verify Tongban application evidence packages (section 15).")
    ap.add_argument("packages", nargs="+", metavar="package", help="package files (`-`: standard input)")
    ap.add_argument("--registry", required=True)
    ap.add_argument("--now-ms", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        with open(args.registry, "rb") as fh:
            reg = load_registry(fh.read())
    except (OSError, RegistryError) as e:
        print(str(e), file=sys.stderr)
        return 2
    results = []
    for path in args.packages:
        try:
            data = _read_bounded(path)
        except OSError as e:
            print(str(e), file=sys.stderr)
            return 2
        facts = verify_app_package(data, reg, now_ms=args.now_ms)
        results.append((path, all_hold(facts), facts))
    every = all(v for _, v, _ in results)
    if args.json:
        def one(facts, valid):
            return {"valid": valid, "facts": [f.__dict__ for f in facts], "cannot_show": CANNOT_SHOW}
        if len(results) == 1:
            out = one(results[0][2], results[0][1])
        else:
            out = {"valid": every, "packages": [dict(one(f, v), package=p) for p, v, f in results],
                   "cannot_show": CANNOT_SHOW}
        print(json.dumps(out, ensure_ascii=False, indent=1))
    else:
        for path, valid, facts in results:
            if len(results) > 1:
                print(f"== {path}")
            for f in facts:
                print(f.line())
            n = {s: sum(1 for f in facts if f.status == s) for s in (HOLDS, FAILS, SKIPPED)}
            print(f"{'VALID' if valid else 'INVALID'}: {n[HOLDS]} hold, {n[FAILS]} fail, {n[SKIPPED]} skipped")
        if len(results) > 1:
            print(f"{sum(1 for _, v, _ in results if v)} of {len(results)} packages valid")
        print("What this package cannot show:")
        for line in CANNOT_SHOW:
            print(f"  - {line}")
    return 0 if every else 1


if __name__ == "__main__":
    sys.exit(main())
