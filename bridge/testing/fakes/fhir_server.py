"""A fake FHIR R4 server on loopback: resources in memory, validating what it gets.

It implements what a FHIR REST client (the built-in ``fhir+http`` destination, the poller, a vendor
profile) relies on, the way the spec describes it, so a plugin is checked against a second
implementation rather than against itself:

- ``POST [base]`` with a ``transaction`` Bundle: every resource validated; conditional create
  (``ifNoneExist``) and conditional update (``PUT Type?query``); ``urn:uuid:`` references resolved to
  the ids given; all-or-nothing; a transaction-response Bundle.
- ``POST [base]/Type`` (create), ``PUT [base]/Type/id`` (update, ``If-Match`` checked), ``GET
  [base]/Type/id`` (read), ``GET [base]/Type?identifier=system|value&code=…&_lastUpdated=gtX&_count=N``
  (search, paged with absolute ``next`` links).
- Referential integrity: a written resource may only reference resources the server holds, so a
  ``urn:uuid:`` left unresolved by a client is refused with 422.
- Scripting for failure tests: ``inject(...)`` one-shot answers (status, OperationOutcome text,
  headers, delay, drip), ``tokens`` (required bearer tokens; share the set a
  :class:`~bridge.testing.fakes.token_endpoint.FakeTokenEndpoint` issues), and a request log.

Validation uses the ``fhir.resources`` R4B models, which are a test extra: install
``telemed-bridge[test]``, or start the server with ``validate=False`` to check only the JSON shape.
"""

from __future__ import annotations

import datetime
import itertools
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlencode

from werkzeug.wrappers import Request, Response

from .http import FakeHttpServer, Injection
from .tcp import reset_connection

BASE_PATH = "/fhir"


class Refused(Exception):
    """A request the server refuses: HTTP status and OperationOutcome text."""

    def __init__(self, status: int, text: str, code: str = "invalid"):
        self.status, self.text, self.code = status, text, code
        super().__init__(text)


def outcome(text: str, code: str = "invalid") -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


def _model_class(resource_type: str) -> Any:
    """The R4B model for a type, imported lazily: ``fhir.resources`` is a test extra."""
    try:
        from fhir.resources.R4B import get_fhir_model_class
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("FakeFhirServer validation needs fhir.resources: pip install 'telemed-bridge[test]' "
                          "(or start it with validate=False)") from exc
    return get_fhir_model_class(resource_type)


def validate(resource: Any, *, models: bool = True) -> None:
    """Validate a resource (with the R4B models when ``models``); Refused(422) says what is wrong."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise Refused(400, "not a FHIR resource (no resourceType)", "structure")
    if not models:
        return
    try:
        model = _model_class(resource["resourceType"])
    except (KeyError, ValueError):
        raise Refused(422, f"unknown resourceType {resource['resourceType']!r}", "not-supported") from None
    try:
        model.model_validate(resource)
    except Exception as exc:  # pydantic ValidationError: the text names the element
        raise Refused(422, f"{resource['resourceType']} does not validate: {str(exc)[:500]}") from None


def unescape_token(text: str) -> str:
    return text.replace("\\|", "|").replace("\\,", ",").replace("\\$", "$").replace("\\\\", "\\")


def split_token(value: str) -> tuple[str | None, str]:
    """``system|value`` (with FHIR search escapes) → (system, value); no bar → (None, value)."""
    index = 0
    while index < len(value):
        if value[index] == "\\":
            index += 2
            continue
        if value[index] == "|":
            return unescape_token(value[:index]), unescape_token(value[index + 1:])
        index += 1
    return None, unescape_token(value)


def references(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            yield value
        for item in value.values():
            yield from references(item)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)


def parse_instant(value: str) -> datetime.datetime:
    parsed = datetime.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


class FakeFhirServer(FakeHttpServer):
    """Start with ``with FakeFhirServer() as server:``; ``server.base`` is the FHIR base URL."""

    content_type = "application/fhir+json"

    def __init__(self, *, validate: bool = True) -> None:
        super().__init__()
        self.validate_models = validate
        self.resources: dict[str, dict[str, dict[str, Any]]] = {}
        self.log: list[tuple[str, str]] = []
        self.tokens: set[str] | None = None
        self.seen_authorization: list[str | None] = []
        self.ids = itertools.count(1)

    @property
    def base(self) -> str:
        return f"{self.url}{BASE_PATH}"

    # -- inspection --

    def all(self, rtype: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.resources.get(rtype, {}).values())

    def count(self) -> dict[str, int]:
        with self.lock:
            return {t: len(items) for t, items in self.resources.items() if items}

    def seed(self, resource: dict[str, Any], last_updated: str) -> dict[str, Any]:
        """Store a resource as if written at ``last_updated`` (for poller tests)."""
        self.check(resource)
        with self.lock:
            stored = self._store(dict(resource), resource.get("id") or str(next(self.ids)))
            stored["meta"]["lastUpdated"] = last_updated
            return stored

    def check(self, resource: Any) -> None:
        validate(resource, models=self.validate_models)

    # -- HTTP --

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self.lock:
            self.log.append((request.method, request.full_path.rstrip("?")))
            self.seen_authorization.append(request.headers.get("Authorization"))
        return super().wsgi(environ, start_response)

    def scripted_body(self, injection: Injection) -> Any:
        if injection.text:
            return outcome(injection.text, "processing")
        return {"resourceType": "OperationOutcome", "issue": []}

    def answer(self, request: Request) -> Response:
        try:
            return self.authorize(request) or self.route(request)
        except Refused as refused:
            return self.json(refused.status, outcome(refused.text, refused.code))

    def authorize(self, request: Request) -> Response | None:
        if self.tokens is None:
            return None
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and header[7:] in self.tokens:
            return None
        return self.json(401, outcome("invalid or expired token", "login"), {"WWW-Authenticate": "Bearer"})

    def route(self, request: Request) -> Response:
        if not request.path.startswith(BASE_PATH):
            raise Refused(404, f"no FHIR base at {request.path}", "not-found")
        parts = [p for p in request.path[len(BASE_PATH):].split("/") if p]
        body = self.body(request) if request.method in ("POST", "PUT") else None
        with self.lock:
            if request.method == "POST" and not parts:
                return self.json(200, self.transaction(body))
            if request.method == "POST" and len(parts) == 1:
                status, stored = self.write(parts[0], None, body, request.headers.get("If-Match"))
                return self.created(status, stored)
            if request.method == "PUT" and len(parts) == 2:
                status, stored = self.write(parts[0], parts[1], body, request.headers.get("If-Match"))
                return self.created(status, stored)
            if request.method == "GET" and len(parts) == 2:
                found = self.resources.get(parts[0], {}).get(parts[1])
                if not found:
                    raise Refused(404, f"{parts[0]}/{parts[1]} not found", "not-found")
                return self.json(200, found)
            if request.method == "GET" and len(parts) == 1:
                return self.json(200, self.search(request, parts[0]))
        raise Refused(405, f"{request.method} {request.path} is not supported", "not-supported")

    def body(self, request: Request) -> Any:
        if not request.content_type or "json" not in request.content_type:
            raise Refused(415, f"expected application/fhir+json, got {request.content_type!r}", "structure")
        try:
            return json.loads(request.get_data())
        except ValueError:
            raise Refused(400, "the body is not JSON", "structure") from None

    def created(self, status: int, stored: dict[str, Any]) -> Response:
        location = f"{BASE_PATH}/{stored['resourceType']}/{stored['id']}/_history/{stored['meta']['versionId']}"
        return self.json(status, stored, {"Location": location, "ETag": f'W/"{stored["meta"]["versionId"]}"'})

    # -- storage --

    def _store(self, resource: dict[str, Any], rid: str) -> dict[str, Any]:
        rtype = resource["resourceType"]
        previous = self.resources.get(rtype, {}).get(rid)
        version = int(previous["meta"]["versionId"]) + 1 if previous else 1
        resource = {**resource, "id": rid}
        resource["meta"] = {**(resource.get("meta") or {}), "versionId": str(version),
                            "lastUpdated": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        self.resources.setdefault(rtype, {})[rid] = resource
        return resource

    def check_references(self, resource: dict[str, Any], pending: set[str] = frozenset()) -> None:
        for ref in references(resource):
            target = ref["reference"]
            if target.startswith("#") or target in pending:
                continue
            kind, _, rid = target.partition("/")
            if not rid or rid not in self.resources.get(kind, {}):
                raise Refused(422, f"{resource['resourceType']} references {target}, which this server does not hold",
                              "not-found")

    def write(self, rtype: str, rid: str | None, resource: Any, if_match: str | None) -> tuple[int, dict[str, Any]]:
        self.check(resource)
        if resource["resourceType"] != rtype:
            raise Refused(400, f"resourceType {resource['resourceType']} does not match the URL ({rtype})")
        if rid and resource.get("id") not in (None, rid):
            raise Refused(400, f"resource id {resource.get('id')} does not match the URL ({rid})")
        self.check_references(resource)
        existing = self.resources.get(rtype, {}).get(rid) if rid else None
        if if_match and (not existing or if_match != f'W/"{existing["meta"]["versionId"]}"'):
            raise Refused(412, f"If-Match {if_match} does not match the current version", "conflict")
        return (200 if existing else 201), self._store(resource, rid or str(next(self.ids)))

    # -- search --

    def matches(self, rtype: str, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        found = []
        for resource in self.resources.get(rtype, {}).values():
            if all(self.match(resource, name, value) for name, values in query.items()
                   if not name.startswith("_") or name == "_lastUpdated" for value in values):
                found.append(resource)
        return found

    def match(self, resource: dict[str, Any], name: str, value: str) -> bool:
        if name == "identifier":
            system, wanted = split_token(value)
            return any(i.get("value") == wanted and (system is None or i.get("system", "") == system)
                       for i in resource.get("identifier", []))
        if name == "code":
            system, wanted = split_token(value)
            return any(c.get("code") == wanted and (system is None or c.get("system", "") == system)
                       for c in (resource.get("code") or {}).get("coding", []))
        if name == "_lastUpdated":
            prefix = value[:2] if value[:2] in ("gt", "ge", "lt", "le", "eq") else ""
            when = parse_instant(value[len(prefix):])
            updated = parse_instant(resource["meta"]["lastUpdated"])
            return {"gt": updated > when, "ge": updated >= when, "lt": updated < when,
                    "le": updated <= when}.get(prefix, updated == when)
        raise Refused(400, f"search parameter {name!r} is not supported by this test server", "not-supported")

    def search(self, request: Request, rtype: str) -> dict[str, Any]:
        query = {k: v for k, v in request.args.lists()}
        found = self.matches(rtype, query)
        count = int(query.get("_count", ["100"])[0])
        offset = int(query.get("_offset", ["0"])[0])
        page = found[offset:offset + count]
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                                  "entry": [{"fullUrl": f"{self.base}/{rtype}/{r['id']}", "resource": r,
                                             "search": {"mode": "match"}} for r in page],
                                  "link": [{"relation": "self", "url": request.url}]}
        if offset + count < len(found):
            following = {k: v for k, v in query.items() if k != "_offset"}
            following["_offset"] = [str(offset + count)]
            bundle["link"].append({"relation": "next",
                                   "url": f"{self.base}/{rtype}?{urlencode(following, doseq=True)}"})
        return bundle

    # -- transactions --

    def transaction(self, bundle: Any) -> dict[str, Any]:
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
            raise Refused(400, "POST to the base needs a transaction Bundle", "structure")
        self.check(bundle)
        entries = bundle.get("entry") or []
        plan = [self.plan_entry(i, e) for i, e in enumerate(entries)]
        resolved = {e.get("fullUrl"): f"{p[1]}/{p[2]}" for e, p in zip(entries, plan) if e.get("fullUrl")}
        staged = []
        for entry, (action, rtype, rid) in zip(entries, plan):
            resource = json.loads(json.dumps(entry["resource"]))
            for ref in references(resource):
                ref["reference"] = resolved.get(ref["reference"], ref["reference"])
            staged.append((action, rtype, rid, resource))
        in_this_bundle = {f"{rtype}/{rid}" for _, rtype, rid, _ in staged}
        for action, _, _, resource in staged:  # everything is checked before anything is written
            if action != "exists":
                self.check_references(resource, in_this_bundle)
        answers = []
        for action, rtype, rid, resource in staged:
            current = self.resources[rtype][rid] if action == "exists" else self._store(resource, rid)
            status = {"exists": "200 OK", "create": "201 Created", "update": "200 OK"}[action]
            answers.append({"response": {"status": status,
                                         "location": f"{rtype}/{rid}/_history/{current['meta']['versionId']}"}})
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": answers}

    def plan_entry(self, index: int, entry: dict[str, Any]) -> tuple[str, str, str]:
        """(action, type, id) for one entry: ``exists`` (conditional create matched), ``create``, ``update``."""
        resource, request = entry.get("resource"), entry.get("request") or {}
        self.check(resource)
        rtype = resource["resourceType"]
        method, url = request.get("method"), request.get("url", "")
        if method == "POST":
            if request.get("ifNoneExist"):
                found = self.conditional(rtype, request["ifNoneExist"], index)
                if found:
                    return "exists", rtype, found["id"]
            return "create", rtype, str(next(self.ids))
        if method == "PUT" and "?" in url:
            found = self.conditional(rtype, url.split("?", 1)[1], index)
            return ("update", rtype, found["id"]) if found else ("create", rtype, str(next(self.ids)))
        if method == "PUT":
            kind, _, rid = url.partition("/")
            return ("update" if rid in self.resources.get(kind, {}) else "create"), rtype, rid
        raise Refused(400, f"entry {index}: method {method!r} is not supported", "not-supported")

    def conditional(self, rtype: str, query_string: str, index: int) -> dict[str, Any] | None:
        query: dict[str, list[str]] = {}
        for pair in query_string.split("&"):
            name, _, value = pair.partition("=")
            query.setdefault(name, []).append(unquote(value))
        found = self.matches(rtype, query)
        if len(found) > 1:
            raise Refused(412, f"entry {index}: {len(found)} {rtype} resources match {query_string}", "duplicate")
        return found[0] if found else None



FhirTestServer = FakeFhirServer
"""The name the FHIR network tests first knew it by."""


class ResettingServer:
    """A peer that accepts a connection, reads the request, and resets the connection (RST) without answering."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ResettingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.sock.close()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.settimeout(2)
            try:
                conn.recv(65536)
            except OSError:
                pass
            reset_connection(conn)
