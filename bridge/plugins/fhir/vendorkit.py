"""What the three vendor EHR plugins (Epic, Oracle Health, athenahealth) share.

Why one module: each vendor writes differently, but all three need the same plumbing — options read
with errors that name the key, a client id chosen by environment, a token from the FHIR plugin's
:mod:`~bridge.plugins.fhir.auth` cache, an HTTP session whose answers are judged the vendor way
(403 → a configuration error naming the tenant, 412 → re-read and retry once, 429 → Retry-After,
OperationOutcome text kept), search-before-create with reconciliation after a write timeout, and
the plain-text visit note that Epic and athenahealth file. It lives in the FHIR plugin, beside the
session and token cache it builds on, so no vendor plugin depends on another vendor's; a third-party
vendor plugin can reuse it the same way. Only the public ``bridge`` API is used.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

from bridge import (
    ClinicalNote,
    ConfigError,
    DecodeError,
    Delivery,
    Encounter,
    Identifier,
    OptionSpec,
    PermanentDeliveryError,
    Prescription,
    Record,
    TransientDeliveryError,
)
from bridge.bounded_http import bounded_session
from bridge.plugins.fhir.auth import HttpSettings, TokenProvider, token_provider_from_options
from bridge.plugins.fhir.datatypes import fhir_datetime
from bridge.plugins.fhir.encode import search_value
from bridge.plugins.fhir.systems import is_absolute, system_name, system_uri, v2_name  # noqa: F401  (public)
from bridge.plugins.fhir.rest import (
    FHIR_JSON,
    TRANSIENT_STATUSES,
    FhirResponse,
    FhirSession,
    outcome_text,
    retry_after_seconds,
)

log = logging.getLogger(__name__)

OUR = "https://telemed-bridge.org/fhir"
NOTE_ID_SYSTEM = f"{OUR}/sid/note-id"
"""Identifier system of the notes we file: ``<our note id>`` keys search-before-create."""
OBSERVATION_ID_SYSTEM = f"{OUR}/sid/observation-id"
ORDER_NUMBER_SYSTEM = f"{OUR}/sid/prescriber-order-number"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ENVIRONMENTS = ("production", "non-production")
ALGORITHMS = ("RS384", "ES384")
BRIDGE_MEDIA_TYPE = "application/vnd.telemed-bridge+json"


# --- options --------------------------------------------------------------------------------------


class Options:
    """Reads a vendor's ``options:`` and collects every problem, each naming its key path."""

    def __init__(self, options: Mapping[str, Any], where: str):
        self.raw = dict(options or {})
        self.where = where
        self.problems: list[tuple[str, str]] = []

    def path(self, key: str) -> str:
        return f"{self.where}.{key}"

    def text(self, key: str, *, required: bool = False, default: str | None = None) -> str | None:
        value = self.raw.get(key)
        if value is None or value == "":
            if required:
                self.problems.append((self.path(key), "is required"))
            return default
        if isinstance(value, (dict, list, bool)):
            self.problems.append((self.path(key), f"expected a string, got {type(value).__name__}"))
            return default
        return str(value)

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value = self.text(key, default=default) or default
        if value not in choices:
            self.problems.append((self.path(key), f"expected one of {', '.join(choices)}, got {value!r}"))
            return default
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.raw.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problems.append((self.path(key), "expected a mapping"))
            return {}
        return dict(value)

    def number(self, key: str, default: float) -> float:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            self.problems.append((self.path(key), f"expected a positive number, got {value!r}"))
            return default
        return float(value)

    def problem(self, key: str, message: str) -> None:
        self.problems.append((self.path(key), message))

    def check(self) -> None:
        """Raise one ConfigError listing every problem found so far."""
        if self.problems:
            raise ConfigError(self.problems)


def vendor_options(auth_methods: Sequence[str], *own: OptionSpec) -> tuple[OptionSpec, ...]:
    """What a vendor profile's ``options:`` may carry: its ``own`` keys and what this kit reads for it
    (environment and client ids, the auth method's keys, HTTP settings, identifier systems)."""
    auth: list[OptionSpec] = [
        OptionSpec("auth_method", "how the client authenticates", kind="string", default=auth_methods[0],
                   choices=tuple(auth_methods)),
        OptionSpec("token_url", "the token endpoint (default: the vendor's)", kind="string"),
        OptionSpec("scope", "scopes requested", kind="any"),
    ]
    if "private_key_jwt" in auth_methods:
        auth += [OptionSpec("key_file", "private key (PEM), relative to the config folder", kind="string"),
                 OptionSpec("key_env", "environment variable holding the private key", kind="string"),
                 OptionSpec("kid", "key id registered with the vendor", kind="string"),
                 OptionSpec("alg", "signing algorithm", kind="string", default="RS384", choices=ALGORITHMS)]
    if "client_secret_basic" in auth_methods:
        auth += [OptionSpec("client_secret_file", "file holding the client secret", kind="string"),
                 OptionSpec("client_secret_env", "environment variable holding the client secret", kind="string")]
    return (
        *own,
        OptionSpec("environment", "which app registration to use", kind="string", default="non-production",
                   choices=ENVIRONMENTS),
        OptionSpec("client_ids", "client id per environment: {production: …, non-production: …}",
                   kind="mapping", required=True),
        *auth,
        OptionSpec("base_url", "the customer's FHIR base (default: from the destination url)", kind="string"),
        OptionSpec("ca_file", "CA bundle to verify the vendor with, PEM", kind="string"),
        OptionSpec("connect_timeout", "seconds to connect", kind="number", default=5.0),
        OptionSpec("timeout", "seconds for the whole request", kind="number", default=30.0),
        OptionSpec("mrn_system", "identifier system of the customer's MRN", kind="string", required=True),
        OptionSpec("visit_number_system", "identifier system of the customer's visit number", kind="string",
                   required=True),
        OptionSpec("provider_id_system", "identifier system of the customer's provider ids", kind="string"),
        OptionSpec("mrn_assigner", "only MRNs from this assigning authority", kind="string"),
        OptionSpec("default_timezone", "offset for record date-times that carry none, e.g. '-05:00'",
                   kind="string"),
    )


def client_id_for(opts: Options) -> tuple[str, str | None]:
    """``(environment, client id)``: non-production and production apps have different ids."""
    environment = opts.choice("environment", ENVIRONMENTS, "non-production")
    ids = opts.mapping("client_ids")
    unknown = sorted(set(ids) - set(ENVIRONMENTS))
    if unknown:
        opts.problem("client_ids", f"unknown environment(s) {', '.join(map(str, unknown))} "
                                   f"(expected {' and '.join(ENVIRONMENTS)})")
    client_id = ids.get(environment)
    if not client_id:
        opts.problem(f"client_ids.{environment}", f"is required (environment is {environment})")
        return environment, None
    return environment, str(client_id)


def auth_mapping(opts: Options, client_id: str | None, *, token_url: str | None, scope: str,
                 methods: Sequence[str]) -> dict[str, Any]:
    """The FHIR plugin's ``auth:`` mapping for this vendor's options (secrets stay references)."""
    method = opts.choice("auth_method", methods, methods[0])
    common = {"client_id": client_id or "?", "scope": scope}
    if token_url:
        common["token_url"] = token_url
    if method == "client_secret_basic":
        if not (opts.raw.get("client_secret_file") or opts.raw.get("client_secret_env")):
            opts.problem("client_secret_file", "client_secret_basic needs client_secret_file or client_secret_env")
        if not token_url:
            opts.problem("token_url", "is required for client_secret_basic")
        return {"type": "client-secret-basic", **common,
                **{k: opts.raw[k] for k in ("client_secret_file", "client_secret_env") if opts.raw.get(k)}}
    if not (opts.raw.get("key_file") or opts.raw.get("key_env")):
        opts.problem("key_file", "private_key_jwt needs key_file (relative to the config folder) or key_env")
    kid = opts.text("kid", required=True)
    alg = opts.choice("alg", ALGORITHMS, "RS384")
    return {"type": "smart-backend", **common, "kid": kid or "?", "alg": alg,
            **{k: opts.raw[k] for k in ("key_file", "key_env") if opts.raw.get(k)}}


def http_settings(opts: Options, config_dir: str) -> HttpSettings:
    session = bounded_session()
    ca_file = opts.text("ca_file")
    if ca_file:
        from pathlib import Path

        path = Path(ca_file)
        session.verify = str(path if path.is_absolute() else Path(config_dir) / path)
    return HttpSettings(session, opts.number("connect_timeout", 5.0), opts.number("timeout", 30.0))


def tokens_for(opts: Options, auth: Mapping[str, Any], base: str, config_dir: str,
               http: HttpSettings) -> TokenProvider:
    """The FHIR plugin's token provider; its key-file errors name ``<where>.key_file``."""
    return token_provider_from_options(auth, base=base, config_dir=config_dir, http=http, where=opts.where)


# --- the vendor session ---------------------------------------------------------------------------


class VersionConflict(TransientDeliveryError):
    """HTTP 412: the resource changed since we read it. Callers re-read and retry once; if it
    escapes, it is transient (the next attempt reads afresh)."""


@dataclass(frozen=True)
class VendorErrors:
    """How a vendor's refusals read: what a 403 means for this customer's configuration."""

    forbidden: str
    """Message for HTTP 403, e.g. ``Tenant not valid or accessible: check options.tenant = …``."""


class VendorSession(FhirSession):
    """A FhirSession whose answers are judged the vendor way (see :meth:`judge`)."""

    def __init__(self, base: str, tokens: TokenProvider, http: HttpSettings, errors: VendorErrors):
        super().__init__(base, tokens, http)
        self.errors = errors

    def judge(self, response: FhirResponse, what: str) -> None:
        status = response.status
        if 200 <= status < 300:
            return
        text = error_text(response)
        detail = f"{what}: HTTP {status}" + (f" — {text}" if text else "")
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        if status == 403:
            raise PermanentDeliveryError(f"{self.errors.forbidden} ({detail})")
        if status == 412:
            raise VersionConflict(detail + " (the resource changed since it was read)")
        if status in TRANSIENT_STATUSES or status >= 500:
            raise TransientDeliveryError(detail, retry_after=retry_after)
        if status == 401:
            raise PermanentDeliveryError(detail + " (still unauthorized with a fresh token: check the client "
                                                  "id for this environment, its key and its scopes)")
        raise PermanentDeliveryError(detail)

    def get_json(self, path: str, what: str, headers: Mapping[str, str] | None = None) -> Any:
        doc = self.call("GET", path, what=what, headers=headers).json()
        if doc is None:
            raise TransientDeliveryError(f"{what}: the answer is not JSON")
        return doc


def error_text(response: FhirResponse) -> str:
    """The OperationOutcome text, or a vendor JSON error (``error``/``detailedmessage``/``errormessage``)."""
    doc = response.json()
    text = outcome_text(doc)
    if text or not isinstance(doc, dict):
        return text
    parts = [str(doc[k]) for k in ("error", "errormessage", "detailedmessage", "message") if doc.get(k)]
    return " — ".join(parts)[:2000]


def json_bytes(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --- searching ------------------------------------------------------------------------------------


def query(params: Sequence[tuple[str, str]]) -> str:
    """A query string; values are URL-quoted, except token values already made by :func:`token`."""
    return "&".join(f"{name}={value}" for name, value in params)


def token(system: str, value: str) -> str:
    """``system|value`` for a token search, escaped and URL-encoded (the fhir format's rule); the
    system as the fhir format writes it (a bare OID as ``urn:oid:…``, ``NPI`` as us-npi…)."""
    return search_value(system_uri(system), value)


def plain(value: str) -> str:
    return quote(value, safe=":/.-_~")


def matches(doc: Any, rtype: str, what: str) -> list[dict[str, Any]]:
    """The ``match`` resources of one searchset page."""
    if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":
        raise TransientDeliveryError(f"{what}: the answer is not a Bundle")
    return [e["resource"] for e in doc.get("entry") or []
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
            and e["resource"].get("resourceType") == rtype
            and (e.get("search") or {}).get("mode", "match") == "match"]


def find_one(session: VendorSession, rtype: str, params: Sequence[tuple[str, str]], what: str,
             keep: Callable[[dict[str, Any]], bool] = lambda r: True) -> dict[str, Any] | None:
    """The one resource a search finds (after ``keep``); None if none; permanent error if several."""
    found = [r for r in matches(session.get_json(f"{rtype}?{query(params)}", what), rtype, what) if keep(r)]
    if len(found) > 1:
        raise PermanentDeliveryError(f"{what}: {len(found)} {rtype} resources match; resolve the duplicates "
                                     "in the EHR")
    if found and not found[0].get("id"):
        raise PermanentDeliveryError(f"{what}: the {rtype} found has no id")
    return found[0] if found else None


def has_identifier(resource: Mapping[str, Any], system: str, value: str) -> bool:
    return any(isinstance(i, dict) and i.get("system") == system and i.get("value") == value
               for i in resource.get("identifier") or [])


T = TypeVar("T")


def create_reconciled(create: Callable[[], T], find: Callable[[], T | None], what: str) -> tuple[str, T]:
    """Create; if the answer never came (timeout, reset, 5xx), search again before anyone retries.

    The vendor may have written the resource even though we saw no answer, and it offers no
    idempotency key: searching on our identifier tells which it was, so a retry never duplicates.
    """
    try:
        return "created", create()
    except VersionConflict:
        raise
    except TransientDeliveryError:
        found = find()
        if found is None:
            raise
        log.info("vendor: %s: no answer to the create, but the search finds it; reconciled", what)
        return "reconciled", found


def version_of(response: FhirResponse, resource: Mapping[str, Any]) -> str | None:
    """The ETag to send as If-Match: the ETag header, else ``W/"<meta.versionId>"``."""
    etag = response.headers.get("ETag") or response.headers.get("Etag")
    if etag:
        return etag
    version = (resource.get("meta") or {}).get("versionId")
    return f'W/"{version}"' if version else None


def etag_from_resource(resource: Mapping[str, Any]) -> str | None:
    version = (resource.get("meta") or {}).get("versionId")
    return f'W/"{version}"' if version else None


def with_conflict_retry(attempt: Callable[[dict[str, Any], str | None], T],
                        current: dict[str, Any], etag: str | None,
                        reread: Callable[[], tuple[dict[str, Any], str | None]], what: str) -> T:
    """Run ``attempt(current, etag)``; on 412 re-read (GET for the new ETag) and try once more."""
    try:
        return attempt(current, etag)
    except VersionConflict:
        log.info("vendor: %s: 412, re-reading for the new version", what)
    current, etag = reread()
    try:
        return attempt(current, etag)
    except VersionConflict as exc:
        raise TransientDeliveryError(f"{what}: changed again while we retried; will try later ({exc})") from None


def read_resource(session: VendorSession, rtype: str, rid: str) -> tuple[dict[str, Any], str | None]:
    response = session.call("GET", f"{rtype}/{rid}", what=f"read {rtype}")
    doc = response.json()
    if not isinstance(doc, dict) or doc.get("resourceType") != rtype:
        raise TransientDeliveryError(f"read {rtype}: the answer is not a {rtype}")
    return doc, version_of(response, doc)


def created_id(response: FhirResponse, rtype: str, what: str) -> str:
    from bridge.plugins.fhir.rest import id_from_answer

    new_id = id_from_answer(response, rtype)
    if not new_id:
        raise PermanentDeliveryError(f"{what}: HTTP {response.status} gave no id (no Location, no body)")
    return new_id


# --- records in, identifiers out ------------------------------------------------------------------


def records_of(delivery: Delivery) -> list[Record]:
    """The canonical records of a payload (the profile's ``bridge`` format, or ``fhir``)."""
    try:
        if delivery.media_type == FHIR_JSON:
            from bridge.plugins.fhir.codec import decode as fhir_decode

            return fhir_decode(delivery.payload, {})
        from bridge.plugins.bridge_format import decode as bridge_decode

        return bridge_decode(delivery.payload, {})
    except DecodeError as exc:
        raise PermanentDeliveryError(f"the outbox payload cannot be read as records ({delivery.media_type}): "
                                     f"{exc}") from None


def pick(identifiers: Iterable[Identifier], system: str | None, type_code: str | None,
         assigner: str | None = None) -> Identifier | None:
    """The identifier in ``system``; else one of ``type_code`` (optionally from ``assigner``).
    Systems are compared as URIs, so a configured ``urn:oid:1.2.3`` finds an HL7v2 ``1.2.3``."""
    identifiers = list(identifiers)
    wanted = system_uri(system)
    for ident in identifiers:
        if wanted and system_uri(ident.system) == wanted and ident.value:
            return ident
    for ident in identifiers:
        if type_code and ident.type == type_code and ident.value and (not assigner or ident.assigner == assigner):
            return ident
    return None


@dataclass(frozen=True)
class IdentifierSystems:
    """The customer's identifier systems (never hard-coded: each organisation has its own)."""

    mrn: str
    visit_number: str
    provider_id: str | None = None
    mrn_assigner: str | None = None

    @classmethod
    def read(cls, opts: Options, required: bool = True) -> IdentifierSystems:
        return cls(mrn=opts.text("mrn_system", required=required) or "",
                   visit_number=opts.text("visit_number_system", required=required) or "",
                   provider_id=opts.text("provider_id_system"),
                   mrn_assigner=opts.text("mrn_assigner"))

    def mrn_of(self, record: Record, what: str) -> str:
        patient = getattr(record, "patient", None)
        ident = pick(patient.identifiers, self.mrn, "MR", self.mrn_assigner) if patient else None
        if ident is None:
            raise PermanentDeliveryError(f"{what}: the {record.kind} has no patient MRN (an identifier of type MR "
                                         f"or in system {self.mrn}); cannot find the patient in the EHR")
        return ident.value

    def visit_number_of(self, encounter: Encounter | None) -> str | None:
        ident = pick(encounter.identifiers, self.visit_number, "VN") if encounter else None
        return ident.value if ident else None


def note_id_for_visit(visit_number: str) -> str:
    """Our id of the visit note: one note per visit, whichever message (visit or prescription) comes first."""
    return f"visit-{visit_number}"


def record_date(value: str | None, field_name: str, options: Mapping[str, Any]) -> str | None:
    """A record date-time as a FHIR dateTime (the channel's ``timezone`` gave it its offset;
    ``default_timezone`` is the fixed fallback), or None."""
    if not value:
        return None
    from bridge import EncodeError

    try:
        return fhir_datetime(value, field_name, options)
    except EncodeError as exc:
        raise PermanentDeliveryError(str(exc)) from None


# --- the visit note -------------------------------------------------------------------------------

NOTE_TITLE = "Telehealth visit note"
RX_HEADING = "Prescriptions written during this visit"
RX_LINE = re.compile(r"^- \[Rx (?P<key>[^\]]+)\] ")


def visit_summary(encounter: Encounter, visit_number: str) -> str:
    """The visit section of the note: what a reader of the chart needs to know about the visit."""
    lines = [NOTE_TITLE, f"Visit number: {visit_number}"]
    if encounter.modality:
        lines.append(f"Modality: {encounter.modality.replace('_', ' ')}")
    if encounter.status:
        lines.append(f"Status: {encounter.status}")
    period = encounter.period
    if period and (period.start or period.end):
        lines.append(f"Visit period: {period.start or '?'} to {period.end or '(open)'}")
    place = encounter.patient_location
    if place and (place.state or place.country):
        where = ", ".join(p for p in (place.state, place.country) if p)
        notes = [n for n in ("at home" if place.at_home else None, place.source) if n]
        lines.append(f"Patient location during the visit: {where}" + (f" ({'; '.join(notes)})" if notes else ""))
    doctor = encounter.practitioner
    if doctor:
        name = " ".join(p for p in ([*(doctor.name.given if doctor.name else [])]
                                    + [doctor.name.family if doctor.name and doctor.name.family else ""]) if p)
        who = name or "unnamed practitioner"
        lines.append(f"Practitioner: {who}" + (f" (NPI {doctor.npi})" if doctor.npi else "")
                     + (f", practising from {encounter.practitioner_state}" if encounter.practitioner_state else ""))
    for reason in encounter.reason:
        lines.append(f"Reason: {reason.display or reason.code}" + (f" ({reason.code})" if reason.display else ""))
    if encounter.consent_captured is not None:
        lines.append(f"Telehealth consent: {'captured' if encounter.consent_captured else 'not captured'}")
    return "\n".join(lines)


def prescription_key(rx: Prescription) -> str:
    key = rx.prescriber_order_number or rx.id or (rx.identifiers[0].value if rx.identifiers else None)
    if not key:
        raise PermanentDeliveryError("the Prescription has no order number or id: it cannot be kept "
                                     "idempotently in the visit note")
    return key.replace("]", ")")


def prescription_line(rx: Prescription) -> str:
    """One summarised line: drug, quantity, sig, refills, pharmacy (not an e-prescription)."""
    med = rx.medication
    drug = (med.description or med.rxnorm or med.ndc or "unnamed medication") if med else "unnamed medication"
    if med and med.rxnorm:
        drug += f" (RxNorm {med.rxnorm})"
    parts = [drug]
    if rx.quantity:
        value = rx.quantity.value
        shown = int(value) if float(value).is_integer() else value
        parts.append(f"quantity {shown}" + (f" {rx.quantity.unit}" if rx.quantity.unit else ""))
    if rx.days_supply:
        parts.append(f"{rx.days_supply} days supply")
    parts.append(f"sig: {rx.sig}" if rx.sig else "sig: none given")
    parts.append(f"refills {rx.refills if rx.refills is not None else 'not stated'}")
    if rx.pharmacy:
        name = rx.pharmacy.name or "pharmacy"
        ids = ", ".join(f"{k} {v}" for k, v in (("NCPDP", rx.pharmacy.ncpdp_id), ("NPI", rx.pharmacy.npi)) if v)
        parts.append(f"pharmacy: {name}" + (f" ({ids})" if ids else ""))
    else:
        parts.append("pharmacy: none given")
    if rx.status:
        parts.append(f"status {rx.status}")
    return f"- [Rx {prescription_key(rx)}] " + "; ".join(parts)


def split_note(text: str) -> tuple[str | None, list[str]]:
    """A note we wrote → (visit section or None, prescription lines)."""
    head, _, tail = text.partition(f"\n\n{RX_HEADING}\n")
    if text.startswith(f"{RX_HEADING}\n"):
        head, tail = "", text[len(RX_HEADING) + 1:]
    rx_lines = [line for line in tail.splitlines() if RX_LINE.match(line)]
    return (head or None), rx_lines


def merge_note(existing: str | None, *, summary: str | None = None, rx_line: str | None = None,
               visit_number: str) -> str:
    """The note text after adding a visit section and/or a prescription line (keyed by order)."""
    old_summary, lines = split_note(existing) if existing else (None, [])
    summary = summary or old_summary or f"{NOTE_TITLE}\nVisit number: {visit_number}\n(visit summary to follow)"
    if rx_line:
        key = RX_LINE.match(rx_line).group("key")  # type: ignore[union-attr]
        replaced = [rx_line if RX_LINE.match(line).group("key") == key else line for line in lines]  # type: ignore[union-attr]
        lines = replaced if rx_line in replaced else [*lines, rx_line]
    return summary + (f"\n\n{RX_HEADING}\n" + "\n".join(lines) if lines else "")


def b64_text(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def attachment_text(resource: Mapping[str, Any]) -> str | None:
    """The text/plain content of a DocumentReference we wrote (None if it has none)."""
    for content in resource.get("content") or []:
        attachment = (content or {}).get("attachment") or {}
        if attachment.get("data"):
            try:
                return base64.b64decode(attachment["data"]).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return None
    return None


def note_of(record: Record) -> ClinicalNote | None:
    return record if isinstance(record, ClinicalNote) else None


# --- vitals ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vital:
    loinc: str
    display: str | None
    value: float
    unit: str | None
    effective: str | None


def vitals_of(encounter: Encounter) -> list[Vital]:
    """Vital signs the record carries: ``extra["vitals"]`` entries, or numeric LOINC OBX segments that
    the HL7v2 decoder kept in ``extra["hl7v2"]["segments"]``."""
    found = [v for v in (_vital_from_mapping(item) for item in encounter.extra.get("vitals") or []) if v]
    for kept in (encounter.extra.get("hl7v2") or {}).get("segments") or []:
        segment = kept.get("segment", "") if isinstance(kept, dict) else ""
        vital = _vital_from_obx(segment)
        if vital:
            found.append(vital)
    return found


def _vital_from_mapping(item: Any) -> Vital | None:
    if not isinstance(item, Mapping) or not item.get("loinc") or not isinstance(item.get("value"), (int, float)):
        return None
    return Vital(str(item["loinc"]), item.get("display"), float(item["value"]), item.get("unit"),
                 item.get("effective"))


def _vital_from_obx(segment: str) -> Vital | None:
    fields = segment.split("|")
    if len(fields) < 6 or fields[0] != "OBX" or fields[2] != "NM":
        return None
    code = fields[3].split("^")
    if len(code) < 3 or code[2] not in ("LN", "LOINC") or not code[0]:
        return None
    try:
        value = float(fields[5])
    except ValueError:
        return None
    unit = fields[6].split("^")[0] if len(fields) > 6 and fields[6] else None
    effective = fields[14] if len(fields) > 14 and fields[14] else None
    return Vital(code[0], code[1] or None, value, unit, _hl7_time(effective) if effective else None)


def _hl7_time(value: str) -> str | None:
    """An HL7 TS (``YYYYMMDDHHMM[SS][+-ZZZZ]``) as ISO 8601; None if it is not one."""
    match = re.fullmatch(r"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?(?:\.\d+)?([+-]\d{4})?", value)
    if not match:
        return None
    y, mo, d, h, mi, s, zone = match.groups()
    text = f"{y}-{mo}-{d}T{h}:{mi}:{s or '00'}"
    return text + (f"{zone[:3]}:{zone[3:]}" if zone else "")


def vital_observation(vital: Vital, *, obs_id: str, patient_ref: str, encounter_ref: str,
                      options: Mapping[str, Any]) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": vital.value}
    if vital.unit:
        quantity.update({"unit": vital.unit, "system": UCUM, "code": vital.unit})
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": OBSERVATION_ID_SYSTEM, "value": obs_id}],
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": vital.loinc, **({"display": vital.display}
                                                                       if vital.display else {})}]},
        "subject": {"reference": patient_ref},
        "encounter": {"reference": encounter_ref},
        "valueQuantity": quantity,
    }
    effective = record_date(vital.effective, "vital.effective", options)
    if effective:
        resource["effectiveDateTime"] = effective
    return resource


# --- the outcome summary --------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one delivery did, for the message timeline (types and counts, never PHI)."""

    steps: list[str] = field(default_factory=list)

    def add(self, step: str) -> None:
        self.steps.append(step)

    def text(self) -> str:
        return "; ".join(self.steps) or "nothing to write"


def write_records(delivery: Delivery, profile: str,
                  handlers: Sequence[tuple[type[Record], Callable[[Any, Outcome], None]]]) -> str:
    """Hand each routed record to its handler; a record kind the profile cannot write is a permanent
    failure that names the kinds it can (a routing mistake an analyst fixes in the config). A record
    the HL7v2 decoder split out of a message whose first record holds its segments (``carried``: an
    ADT's NK1 or OBX, a dispense's order) is no routing mistake: the profile writes what it takes
    from the first record (an ADT's OBX vitals, say), and the rest is noted in the outcome."""
    outcome = Outcome()
    for record in records_of(delivery):
        handler = next((h for kind, h in handlers if isinstance(record, kind)), None)
        if handler is None and record.extra.get("hl7v2", {}).get("carried"):  # type: ignore[attr-defined]
            outcome.add(f"{record.kind} carried in its message: not written by the {profile} profile")
            continue
        if handler is None:
            kinds = ", ".join(kind.kind for kind, _ in handlers)
            raise PermanentDeliveryError(f"the {profile} profile does not write {record.kind} records "
                                         f"(route only {kinds} to it)")
        handler(record, outcome)
    return outcome.text()


# --- sync jobs ------------------------------------------------------------------------------------

_job_sessions: dict[str, VendorSession] = {}


def run_poll_job(ctx: Any, vendor: str, build: Callable[[Mapping[str, Any], str, str], VendorSession],
                 extra_params: Callable[[Mapping[str, Any]], Sequence[tuple[str, str]]] = lambda s: ()) -> Any:
    """One vendor sync run: the FHIR plugin's poller with this vendor's session and parameters.

    ``build(settings, config_dir, where)`` makes the session (kept between runs, so the token is
    reused); ``extra_params`` adds the vendor's mandatory search parameters (athenahealth's
    ``ah-practice``). Paging follows ``Bundle.link[next]`` (athenahealth's cursor lives there); the
    watermark moves only after every page was stored.
    """
    from bridge.plugins.fhir.poller import DEFAULT_MAX_PAGES, poll

    where = f"jobs.{ctx.name}"
    settings = dict(ctx.settings)
    problems = [(f"{where}.{key}", "is required") for key in ("resource_type", "channel") if not settings.get(key)]
    params = settings.get("params") or {}
    if not isinstance(params, Mapping):
        problems.append((f"{where}.params", "must be a mapping of search parameters"))
    if ctx.submit is None or ctx.get_watermark is None or ctx.set_watermark is None:
        problems.append((where, f"{vendor} needs the engine's intake and watermarks"))
    if problems:
        raise ConfigError(problems)
    key = ctx.name + "\x00" + json.dumps(settings, sort_keys=True, default=str)
    if key not in _job_sessions:
        _job_sessions[key] = build(settings, str(getattr(ctx, "config_dir", ".") or "."), where)
    session = _job_sessions[key]
    channel = str(settings["channel"])
    watermark = str(settings.get("watermark") or ctx.name)
    since = ctx.get_watermark(watermark) or settings.get("since")
    return poll(session, str(settings["resource_type"]), str(since) if since else None,
                {**dict(extra_params(settings)), **params},
                submit=lambda raw, origin: ctx.submit(channel, raw, origin),
                set_watermark=lambda value: ctx.set_watermark(watermark, value),
                max_pages=int(settings.get("max_pages", DEFAULT_MAX_PAGES)))
