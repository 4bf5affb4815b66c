#!/usr/bin/env python3
"""OpenAPI conformance check of a running Tongban gateway.

Loads the OpenAPI document (by default the one the gateway serves at
/v1/openapi.json; `--doc FILE` reads a file instead), then for every path and
method of the document sends cases and checks each response:

* its status is one the document lists for the operation, and never 5xx;
* it is the status (class) the case expects;
* its Content-Type is the documented media type;
* its body validates against the documented schema (JSON Schema 2020-12,
  `$ref`s resolved into the document's components);
* for refusals of a JSON body, the error names the field at fault.

Cases per operation: the documented example request (signed as the member the
operation is for; record examples are re-signed for the gateway under test,
whose subject key differs from the document's stand-in), unsigned, signed by a
member of the wrong role, a body that is not JSON, a JSON body with an unknown
key, one with a value of the wrong type, an oversized body (declared and
streamed), malformed path parameters.

Usage:
  check_openapi.py --base http://127.0.0.1:PORT --keys DIR [--doc FILE]

`DIR` holds the example city's TEST key files (`serve --example-city`);
the registry is read from `DIR/../registry.toml` unless `--registry` says
otherwise. Exit status 0 iff every case passed.
"""

import argparse
import copy
import http.client
import json
import os
import re
import sys
import time
import urllib.parse

import jsonschema
from referencing import Registry as RefRegistry, Resource
from referencing.jsonschema import DRAFT202012

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tongban_sign as ts  # noqa: E402

DOC_URI = "urn:tongban:openapi"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

# Who calls each operation (the member the example is signed by), and a member
# of a role the operation refuses (403).  None: public.
ROLES = {
    ("get", "/v1/proofs/{leaf}"): ("nanjing.civil-affairs", None),
    ("get", "/v1/chain/export/{from}"): ("nanjing.civil-affairs", None),
    ("post", "/v1/records"): ("nanjing.civil-affairs", "nanjing.centre"),
    ("post", "/v1/records/batch"): ("nanjing.civil-affairs", "nanjing.centre"),
    ("post", "/v1/records/import"): ("nanjing.civil-affairs", "nanjing.centre"),
    ("post", "/v1/records/revoke"): ("nanjing.civil-affairs", "nanjing.centre"),
    ("get", "/v1/records/{record_type}/{record_id}"): ("nanjing.civil-affairs", "nanjing.real-estate"),
    ("get", "/v1/records/{record_type}/{record_id}/versions/{version}/fields/{field}"): (
        "nanjing.civil-affairs",
        "nanjing.real-estate",
    ),
    ("post", "/v1/matches"): ("nanjing.centre", "nanjing.gas"),
    ("post", "/v1/access-ledger"): ("nanjing.real-estate", "nanjing.centre"),
    ("post", "/v1/applications"): ("nanjing.centre", "nanjing.civil-affairs"),
    ("get", "/v1/applications/{id}"): ("nanjing.centre", "nanjing.civil-affairs"),
    ("get", "/v1/applications/{id}/evidence"): ("nanjing.centre", "nanjing.civil-affairs"),
    ("get", "/v1/inbox"): ("nanjing.gas", "nanjing.centre"),
    ("post", "/v1/inbox/receipt"): ("nanjing.gas", "nanjing.centre"),
    ("post", "/v1/light/{chain}/unfreeze"): ("nanjing.gateway", "nanjing.civil-affairs"),
}

# Malformed path parameters: (value, statuses expected, field expected or None).
BAD_PARAMS = {
    "height": [("abc", {400}, "height"), ("-1", {400}, "height"), ("18446744073709551616", {400}, "height"),
               ("%FF", {400}, None)],
    "from": [("abc", {400}, "from"), ("18446744073709551616", {400}, "from")],
    "leaf": [("zz", {400}, "leaf"), ("ab" * 33, {400}, "leaf"), ("%FF", {400}, None)],
    "id": [("not-hex", {400}, "id"), ("ab" * 200, {400}, "id")],
    "version": [("one", {400}, "version"), ("4294967296", {400}, "version"), ("0", {404}, None)],
    "field": [("No-Such-Field", {404}, "field"), ("f" * 300, {404}, "field")],
    "record_type": [("no-such-type", {404}, None), ("t" * 1000, {404}, None)],
    "record_id": [("R" * 1000, {404}, None), ("%FF%FE", {400, 404}, None)],
    "chain": [("no-such-chain", {404}, None), ("c" * 1000, {404}, None)],
}


class Checker:
    def __init__(self, args):
        u = urllib.parse.urlsplit(args.base)
        self.host, self.port = u.hostname, u.port or 80
        self.keys, self.subject_key = ts.load_keys(args.keys)
        reg = args.registry or os.path.join(os.path.dirname(os.path.abspath(args.keys)), "registry.toml")
        self.registry = ts.Registry(reg)
        self.audience = args.audience
        self.limit = args.max_body_bytes
        self.verbose = args.verbose
        self.results = []  # (ok, method, path, case, status, detail)
        self.covered = set()
        self.state = {}
        if args.doc:
            with open(args.doc, encoding="utf-8") as f:
                self.doc = json.load(f)
            self.doc_source = args.doc
        else:
            st, ct, body = self.http("GET", "/v1/openapi.json")
            if st != 200:
                sys.exit(f"GET /v1/openapi.json answered {st}")
            self.doc = json.loads(body)
            self.doc_source = "GET /v1/openapi.json"
        self.doc_text = json.dumps(self.doc, ensure_ascii=False)
        self.dump = args.dump
        self.schemas = RefRegistry().with_resource(DOC_URI, Resource(contents=self.doc, specification=DRAFT202012))
        if not self.audience:
            gw = [m for m in self.keys if m.endswith(".gateway")]
            if len(gw) != 1:
                sys.exit("cannot tell the gateway's id from the key files; pass --audience")
            self.audience = gw[0]

    # --- HTTP ----------------------------------------------------------------

    def http(self, method, path, body=b"", member=None, headers=None, declared_length=None, chunked=None):
        h = {}
        if member:
            h.update(ts.request_headers(self.keys[member], member, self.audience, method, path, body))
        if headers:
            h.update(headers)
        c = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            if chunked is not None:
                # Stream `chunked` bytes with Transfer-Encoding: chunked (no Content-Length).
                c.putrequest(method, path, skip_accept_encoding=True)
                for k, v in h.items():
                    c.putheader(k, v)
                c.putheader("Transfer-Encoding", "chunked")
                c.endheaders()
                block = b"x" * 65536
                sent = 0
                try:
                    while sent < chunked:
                        n = min(len(block), chunked - sent)
                        c.send(b"%x\r\n" % n + block[:n] + b"\r\n")
                        sent += n
                    c.send(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass
            elif declared_length is not None:
                # Declare a length above the limit; send only the first bytes.
                c.putrequest(method, path, skip_accept_encoding=True)
                for k, v in h.items():
                    c.putheader(k, v)
                c.putheader("Content-Length", str(declared_length))
                c.endheaders()
                try:
                    c.send(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
            else:
                c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, r.getheader("content-type"), data
        finally:
            c.close()

    # --- the document ----------------------------------------------------------

    def operations(self):
        for path, item in self.doc["paths"].items():
            for m in METHODS:
                if m in item:
                    yield m, path, item[m]

    def op(self, method, path):
        return self.doc["paths"][path][method]

    def response_spec(self, op, status):
        """The documented response for `status` (resolving a $ref), and its JSON pointer."""
        r = op["responses"].get(str(status)) or op["responses"].get(f"{str(status)[0]}XX") or op["responses"].get(
            "default"
        )
        if r is None:
            return None, None
        ptr = None
        if "$ref" in r:
            ptr = r["$ref"][1:]
            r = self.resolve(r["$ref"])
        return r, ptr

    def resolve(self, ref):
        node = self.doc
        for part in ref.lstrip("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def pointer(self, *parts):
        return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)

    def security(self, op):
        sec = op.get("security", self.doc.get("security", []))
        return bool(sec) and not any(s == {} for s in sec)

    def example_body(self, op):
        rb = op.get("requestBody")
        if not rb:
            return None
        media = rb.get("content", {}).get("application/json", {})
        if "examples" in media and media["examples"]:
            first = next(iter(media["examples"].values()))
            if "$ref" in first:
                first = self.resolve(first["$ref"])
            return copy.deepcopy(first["value"])
        if "example" in media:
            return copy.deepcopy(media["example"])
        return None

    def request_examples(self, op):
        rb = op.get("requestBody") or {}
        media = rb.get("content", {}).get("application/json", {})
        out = {}
        for k, v in (media.get("examples") or {}).items():
            if "$ref" in v:
                v = self.resolve(v["$ref"])
            out[k] = copy.deepcopy(v["value"])
        return out

    def param_example(self, op, name):
        for p in op.get("parameters", []):
            if "$ref" in p:
                p = self.resolve(p["$ref"])
            if p.get("name") == name:
                if "example" in p:
                    return str(p["example"])
                if p.get("examples"):
                    return str(next(iter(p["examples"].values()))["value"])
        return None

    # --- checking one response ---------------------------------------------------

    def check(self, method, path, case, resp, expect, field=None, code=None):
        """Records one case; returns the parsed JSON body (or None)."""
        status, ctype, body = resp
        op = self.op(method, path)
        self.covered.add((method, path))
        problems = []
        documented = sorted(op["responses"].keys())
        spec, ptr = self.response_spec(op, status)
        if status >= 500:
            problems.append(f"server error {status}")
        if spec is None:
            problems.append(f"status {status} not documented (documented: {', '.join(documented)})")
        if expect is not None and status not in expect:
            problems.append(f"expected {'/'.join(map(str, sorted(expect)))}")
        parsed = None
        if spec is not None:
            content = spec.get("content")
            if not content:
                if body:
                    problems.append("documented without a body, but has one")
            else:
                media, mspec = self.match_media(content, ctype)
                if media is None:
                    problems.append(f"Content-Type {ctype!r} is not documented ({', '.join(content)})")
                elif media.split(";")[0].strip().endswith("json"):
                    try:
                        parsed = json.loads(body)
                    except ValueError:
                        problems.append(f"body is not JSON: {body[:80]!r}")
                    else:
                        if "schema" in mspec:
                            base = ptr or self.pointer("paths", path, method, "responses", str(status))
                            sptr = base + "/content/" + media.replace("~", "~0").replace("/", "~1") + "/schema"
                            err = self.validate(parsed, sptr)
                            if err:
                                problems.append(f"body does not match the documented schema: {err}")
                else:
                    if "schema" in mspec and mspec["schema"].get("type") == "string":
                        try:
                            body.decode("utf-8")
                        except UnicodeDecodeError:
                            problems.append("text body is not UTF-8")
        if parsed is not None and isinstance(parsed, dict) and "error" in parsed and 400 <= status < 500:
            e = parsed.get("error") or {}
            if field is not None and e.get("field") != field:
                problems.append(f"error field {e.get('field')!r}, expected {field!r}")
            if code is not None and e.get("code") != code:
                problems.append(f"error code {e.get('code')!r}, expected {code!r}")
            if isinstance(e.get("code"), str) and not self.code_documented(e["code"]):
                problems.append(f"error code {e['code']!r} is not mentioned anywhere in the document")
        elif (field or code) and 400 <= status < 500 and parsed is None:
            problems.append("expected a JSON error body naming the field")
        if self.dump and 200 <= status < 300 and parsed is not None:
            os.makedirs(self.dump, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9]+", "_", f"{method}_{path}_{case}").strip("_")[:150]
            with open(os.path.join(self.dump, name + ".json"), "w", encoding="utf-8") as f:
                json.dump(parsed, f, indent=2, ensure_ascii=False)
        detail = "; ".join(problems)
        if problems and body:
            detail += f" — body: {body[:160].decode('utf-8', 'replace')!r}"
        self.results.append((not problems, method.upper(), path, case, status, detail))
        line = f"{'ok  ' if not problems else 'FAIL'} {method.upper():5} {path} [{case}] -> {status}"
        if problems:
            line += f"  ({detail})"
        elif self.verbose and parsed is not None and isinstance(parsed, dict) and "error" in parsed:
            line += f"  {parsed['error'].get('code')}"
        print(line, flush=True)
        return parsed

    def save(self, name, obj):
        if self.dump:
            os.makedirs(self.dump, exist_ok=True)
            with open(os.path.join(self.dump, name + ".json"), "w", encoding="utf-8") as f:
                json.dump(obj, f, indent=2, ensure_ascii=False)

    def code_documented(self, code):
        return re.search(r"(?<![A-Za-z0-9_.])" + re.escape(code) + r"(?![A-Za-z0-9_])", self.doc_text) is not None

    def match_media(self, content, ctype):
        if ctype is None:
            return None, None
        got = [p.strip().lower() for p in ctype.split(";")]
        for media, spec in content.items():
            want = [p.strip().lower() for p in media.split(";")]
            if got[0] == want[0] and set(want[1:]) <= set(got[1:]):
                return media, spec
        return None, None

    def validate(self, instance, schema_ptr):
        v = jsonschema.Draft202012Validator({"$ref": DOC_URI + "#" + schema_ptr}, registry=self.schemas)
        errs = sorted(v.iter_errors(instance), key=lambda e: list(e.absolute_path))
        if not errs:
            return None
        e = errs[0]
        return f"at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:200]}"

    def fail(self, method, path, case, detail):
        self.covered.add((method, path))
        self.results.append((False, method.upper(), path, case, 0, detail))
        print(f"FAIL {method.upper():5} {path} [{case}]  ({detail})", flush=True)

    # --- helpers -------------------------------------------------------------------

    def call(self, method, template, concrete, case, body=None, member=None, expect=None, field=None, code=None):
        raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
        resp = self.http(method.upper(), concrete, raw, member)
        return self.check(method, template, case, resp, expect, field, code)

    def chain_id(self):
        if "chain_id" not in self.state:
            st, _, b = self.http("GET", "/v1/chain")
            self.state["chain_id"] = json.loads(b)["chain_id"]
        return self.state["chain_id"]

    def sign_pub(self, dept, rec):
        return ts.sign_publication(self.registry, self.chain_id(), dept, self.keys[dept], self.subject_key, rec)

    # --- the scenario ----------------------------------------------------------------

    def run(self):
        print(f"document: {self.doc_source} ({self.doc.get('openapi')}); gateway {self.audience} at {self.host}:{self.port}")
        self.check_routes()
        self.static_checks()
        self.public_operations()
        self.record_writes()
        self.record_reads()
        self.applications()
        self.matches()
        self.unfreeze()
        self.negative_cases()
        missing = [(m, p) for m, p, _ in self.operations() if (m, p) not in self.covered]
        for m, p in missing:
            self.fail(m, p, "coverage", "no case exercised this operation")
        return self.summary()

    def check_routes(self):
        expected = {
            "/healthz", "/readyz", "/metrics", "/v1/openapi.json", "/v1/chain", "/v1/chain/headers/{height}",
            "/v1/proofs/{leaf}", "/v1/chain/export/{from}", "/v1/records", "/v1/records/batch",
            "/v1/records/import", "/v1/records/revoke", "/v1/records/{record_type}/{record_id}",
            "/v1/records/{record_type}/{record_id}/versions/{version}/fields/{field}", "/v1/matches",
            "/v1/applications", "/v1/applications/{id}", "/v1/applications/{id}/evidence", "/v1/inbox",
            "/v1/inbox/receipt", "/v1/access-ledger", "/v1/light", "/v1/light/{chain}/unfreeze",
        }  # the routes of gateway/src/api/mod.rs (a Rust test keeps the two lists equal)
        documented = set(self.doc["paths"])
        for p in sorted(expected - documented):
            self.results.append((False, "-", p, "route documented", 0, "route missing from the document"))
            print(f"FAIL -     {p} [route documented]  (route missing from the document)")
        for p in sorted(documented - expected):
            print(f"note: documented path {p} is not in the checker's route list")
        print(f"ok   routes: {len(expected & documented)}/{len(expected)} routes documented, "
              f"{sum(1 for _ in self.operations())} operations")

    def doc_case(self, ok, m, p, case, detail=""):
        self.results.append((ok, m.upper(), p, case, 0, detail))
        if not ok:
            print(f"FAIL {m.upper():5} {p} [{case}]  ({detail})", flush=True)

    def static_checks(self):
        """The document itself: examples present and valid, refusals documented."""
        n = 0
        for m, p, op in self.operations():
            base = self.pointer("paths", p, m)
            signed = self.security(op)
            resp = op.get("responses", {})
            problems = []
            rb = op.get("requestBody")
            if rb is not None and "$ref" in rb:
                rb = self.resolve(rb["$ref"])
            if rb:
                for media, ms in rb.get("content", {}).items():
                    exs = self.media_examples(ms)
                    if not exs:
                        problems.append(f"request body {media}: no example")
                    for name, v in exs:
                        if "json" in media and "schema" in ms:
                            err = self.validate(v, base + "/requestBody/content/" + media.replace("/", "~1") + "/schema")
                            if err:
                                problems.append(f"request example {name}: {err}")
            for st, r in resp.items():
                rptr = base + "/responses/" + st
                if "$ref" in r:
                    rptr = r["$ref"][1:]
                    r = self.resolve(r["$ref"])
                for media, ms in (r.get("content") or {}).items():
                    exs = self.media_examples(ms)
                    if st.startswith("2") and not exs:
                        problems.append(f"{st} {media}: no example")
                    for name, v in exs:
                        if "json" in media and "schema" in ms:
                            err = self.validate(v, rptr + "/content/" + media.replace("~", "~0").replace("/", "~1") + "/schema")
                            if err:
                                problems.append(f"{st} example {name}: {err}")
                    if st.startswith("4") and "json" in media:
                        sch = ms.get("schema", {})
                        if sch.get("$ref") != "#/components/schemas/ErrorBody":
                            problems.append(f"{st}: schema is not the shared ErrorBody")
            need = set()
            if signed:
                need |= {"401", "413"}
            if rb:
                need |= {"400", "413", "422"}
            if "{" in p:
                need |= {"400"} if any(x in p for x in ("{height}", "{from}", "{leaf}", "{id}", "{version}")) else set()
                need |= {"404"} if any(x in p for x in ("{leaf}", "{id}", "{record_id}", "{field}", "{chain}")) else set()
            if (m, p) in ROLES and ROLES[(m, p)][1]:
                need.add("403")
            for st in sorted(need - set(resp)):
                problems.append(f"{st} not documented")
            if not any(st.startswith("2") for st in resp):
                problems.append("no 2xx response")
            self.doc_case(not problems, m, p, "document", "; ".join(problems))
            n += 1
        bad = sum(1 for r in self.results if r[3] == "document" and not r[0])
        print(f"{'ok  ' if not bad else 'FAIL'} document: {n} operations checked for examples and refusals"
              f"{'' if not bad else f' ({bad} incomplete)'}")

    def media_examples(self, ms):
        out = []
        for k, v in (ms.get("examples") or {}).items():
            if "$ref" in v:
                v = self.resolve(v["$ref"])
            if "value" in v:
                out.append((k, v["value"]))
        if "example" in ms:
            out.append(("example", ms["example"]))
        return out

    def public_operations(self):
        for m, p, op in self.operations():
            if self.security(op) or "{" in p:
                continue
            self.call(m, p, p, "unsigned (public) example", expect={200})
        # A public GET with a body is still answered (the body is ignored).
        self.call("get", "/v1/chain", "/v1/chain", "public GET with a body", body=b"x" * 1024, expect={200})
        # The served document is the one checked when reading from a file.
        st, ct, body = self.http("GET", "/v1/openapi.json")
        if st == 200 and self.doc_source != "GET /v1/openapi.json":
            same = json.loads(body) == self.doc
            print(f"note: served document {'equals' if same else 'differs from'} {self.doc_source}")

    def record_writes(self):
        dept = "nanjing.civil-affairs"
        P = "/v1/records"
        ex = self.request_examples(self.op("post", P))
        first = None
        for name, rec in ex.items():
            body = self.sign_pub(dept, rec)
            r = self.call("post", P, P, f"example {name} (re-signed)", body, dept, {201})
            if r and r.get("location") and first is None:
                first = r["location"]
                self.state["leaf"] = r["location"]["leaf"]
                self.state["height"] = r["location"]["height"]
                self.state["pub_example"] = rec
            if name == next(iter(ex)):
                self.call("post", P, P, f"example {name} again (duplicate)", body, dept, {200})
                clash = dict(rec, issued_ms=rec["issued_ms"] + 1)
                self.call("post", P, P, "same version, other content", self.sign_pub(dept, clash), dept, {409},
                          code="record.version_exists")
                bad = dict(body, signature="00" * 64)
                self.call("post", P, P, "signature that does not verify", bad, dept, {400}, field="signature")
        # Batch.
        B = "/v1/records/batch"
        for name, req in self.request_examples(self.op("post", B)).items():
            req["records"] = [self.sign_pub(dept, r) for r in req["records"]]
            self.call("post", B, B, f"example {name} (re-signed)", req, dept, {200})
        self.call("post", B, B, "empty batch", {"records": []}, dept, {422}, field="records")
        # Import.
        I = "/v1/records/import"
        for name, req in self.request_examples(self.op("post", I)).items():
            req = ts.sign_import(self.registry, self.chain_id(), dept, self.keys[dept], self.subject_key, req)
            self.call("post", I, I, f"example {name} (re-signed)", req, dept, {200})
        # Revoke.
        R = "/v1/records/revoke"
        for name, req in self.request_examples(self.op("post", R)).items():
            req = ts.sign_revocation(self.chain_id(), dept, self.keys[dept], req)
            self.call("post", R, R, f"example {name} (re-signed)", req, dept, {201})
            self.call("post", R, R, f"example {name} again (duplicate)", req, dept, {200})
        # The records a house-transfer application needs (synthetic people).
        now = int(time.time() * 1000)
        seller, buyer = ts.resident_id("99000019750102003"), ts.resident_id("99000019880606004")
        self.state["house"] = {"seller": seller, "buyer": buyer, "cert": "SU(2023)NJ-0099001"}
        setup = [
            ("nanjing.real-estate", {
                "record_type": "real-estate-title", "record_id": "RE-NJ-2023-0099001", "version": 1,
                "fields": {"certificate_number": "SU(2023)NJ-0099001", "owner_id": seller,
                           "owner_share_percent": 100, "city": "nanjing", "district": "Xuanwu",
                           "address": "Room 1201, Building 9, 99 Example Road, Xuanwu District, Nanjing",
                           "area_m2": 89, "use": "residential", "registration_date": "2023-03-15",
                           "mortgaged": False, "seized": False},
                "issued_ms": now - 86_400_000, "secret": "11" * 32}),
            ("nanjing.hr-social-security", {
                "record_type": "social-insurance", "record_id": "SI-NJ-0099004", "version": 1,
                "fields": {"insured_id": buyer, "city": "nanjing", "months_paid": 72, "status": "paying",
                           "last_paid_month": "2026-10-01"},
                "issued_ms": now - 86_400_000, "secret": "22" * 32}),
            ("nanjing.tax", {
                "record_type": "tax-clearance", "record_id": "TX-NJ-DEED-0099001", "version": 1,
                "fields": {"certificate_number": "TX-NJ-DEED-0099001", "taxpayer_id": buyer, "tax_type": "deed",
                           "period": "2026-11", "amount_fen": 9_000_000, "paid_date": "2026-11-20",
                           "property_certificate": "SU(2023)NJ-0099001"},
                "issued_ms": now - 86_400_000, "secret": "33" * 32}),
        ]
        for d, rec in setup:
            self.call("post", P, P, f"setup: {rec['record_type']} by {d}", self.sign_pub(d, rec), d, {201})

    def record_reads(self):
        dept = "nanjing.civil-affairs"
        rec = self.state.get("pub_example") or {}
        rtype, rid = rec.get("record_type", "marriage"), rec.get("record_id", "x")
        qid = urllib.parse.quote(rid, safe="")
        T = "/v1/records/{record_type}/{record_id}"
        self.call("get", T, f"/v1/records/{rtype}/{qid}", "example", None, dept, {200})
        self.call("get", T, f"/v1/records/{rtype}/MR-NO-SUCH-RECORD", "unknown record", None, dept, {404},
                  code="record.not_found")
        F = "/v1/records/{record_type}/{record_id}/versions/{version}/fields/{field}"
        op = self.op("get", F)
        field = self.param_example(op, "field") or "status"
        version = self.param_example(op, "version") or "1"
        self.call("get", F, f"/v1/records/{rtype}/{qid}/versions/{version}/fields/{field}", "example", None, dept,
                  {200})
        self.call("get", F, f"/v1/records/{rtype}/{qid}/versions/9/fields/{field}", "unknown version", None, dept,
                  {404})
        L = "/v1/proofs/{leaf}"
        self.call("get", L, f"/v1/proofs/{self.state.get('leaf', '00' * 32)}", "leaf of the example publication",
                  None, dept, {200})
        self.call("get", L, f"/v1/proofs/{'00' * 32}", "unknown leaf", None, dept, {404})
        H = "/v1/chain/headers/{height}"
        self.call("get", H, f"/v1/chain/headers/{self.state.get('height', 0)}", "height of the example publication",
                  None, None, {200})
        self.call("get", H, "/v1/chain/headers/0", "genesis", None, None, {200})
        self.call("get", H, "/v1/chain/headers/999999", "beyond the head", None, None, {404})
        E = "/v1/chain/export/{from}"
        self.call("get", E, "/v1/chain/export/0", "from genesis", None, dept, {200})
        self.call("get", E, "/v1/chain/export/999999", "beyond the head", None, dept, {200})

    def applications(self):
        centre = "nanjing.centre"
        A = "/v1/applications"
        op = self.op("post", A)
        req = self.example_body(op)
        if req is None:
            self.fail("post", A, "example", "no request example documented")
            h = self.state["house"]
            req = {"bundle": "house-transfer", "reference": "NJ-ZW-2026-000001", "params": {}}
        else:
            # Substitute the synthetic people whose records were published above.
            h = self.state["house"]
            params = req.get("params", {})
            for k, v in (("seller_id", h["seller"]), ("buyer_id", h["buyer"]), ("certificate_number", h["cert"])):
                if k in params:
                    params[k] = v
        app = self.call("post", A, A, "example (synthetic people of the setup records)", req, centre, {201})
        self.call("post", A, A, "example again (same reference)", req, centre, {200})
        bad = dict(req, bundle="no-such-bundle", reference=req["reference"] + "-X")
        self.call("post", A, A, "unknown bundle", bad, centre, {422})
        self.call("post", A, A, "empty reference", dict(req, reference=""), centre, {422}, field="reference")
        app_id = (app or {}).get("id", "00" * 32)
        S = "/v1/applications/{id}"
        deadline = time.time() + 45
        while app and time.time() < deadline:
            st, ct, b = self.http("GET", f"/v1/applications/{app_id}", b"", centre)
            if st != 200 or json.loads(b).get("phase") not in ("matching",):
                break
            time.sleep(0.5)
        status = self.call("get", S, f"/v1/applications/{app_id}", "example (the application submitted)", None, centre,
                           {200})
        self.call("get", S, f"/v1/applications/{'ab' * 32}", "unknown application", None, centre, {404})
        V = "/v1/applications/{id}/evidence"
        self.call("get", V, f"/v1/applications/{app_id}/evidence", "example (the application submitted)", None,
                  centre, {200})
        self.call("get", V, f"/v1/applications/{'ab' * 32}/evidence", "unknown application", None, centre, {404})
        # The gas utility's inbox: the application's service request, once dispatched.
        gas = "nanjing.gas"
        items = []
        deadline = time.time() + 30
        while time.time() < deadline:
            st, ct, b = self.http("GET", "/v1/inbox", b"", gas)
            items = [i for i in (json.loads(b) if st == 200 else []) if i["delivery"].get("application") == app_id]
            if items or st != 200:
                break
            time.sleep(0.5)
        inbox = self.call("get", "/v1/inbox", "/v1/inbox", "example (utility)", None, gas, {200})
        self.call("get", "/v1/inbox", "/v1/inbox", "department inbox", None, "nanjing.real-estate", {200})
        if not items:
            print(f"note: no delivery for application {app_id} reached nanjing.gas "
                  f"(phase {((status or {}).get('phase'))}); receipt checked against the documented example only")
        R = "/v1/inbox/receipt"
        ex = self.example_body(self.op("post", R))
        own = None
        if items:
            d = items[0]["delivery"]
            own = ts.sign_receipt(self.chain_id(), gas, self.keys[gas], d, True, "", int(time.time() * 1000))
            self.save("request_receipt", own)
        if ex is None:
            self.fail("post", R, "example", "no request example documented")
        elif items and ex.get("delivery") == items[0]["delivery"]["id"]:
            # Application ids, deliveries and their seals are deterministic, so the
            # documented receipt closes this very delivery.
            self.call("post", R, R, "documented example (the delivery of the example application)", ex, gas, {201})
            self.call("post", R, R, "documented example again (duplicate)", ex, gas, {200})
            self.call("post", R, R, "another receipt for the closed request (the first is returned)", own, gas,
                      {200})
            own = None
        else:
            self.call("post", R, R, "documented example (not a delivery of this gateway)", ex, gas, {400, 404})
        if own:
            self.call("post", R, R, "receipt for the delivery", own, gas, {201})
            self.call("post", R, R, "receipt again (duplicate)", own, gas, {200})
        _ = inbox

    def matches(self):
        centre = "nanjing.centre"
        M = "/v1/matches"
        op = self.op("post", M)
        ex = self.example_body(op)
        if ex is None:
            self.fail("post", M, "example", "no request example documented")
        else:
            self.call("post", M, M, "documented example (expired by now)", ex, ex.get("requester", centre), {422},
                      code="match.expired")
        # A fresh request: the contract and question of the example, about a published record's subject.
        contract_id = (ex or {}).get("contract", "house-transfer.marriage")
        c = self.registry.contract(contract_id)
        provider = (ex or {}).get("provider", "nanjing.civil-affairs")
        question = (ex or {}).get("question") or json.dumps(
            {"disclose": [], "predicates": [{"field": "status", "op": "eq", "value": "married"}],
             "purpose": c["purpose"], "record_type": c["record_type"]}, separators=(",", ":"), ensure_ascii=False)
        subject = (self.state.get("pub_example") or {}).get("fields", {}).get("party_b_id", "990000199205140024")
        hpke = bytes.fromhex(self.registry.member(provider)["hpke_key"])
        req = ts.match_request(self.keys[centre], centre, provider, hpke, contract_id, c["version"], question, subject,
                               int(time.time() * 1000))
        self.call("post", M, M, "fresh signed request about a published record", req, centre, {200})
        self.call("post", M, M, "the same request again (idempotent: same answer)", req, centre, {200})
        reuse = ts.match_request(self.keys[centre], centre, provider, hpke, contract_id, c["version"], question,
                                 subject, int(time.time() * 1000), rid=bytes.fromhex(req["id"]))
        self.call("post", M, M, "another request reusing the id", reuse, centre, {409}, code="match.replayed")
        self.save("request_match", req)
        stale = dict(req, signature="00" * 64)
        self.call("post", M, M, "request whose signature does not verify", stale, centre, {401},
                  field="signature")
        other = ts.match_request(self.keys[centre], centre, provider, hpke, contract_id, c["version"], question,
                                 subject, int(time.time() * 1000))
        self.call("post", M, M, "request by another member than the caller", other, "nanjing.civil-affairs", {403},
                  field="requester")
        # The access ledger: the real-estate department keeps the seller's title, matched by the application.
        AL = "/v1/access-ledger"
        ex = self.example_body(self.op("post", AL))
        if ex is None:
            self.fail("post", AL, "example", "no request example documented")
        self.call("post", AL, AL, "subject of the setup title", {"subject": self.state["house"]["seller"]},
                  "nanjing.real-estate", {200})
        self.call("post", AL, AL, "subject of the example marriage",
                  {"subject": subject}, "nanjing.civil-affairs", {200})
        self.call("post", AL, AL, "subject the department keeps no record of",
                  {"subject": ts.resident_id("99000020000101777")}, "nanjing.real-estate", {403})
        self.call("post", AL, AL, "malformed subject", {"subject": ""}, "nanjing.real-estate", {422},
                  field="subject")

    def unfreeze(self):
        U = "/v1/light/{chain}/unfreeze"
        op = self.op("post", U)
        chain = self.param_example(op, "chain") or "hefei-egov"
        self.call("post", U, f"/v1/light/{chain}/unfreeze", "example (nothing frozen in a fresh gateway)", None,
                  "nanjing.gateway", {404}, code="chain.not_frozen")

    def negative_cases(self):
        for m, p, op in self.operations():
            signed = self.security(op)
            concrete = self.concrete_path(m, p, op)
            caller, wrong = ROLES.get((m, p), (None, None))
            if signed:
                self.call(m, p, concrete, "unsigned", None if m == "get" else b"{}", None, {401}, code="auth.missing")
                body = b"" if m == "get" else b"{}"
                caller = caller or "nanjing.civil-affairs"
                h = ts.request_headers(self.keys[caller], caller, self.audience, m.upper(), concrete, body)
                h["tongban-signature"] = "00" * 64
                self.check(m, p, "bad signature", self.http(m.upper(), concrete, body, headers=h), {401},
                           code="auth.bad_signature")
                if wrong:
                    ex = self.example_body(op)
                    self.call(m, p, concrete, f"wrong role ({wrong})", ex if ex is not None else None, wrong, {403})
                # Oversized: a declared length above the limit, and a chunked body above it.
                self.check(m, p, "oversized (declared length)",
                           self.http(m.upper(), concrete, b"{}", caller, declared_length=self.limit + 1), {413},
                           code="request.too_large")
                if m != "get":
                    self.check(m, p, "oversized (streamed, chunked)",
                               self.http(m.upper(), concrete, b"", None, chunked=self.limit + 65536), {413},
                               code="request.too_large")
            if op.get("requestBody"):
                self.call(m, p, concrete, "body not JSON", b"this is not JSON {", caller, {400},
                          code="request.malformed_json")
                ex = self.example_body(op)
                if ex is None:
                    ex = {}
                if isinstance(ex, dict):
                    unknown = dict(ex, remarks="not a property")
                    self.call(m, p, concrete, "unknown key", unknown, caller, {422}, field="remarks",
                              code="request.invalid")
                    if ex:
                        key = next(iter(ex))
                        v = ex[key]
                        wrong_v = 12345 if isinstance(v, (str, dict, list, bool)) else "not a number"
                        self.call(m, p, concrete, f"wrong type ({key})", dict(ex, **{key: wrong_v}), caller, {422},
                                  field=key, code="request.invalid")
            for name, bad, expect, field in self.bad_params(p, op):
                path = self.concrete_path(m, p, op, {name: bad})
                self.call(m, p, path, f"malformed {name}={bad[:12]}{'…' if len(bad) > 12 else ''}", None, caller,
                          expect, field=field)

    def bad_params(self, path, op):
        for part in path.split("/"):
            if part.startswith("{"):
                name = part[1:-1]
                for bad, expect, field in BAD_PARAMS.get(name, []):
                    yield name, bad, expect, field

    def concrete_path(self, m, p, op, override=None):
        rec = self.state.get("pub_example") or {}
        values = {
            "height": str(self.state.get("height", 0)),
            "from": "0",
            "leaf": self.state.get("leaf", "00" * 32),
            "record_type": rec.get("record_type", "marriage"),
            "record_id": urllib.parse.quote(rec.get("record_id", "x"), safe=""),
            "version": "1",
            "field": "status",
            "id": "ab" * 32,
            "chain": "hefei-egov",
        }
        values.update(override or {})
        out = p
        for k, v in values.items():
            out = out.replace("{" + k + "}", v)
        return out

    def summary(self):
        ok = sum(1 for r in self.results if r[0])
        bad = [r for r in self.results if not r[0]]
        ops = sum(1 for _ in self.operations())
        print()
        print(f"summary: {len(self.results)} cases over {len(self.covered)}/{ops} operations: "
              f"{ok} ok, {len(bad)} failed")
        for r in bad:
            print(f"  FAIL {r[1]} {r[2]} [{r[3]}] -> {r[4]}: {r[5]}")
        return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the gateway's base URL, e.g. http://127.0.0.1:18180")
    ap.add_argument("--keys", required=True, help="directory of the example city's TEST key files")
    ap.add_argument("--doc", help="read the OpenAPI document from this file instead of GET /v1/openapi.json")
    ap.add_argument("--registry", help="the registry file (default: KEYS/../registry.toml)")
    ap.add_argument("--audience", help="the gateway's registry id (default: the id of KEYS/gateway.key)")
    ap.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024,
                    help="the gateway's http.max_body_bytes (default 16 MiB)")
    ap.add_argument("--dump", help="write every 2xx JSON body to this directory (to refresh examples)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    sys.exit(Checker(args).run())


if __name__ == "__main__":
    main()
