"""FHIR R4 over HTTP: the ``fhir+https://`` / ``fhir+http://`` destination and inbound endpoint.

Destination: the URL minus ``fhir+`` is the FHIR base. ``mode: transaction`` (default) posts the
payload — the ``fhir`` format's transaction Bundle, whose conditional entries make a second delivery
harmless — to the base. ``mode: search-before-create`` is for servers without transactions or
conditional create (Epic, athenahealth): each entry is written on its own, in dependency order,
after a search on its business identifier decides between reusing, updating and creating; later
entries' ``urn:uuid:`` references are rewritten to the ids the server gave.

Every answer is judged into done, ``TransientDeliveryError`` (5xx, 429 with Retry-After, timeouts,
resets) or ``PermanentDeliveryError`` (4xx, with the OperationOutcome's text kept); a 401 gets one
fresh token and one retry. :class:`FhirSession` holds that logic so the poller and vendor plugins
reuse it. See ``docs/fhir-rest.md``.

Inbound: :class:`FhirInbound` is a threaded werkzeug server taking ``POST {path}`` (a Bundle or a
resource) and answering 202 only after the durable commit.
"""

from __future__ import annotations

import copy
import email.utils
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests


from bridge import (
    ConfigError,
    DecodeError,
    Delivery,
    DestinationContext,
    PermanentDeliveryError,
    SourceContext,
    StoreError,
    TransientDeliveryError,
)
from bridge.bounded_http import AnswerTooLarge, bounded_session, request_within

from bridge.request_bounds import DEFAULT_REQUEST_SECONDS, handle_with_deadline, quiet_handle_error

from .auth import HttpSettings, NoAuth, TokenProvider, read_env, token_provider_from_options

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
MODES = ("transaction", "search-before-create")
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_MAX_RESPONSE_BYTES = 50 * 1024 * 1024
# Media types the inbound endpoint reads (parameters such as charset aside); no Content-Type is read as JSON.
INBOUND_MEDIA_TYPES = frozenset({FHIR_JSON, "application/json", "application/json+fhir"})


# --- response judgement ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FhirResponse:
    """A fully read HTTP answer (read under the total timeout, so it is a plain value)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError):
            return None


def outcome_text(doc: Any) -> str:
    """The human text of an OperationOutcome: each issue's severity, code, details and diagnostics."""
    if not isinstance(doc, dict) or doc.get("resourceType") != "OperationOutcome":
        return ""
    parts = []
    for issue in doc.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        words = [str(issue.get(k)) for k in ("severity", "code") if issue.get(k)]
        details = (issue.get("details") or {}).get("text") if isinstance(issue.get("details"), dict) else None
        texts = [t for t in (details, issue.get("diagnostics")) if t]
        parts.append(" ".join(words) + (": " + " — ".join(str(t) for t in texts) if texts else ""))
    return "; ".join(parts)[:2000]


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def judge(response: FhirResponse, what: str) -> None:
    """Raise the delivery error a non-2xx answer means; return quietly on 2xx."""
    status = response.status
    if 200 <= status < 300:
        return
    text = outcome_text(response.json())
    message = f"{what}: HTTP {status}" + (f" — {text}" if text else "")
    if status in TRANSIENT_STATUSES or status >= 500:
        raise TransientDeliveryError(message, retry_after=retry_after_seconds(response.headers.get("Retry-After")))
    if status == 401:
        raise PermanentDeliveryError(message + " (still unauthorized with a fresh token: check the client's "
                                     "credentials and scopes)")
    raise PermanentDeliveryError(message)


# --- the HTTP session ----------------------------------------------------------------------------


def same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


class FhirSession:
    """A FHIR base with auth, connect and total timeouts, one retry after 401, and judged answers."""

    def __init__(self, base: str, tokens: TokenProvider, http: HttpSettings,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES):
        self.base = base.rstrip("/")
        self.tokens = tokens
        self.http = http
        self.max_response_bytes = max_response_bytes

    @classmethod
    def from_options(cls, base: str, options: Mapping[str, Any], config_dir: str,
                     where: str = "options") -> FhirSession:
        session = bounded_session()
        if options.get("ca_file"):
            path = Path(str(options["ca_file"]))
            session.verify = str(path if path.is_absolute() else Path(config_dir) / path)
        http = HttpSettings(session, float(options.get("connect_timeout", 5.0)), float(options.get("timeout", 30.0)))
        tokens = token_provider_from_options(options.get("auth"), base=base.rstrip("/"), config_dir=config_dir,
                                             http=http, where=f"{where}.auth")
        return cls(base, tokens, http, int(options.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)))

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base}/{path.lstrip('/')}"

    def call(self, method: str, path: str, *, body: bytes | None = None, content_type: str = FHIR_JSON,
             headers: Mapping[str, str] | None = None, what: str | None = None) -> FhirResponse:
        """One FHIR interaction, judged: returns a 2xx answer or raises a delivery error."""
        url = self.url(path)
        what = what or f"{method} {urlsplit(url).path}"
        response = self._attempt(method, url, body, content_type, headers)
        if response.status == 401 and not isinstance(self.tokens, NoAuth):
            log.info("fhir: 401 from %s; refreshing the token once", urlsplit(url).path)
            self.tokens.invalidate()
            response = self._attempt(method, url, body, content_type, headers)
        self.judge(response, what)
        return response

    def judge(self, response: FhirResponse, what: str) -> None:
        """Raise the delivery error a non-2xx answer means. Vendor sessions override this to map their
        own answers (403 wrong tenant, 412 re-read) and keep everything else of ``call``."""
        judge(response, what)

    def _attempt(self, method: str, url: str, body: bytes | None, content_type: str,
                 extra: Mapping[str, str] | None) -> FhirResponse:
        headers = {"Accept": FHIR_JSON, **(extra or {})}
        if body is not None:
            headers["Content-Type"] = content_type
        token = self.tokens.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            answer = request_within(self.http.session, method, url, data=body, headers=headers,
                                    allow_redirects=False, connect_seconds=self.http.connect_timeout,
                                    total_seconds=self.http.timeout, max_bytes=self.max_response_bytes)
        except AnswerTooLarge:
            raise PermanentDeliveryError(f"{urlsplit(url).path}: answer over {self.max_response_bytes} bytes") from None
        except requests.Timeout:
            raise TransientDeliveryError(f"{method} {urlsplit(url).path}: timed out "
                                         f"(connect {self.http.connect_timeout:g} s, total {self.http.timeout:g} s)") from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise TransientDeliveryError(f"{method} {urlsplit(url).path}: connection failed "
                                         f"({_root_cause(exc)})") from None
        except requests.RequestException as exc:
            raise PermanentDeliveryError(f"{method} {urlsplit(url).path}: cannot send ({type(exc).__name__})") from None
        return FhirResponse(answer.status, dict(answer.headers), answer.content, url)

    def close(self) -> None:
        self.http.session.close()


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return type(exc).__name__


# --- helpers on Bundles ---------------------------------------------------------------------------


def load_fhir_json(payload: bytes) -> Any:
    try:
        return json.loads(payload.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def references(value: Any) -> Iterator[str]:
    """Every ``reference`` string inside a resource (any depth)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield item
            else:
                yield from references(item)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)


def rewrite_references(value: Any, resolved: Mapping[str, str]) -> Any:
    """Replace ``urn:uuid:`` references the server has given ids to (in place; returns ``value``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str) and item in resolved:
                value[key] = resolved[item]
            else:
                rewrite_references(item, resolved)
    elif isinstance(value, list):
        for item in value:
            rewrite_references(item, resolved)
    return value


def dependency_order(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries ordered so each comes after the entries it references (stable otherwise)."""
    by_url = {e.get("fullUrl"): i for i, e in enumerate(entries) if e.get("fullUrl")}
    needs = [{by_url[r] for r in references(e.get("resource")) if r in by_url and by_url[r] != i}
             for i, e in enumerate(entries)]
    done: list[int] = []
    placed: set[int] = set()
    while len(done) < len(entries):
        ready = [i for i in range(len(entries)) if i not in placed and needs[i] <= placed]
        if not ready:
            stuck = sorted({entries[i]["resource"].get("resourceType", "?") for i in range(len(entries))
                            if i not in placed})
            raise PermanentDeliveryError(f"circular references between {', '.join(stuck)}: cannot write "
                                         "them one by one (use mode: transaction)")
        done.append(ready[0])
        placed.add(ready[0])
    return [entries[i] for i in done]


def id_from_answer(response: FhirResponse, rtype: str) -> str | None:
    """The id the server gave a created resource: from Location (``…/Type/id/_history/n``) or the body."""
    location = response.headers.get("Location") or response.headers.get("Content-Location") or ""
    parts = [p for p in urlsplit(location).path.split("/") if p]
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == rtype:
            return parts[i + 1]
    body = response.json()
    if isinstance(body, dict) and body.get("resourceType") == rtype and body.get("id"):
        return str(body["id"])
    return None


def bundle_entry_failures(doc: Any) -> tuple[list[str], bool, dict[str, int]]:
    """From a transaction/batch response: failure texts, whether any failure is transient, status counts."""
    failures, transient, counts = [], False, {}
    for index, entry in enumerate((doc or {}).get("entry") or [] if isinstance(doc, dict) else []):
        answer = entry.get("response") or {} if isinstance(entry, dict) else {}
        code = str(answer.get("status", "")).split(" ", 1)[0]
        counts[code] = counts.get(code, 0) + 1
        if code.startswith("2"):
            continue
        transient = transient or code.startswith("5") or code in ("408", "429")
        failures.append(f"entry {index}: {answer.get('status', 'no status')}"
                        + (f" — {outcome_text(answer.get('outcome'))}" if answer.get("outcome") else ""))
    return failures, transient, counts


# --- the destination ------------------------------------------------------------------------------


def base_from_url(url: str) -> str:
    if not url.lower().startswith("fhir+"):
        raise ConfigError([("url", f"expected fhir+https://… or fhir+http://…, got {url!r}")])
    return url[len("fhir+"):].rstrip("/")


class FhirRestDestination:
    """Writes payloads to a FHIR server, as one transaction or resource by resource."""

    def __init__(self, ctx: DestinationContext):
        where = f"destinations.{ctx.name}.options"
        self.mode = str(ctx.options.get("mode", "transaction"))
        if self.mode not in MODES:
            raise ConfigError([(f"{where}.mode", f"unknown mode {self.mode!r} (one of {', '.join(MODES)})")])
        self.name = ctx.name
        self.fhir = FhirSession.from_options(base_from_url(ctx.url), ctx.options, ctx.config_dir, where)

    def send(self, delivery: Delivery) -> str:
        doc = load_fhir_json(delivery.payload)
        headers = {"X-Request-Id": delivery.idempotency_key} if delivery.idempotency_key else {}
        if self.mode == "search-before-create":
            return SearchBeforeCreate(self.fhir, headers).write(doc)
        return self._send_whole(delivery, doc, headers)

    def _send_whole(self, delivery: Delivery, doc: Any, headers: Mapping[str, str]) -> str:
        rtype = doc.get("resourceType") if isinstance(doc, dict) else None
        if rtype == "Bundle" and doc.get("type") in ("transaction", "batch"):
            response = self.fhir.call("POST", "", body=delivery.payload, headers=headers,
                                      what=f"{doc['type']} Bundle")
            return self._judge_bundle(response, doc["type"])
        path = rtype if isinstance(rtype, str) and rtype.isalpha() else ""
        content_type = FHIR_JSON if path else delivery.media_type
        response = self.fhir.call("POST", path, body=delivery.payload, content_type=content_type, headers=headers)
        return f"HTTP {response.status}" + (f" {rtype}/{id_from_answer(response, rtype)}" if path else "")

    def _judge_bundle(self, response: FhirResponse, kind: str) -> str:
        answer = response.json()
        if not isinstance(answer, dict) or answer.get("resourceType") != "Bundle":
            raise TransientDeliveryError(f"{kind} Bundle: HTTP {response.status} without a response Bundle; "
                                         "the outcome is unknown, sending again (entries are conditional)")
        failures, transient, counts = bundle_entry_failures(answer)
        if failures:
            error = TransientDeliveryError if transient else PermanentDeliveryError
            raise error(f"{kind} Bundle: {len(failures)} entr{'y' if len(failures) == 1 else 'ies'} failed: "
                        + "; ".join(failures)[:2000])
        summary = ", ".join(f"{n}× {code}" for code, n in sorted(counts.items()))
        return f"{kind}: HTTP {response.status}, {sum(counts.values())} entries ({summary})"

    def close(self) -> None:
        self.fhir.close()


@dataclass
class SearchBeforeCreate:
    """Writes a Bundle's entries one by one for servers without transactions or conditional create."""

    fhir: FhirSession
    headers: Mapping[str, str]
    resolved: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def write(self, doc: Any) -> str:
        if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle" or not doc.get("entry"):
            raise PermanentDeliveryError("mode search-before-create needs a FHIR Bundle with entries "
                                         "(use format: fhir on this destination)")
        for entry in dependency_order(list(doc["entry"])):
            resource = rewrite_references(copy.deepcopy(entry.get("resource") or {}), self.resolved)
            outcome, ref = self.write_entry(entry.get("request") or {}, resource)
            self.counts[outcome] = self.counts.get(outcome, 0) + 1
            if entry.get("fullUrl"):
                self.resolved[entry["fullUrl"]] = ref
        return "search-before-create: " + ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items()))

    def write_entry(self, request: Mapping[str, Any], resource: dict[str, Any]) -> tuple[str, str]:
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or not rtype.isalpha():
            raise PermanentDeliveryError("a Bundle entry has no valid resourceType")
        method, url = str(request.get("method", "POST")).upper(), str(request.get("url", rtype))
        if method == "POST":
            condition = request.get("ifNoneExist")
            match = self.find_one(rtype, condition) if condition else None
            return ("reused", f"{rtype}/{match['id']}") if match else self.create(rtype, resource)
        if method == "PUT" and "?" in url:
            match = self.find_one(rtype, url.split("?", 1)[1])
            return self.update(rtype, match, resource) if match else self.create(rtype, resource)
        if method == "PUT":
            response = self.fhir.call("PUT", url, body=_json_bytes(resource), headers=self.headers)
            return ("created" if response.status == 201 else "updated"), url.split("/_history")[0]
        raise PermanentDeliveryError(f"{rtype} entry: request method {method} is not supported one by one")

    def find_one(self, rtype: str, query: str) -> dict[str, Any] | None:
        """The single resource matching ``query``; None if none; permanent error if several."""
        response = self.fhir.call("GET", f"{rtype}?{query}", headers=self.headers, what=f"search {rtype}")
        doc = response.json()
        if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":
            raise TransientDeliveryError(f"search {rtype}: the answer is not a Bundle")
        matches = [e["resource"] for e in doc.get("entry") or []
                   if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                   and e["resource"].get("resourceType") == rtype
                   and (e.get("search") or {}).get("mode", "match") == "match"]
        if len(matches) > 1:
            raise PermanentDeliveryError(f"search {rtype}: {len(matches)} resources match one business "
                                         "identifier; resolve the duplicates on the server")
        if matches and not matches[0].get("id"):
            raise PermanentDeliveryError(f"search {rtype}: the match has no id")
        return matches[0] if matches else None

    def create(self, rtype: str, resource: dict[str, Any]) -> tuple[str, str]:
        resource.pop("id", None)
        response = self.fhir.call("POST", rtype, body=_json_bytes(resource), headers=self.headers,
                                  what=f"create {rtype}")
        new_id = id_from_answer(response, rtype)
        if not new_id:
            raise PermanentDeliveryError(f"create {rtype}: HTTP {response.status} gave no id (no Location, no body)")
        return "created", f"{rtype}/{new_id}"

    def update(self, rtype: str, match: Mapping[str, Any], resource: dict[str, Any]) -> tuple[str, str]:
        resource["id"] = match["id"]
        headers = dict(self.headers)
        version = (match.get("meta") or {}).get("versionId")
        if version:
            headers["If-Match"] = f'W/"{version}"'
        self.fhir.call("PUT", f"{rtype}/{match['id']}", body=_json_bytes(resource), headers=headers,
                       what=f"update {rtype}")
        return "updated", f"{rtype}/{match['id']}"


def _json_bytes(resource: Mapping[str, Any]) -> bytes:
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --- the inbound endpoint ------------------------------------------------------------------------


def operation_outcome(code: str, text: str, severity: str = "error") -> dict[str, Any]:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": text}]}


class FhirInbound:
    """``POST {path}`` (a Bundle or a resource) → 202 after the durable commit; 4xx/503 with an OperationOutcome.

    URL: ``fhir+http://HOST:PORT/PATH`` (``fhir+https://`` with options ``cert_file``/``key_file``).
    Port 0 picks a free port; ``.port`` tells which after ``start()``.
    """

    def __init__(self, ctx: SourceContext):
        from werkzeug.serving import make_server  # noqa: F401 - fail at construction if missing

        self.ctx = ctx
        where = f"channels.{ctx.channel}"
        parts = urlsplit(ctx.url[len("fhir+"):])
        self.tls = parts.scheme == "https"
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 0
        self.path = "/" + parts.path.strip("/") if parts.path.strip("/") else ""
        self.policy_answer = bool(ctx.options.get("policy_ack", True))  # 422 with the reasons when blocked
        self.expected_token = None
        if ctx.options.get("token_env"):
            self.expected_token = read_env(ctx.options["token_env"], f"{where}.options.token_env").encode("utf-8")
        elif not (ctx.options.get("allow_unauthenticated") and self.host in ("127.0.0.1", "localhost", "::1")):
            # PHI must not flow in from anyone who can reach the port: a bearer token is required, unless
            # the endpoint listens on loopback only and the operator says so explicitly.
            raise ConfigError([(f"{where}.options.token_env", "the FHIR inbound endpoint needs a bearer token: name "
                                "the environment variable holding it (or, on a loopback address only, set "
                                "allow_unauthenticated: true)")])
        self.ssl_context = self._ssl_context(where) if self.tls else None
        self.request_timeout = float(ctx.options.get("request_timeout", DEFAULT_REQUEST_SECONDS))
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def _ssl_context(self, where: str) -> Any:
        import ssl

        files = []
        for key in ("cert_file", "key_file"):
            if not self.ctx.options.get(key):
                raise ConfigError([(f"{where}.options.{key}", "is required for fhir+https")])
            path = Path(str(self.ctx.options[key]))
            files.append(str(path if path.is_absolute() else Path(self.ctx.config_dir) / path))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(files[0], files[1])
        return context

    def start(self) -> None:
        from werkzeug.serving import make_server

        self._server = make_server(self.host, self.port, self.wsgi, threaded=True, ssl_context=self.ssl_context,
                                   request_handler=_quiet_handler(self.request_timeout))
        self._server.handle_error = quiet_handle_error(log, f"fhir inbound {self.ctx.channel}")
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,),  # stop() within 0.1 s
                                        name=f"fhir-inbound-{self.ctx.channel}", daemon=True)
        self._thread.start()
        log.info("fhir inbound %s listening on %s:%d%s", self.ctx.channel, self.host, self.port, self.path)

    @property
    def listening(self) -> bool:
        """Whether its serving thread runs (health and the listener_down alert read it)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- WSGI --

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        from werkzeug.wrappers import Request

        request = Request(environ)
        response = self.handle(request)
        return response(environ, start_response)

    def handle(self, request: Any) -> Any:
        from werkzeug.exceptions import ClientDisconnected

        path = request.path.rstrip("/")
        if path == f"{self.path}/metadata" and request.method == "GET":
            return self.answer(200, capability_statement())
        if path != self.path and not (path.startswith(self.path + "/") and path[len(self.path) + 1:].isalpha()):
            return self.answer(404, operation_outcome("not-found", f"no FHIR endpoint at {request.path}"))
        if request.method != "POST":
            return self.answer(405, operation_outcome("not-supported", "only POST is accepted here"),
                               {"Allow": "POST"})
        if self.expected_token is not None and not self.authorized(request):
            return self.answer(401, operation_outcome("login", "a valid bearer token is required"),
                               {"WWW-Authenticate": 'Bearer realm="fhir"'})
        media_type = request.mimetype
        if media_type and media_type not in INBOUND_MEDIA_TYPES:
            return self.answer(415, operation_outcome(
                "not-supported", f"Content-Type {media_type[:100]} is not read here; send {FHIR_JSON}"))
        length = request.content_length
        limit = self.ctx.max_message_bytes
        if length is not None and length > limit:
            return self.too_large(length)
        try:
            raw = request.stream.read(limit + 1)
        except ClientDisconnected:  # the client stopped sending, or the request deadline shut the connection
            log.warning("fhir inbound %s: a request body ended early; nothing was stored", self.ctx.channel)
            response = self.answer(408, operation_outcome("timeout", "the request body did not arrive in time"))
            response.headers["Connection"] = "close"
            return response
        if len(raw) > limit:
            return self.too_large(None)
        return self.take(raw, request, path[len(self.path) + 1:] if path != self.path else None)

    def authorized(self, request: Any) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("utf-8"), self.expected_token)

    def too_large(self, length: int | None) -> Any:
        size = f"{length} bytes" if length is not None else "the body"
        log.warning("fhir inbound %s: refused %s over the limit", self.ctx.channel, size)
        response = self.answer(413, operation_outcome(
            "too-costly", f"{size} is over the limit of {self.ctx.max_message_bytes} bytes"))
        response.headers["Connection"] = "close"
        return response

    def take(self, raw: bytes, request: Any, path_type: str | None) -> Any:
        origin = {"peer": request.remote_addr, "path": request.path}
        if request.headers.get("Idempotency-Key"):
            origin["dedupe_key"] = "idempotency-key:" + request.headers["Idempotency-Key"][:200]
        problem = self.problem_with(raw, path_type)
        try:
            if problem:
                status, code, reason = problem
                receipt = self.ctx.submit(raw, origin, error=reason)
                log.info("fhir inbound %s: refused a request (%s), kept as message %s",
                         self.ctx.channel, code, receipt.message_id)
                return self.answer(status, operation_outcome(code, reason))
            receipt = self.ctx.submit(raw, origin)
        except StoreError:
            log.error("fhir inbound %s: the store could not commit; answered 503", self.ctx.channel)
            return self.answer(503, operation_outcome("transient", "the message could not be stored; send it again"),
                               {"Retry-After": "5"})
        if not receipt.accepted:
            return self.answer(422, operation_outcome("processing", receipt.error or "refused by the intake"))
        decision = self.ctx.evaluate(raw) if self.ctx.evaluate is not None and self.policy_answer else None
        if decision is not None and decision.outcome == "BLOCK":
            log.info("fhir inbound %s: message %s blocked by policy; answered 422", self.ctx.channel,
                     receipt.message_id)
            body = operation_outcome("business-rule", f"{decision.explain()} (kept as message {receipt.message_id})")
            return self.answer(422, body, {"Content-Location": f"urn:telemed-bridge:message:{receipt.message_id}"})
        body = {"message_id": receipt.message_id, "duplicate": receipt.duplicate}
        return self.answer(202, body, {"Content-Location": f"urn:telemed-bridge:message:{receipt.message_id}"},
                           media_type="application/json")

    def problem_with(self, raw: bytes, path_type: str | None) -> tuple[int, str, str] | None:
        """``(status, issue code, reason)`` for input we refuse, else None."""
        doc = load_fhir_json(raw)
        if doc is None:
            return 400, "structure", "the body is not valid UTF-8 JSON"
        if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
            return 400, "structure", "the body is not a FHIR resource (no resourceType)"
        if path_type and doc["resourceType"] != path_type:
            return 400, "invalid", f"resourceType {doc['resourceType']!r} does not match the URL ({path_type})"
        if self.ctx.decode is None:
            return None
        try:
            self.ctx.decode(raw)
        except DecodeError as exc:
            return 422, "invalid", str(exc)[:2000]
        return None

    def answer(self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None,
               media_type: str = FHIR_JSON) -> Any:
        from werkzeug.wrappers import Response

        return Response(json.dumps(body), status=status, headers=dict(headers or {}),
                        content_type=f"{media_type}; charset=utf-8")


def _quiet_handler(request_seconds: float) -> Any:
    """werkzeug's handler without its per-request log line (query strings could carry identifiers),
    each request under a whole-request deadline and each read under the same socket timeout."""
    from werkzeug.serving import WSGIRequestHandler

    class QuietHandler(WSGIRequestHandler):
        timeout = request_seconds

        def handle_one_request(self) -> None:
            handle_with_deadline(self, request_seconds, super().handle_one_request)

        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            pass

    return QuietHandler


def capability_statement() -> dict[str, Any]:
    """What the inbound endpoint accepts, for clients that read ``/metadata`` first."""
    return {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
            "date": "2026-01-01", "format": ["json"],
            "rest": [{"mode": "server", "interaction": [{"code": "transaction"}, {"code": "batch"}],
                      "documentation": "POST a Bundle or a resource; 202 after the message is stored"}]}
