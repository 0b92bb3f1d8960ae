"""An Oracle Health (Cerner Millennium) FHIR R4 simulator on loopback, for vendor plugin tests.

``with OracleHealthSimulator() as oracle:`` serves one tenant at ``oracle.base``
(``http://127.0.0.1:PORT/r4/{tenant}``) and its token endpoint at ``oracle.token_url``
(``client_secret_basic``; for ``private_key_jwt`` run a ``FakeTokenEndpoint`` and share its tokens:
``oracle.tokens = endpoint.issued``). It holds patients (:meth:`add_patient`), encounters, documents and
medication requests in memory and answers the way Millennium's documentation says:

- writes: ``POST Encounter``, ``PATCH Encounter/{id}`` (JSON Patch, ``If-Match``),
  ``POST DocumentReference``, ``POST MedicationRequest``; 201 with an empty body, ``Location`` and
  ``ETag: W/"<version>"``;
- reads: ``GET Patient|Encounter|DocumentReference|MedicationRequest?…`` (searchset Bundles; the
  documented required parameters enforced) and ``GET Encounter/{id}`` (with ``ETag``);
- refusals as documented in https://fhir.cerner.com/millennium/r4/#client-errors: 401 without a
  valid token, 403 "Tenant not valid or accessible", 404, 409 for an out-of-date ``If-Match``,
  422 (OperationOutcome ``business-rule``/``not-supported``) for a body breaking a business rule,
  and 500 (OperationOutcome ``fatal``/``required``) for a missing required field
  (https://fhir.cerner.com/millennium/r4/#handling-required-fields).

Fields a create does not support are *ignored*, as the create pages say: in particular
``identifier`` on DocumentReference and MedicationRequest is dropped, so a plugin cannot find its
earlier write by it. Every check below cites the page it enforces.

It is a :class:`~bridge.testing.vendor_sims._common.VendorSimulator` like the Epic and athena ones:
each refusal is a ``Refusal`` naming the page it enforces, every refused request is kept in
``violations`` (method, path, status, text, ``source``), and ``lose_answer("POST", "/DocumentReference")``
does the next matching write, then resets the connection before any answer (the client cannot know).
Oracle's own extras: :meth:`conflict_next_patch` (someone else updates the encounter just before the
next PATCH, so the client's ``If-Match`` is stale), refusals answered as OperationOutcomes with
Millennium's codes, ``ETag`` versions and paged searches; plus the base ``inject(...)``.
"""

from __future__ import annotations

import base64
import datetime
import itertools
import json
import re
import secrets
from typing import Any
from urllib.parse import unquote, urlencode

from werkzeug.wrappers import Request, Response

from bridge.plugins.oracle_health.docs import (  # the pages the plugin follows are the pages enforced here
    CLIENT_ERRORS, DOCUMENT_CREATE, DOCUMENT_PAGE, ENCOUNTER_CREATE, ENCOUNTER_PAGE, ENCOUNTER_PATCH,
    MEDICATION_CREATE, MEDICATION_PAGE, PATIENT_PAGE, REQUIRED_FIELDS,
)
from bridge.testing.fakes.fhir_server import split_token
from bridge.testing.fakes.http import Injection

from ._common import Refusal, VendorSimulator

SANDBOX_TENANT = "ec2458f2-1e24-41c8-b71b-0e701af7583d"
CUSTOM_ATTRIBUTE = "https://fhir-ehr.cerner.com/r4/StructureDefinition/custom-attribute"
FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
HAS_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")


def required(field: str, page: str) -> Refusal:
    """A missing required field: 500 with a fatal ``required`` OperationOutcome (REQUIRED_FIELDS);
    ``page`` is the one that lists the field as required."""
    return Refusal(500, f"{field} is required ({page})", page, "required", severity="fatal")


def rule(text: str, page: str, code: str = "business-rule") -> Refusal:
    """A body valid as JSON but against the documented rules of ``page``: 422 (CLIENT_ERRORS)."""
    return Refusal(422, f"{text} ({page})", page, code)


def check_time(value: Any, field: str, page: str) -> None:
    """The create pages: all provided dates must carry a time component."""
    if not isinstance(value, str) or not HAS_TIME.match(value):
        raise rule(f"{field} must be a dateTime with a time and offset, got {value!r}", page)


class OracleHealthSimulator(VendorSimulator):
    """A Millennium tenant on loopback. See the module docstring for what it enforces."""

    content_type = FHIR_JSON

    def __init__(self, *, tenant: str = SANDBOX_TENANT, client_id: str = "tb-oracle-np",
                 client_secret: str = "s3cr3t-value") -> None:
        super().__init__()
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.resources: dict[str, dict[str, dict[str, Any]]] = {}
        self.tokens: set[str] = set()
        self.ids = itertools.count(97953477)
        self._conflicts: list[str | None] = []

    # -- addresses --

    @property
    def base(self) -> str:
        return f"{self.url}/r4/{self.tenant}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/tenants/{self.tenant}/protocols/oauth2/profiles/smart-v1/token"

    # -- test data and inspection --

    def add_patient(self, mrn_system: str, mrn: str, patient_id: str = "12724066") -> dict[str, Any]:
        with self.lock:
            return self._store({"resourceType": "Patient", "id": patient_id,
                                "identifier": [{"system": mrn_system, "value": mrn}], "active": True}, patient_id)

    def all(self, rtype: str) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(json.dumps(r)) for r in self.resources.get(rtype, {}).values()]

    # -- scripting --

    def conflict_next_patch(self, encounter_id: str | None = None) -> None:
        """Just before the next PATCH (of ``encounter_id``, or any), another user updates the encounter:
        its version moves on and the client's ``If-Match`` becomes stale (409)."""
        with self.lock:
            self._conflicts.append(encounter_id)

    # -- HTTP --

    def scripted_body(self, injection: Injection) -> Any:
        return {"resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "processing", "diagnostics": injection.text or "scripted"}]}

    def answer(self, request: Request) -> Response:
        try:
            if request.path == f"/tenants/{self.tenant}/protocols/oauth2/profiles/smart-v1/token":
                return self.issue_token(request)
            return self.route(request)
        except Refusal as refusal:
            return self.refused(request, refusal)

    def refusal_response(self, refusal: Refusal) -> Response:
        """Millennium answers a refusal with an OperationOutcome: its severity, code and what was wrong."""
        return self.json(refusal.status, {"resourceType": "OperationOutcome", "issue": [
            {"severity": refusal.severity, "code": refusal.code, "diagnostics": refusal.text}]}, refusal.headers)

    def issue_token(self, request: Request) -> Response:
        """``client_secret_basic`` on the tenant's SMART token endpoint; the token is then required."""
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return Response(json.dumps({"error": "invalid_client"}), status=401, content_type="application/json")
        if request.form.get("grant_type") != "client_credentials":
            return Response(json.dumps({"error": "unsupported_grant_type"}), status=400,
                            content_type="application/json")
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens.add(token)
        return Response(json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": 570,
                                    "scope": request.form.get("scope", "")}), content_type="application/json")

    def route(self, request: Request) -> Response:
        prefix = "/r4/"
        if not request.path.startswith(prefix):
            raise Refusal(404, f"no resource at {request.path}", CLIENT_ERRORS, "not-found")
        tenant, *parts = [p for p in request.path[len(prefix):].split("/") if p] or [""]
        if tenant != self.tenant:  # CLIENT_ERRORS: an unknown instance is 403
            raise Refusal(403, "Tenant not valid or accessible", CLIENT_ERRORS, "forbidden")
        header = request.headers.get("Authorization", "")
        if not (header.startswith("Bearer ") and header[7:] in self.tokens):  # CLIENT_ERRORS: 401
            raise Refusal(401, "a valid bearer token is required", CLIENT_ERRORS, "login")
        with self.lock:
            return self.dispatch(request, parts)

    def dispatch(self, request: Request, parts: list[str]) -> Response:
        if request.method == "GET" and len(parts) == 1:
            return self.json(200, self.search(parts[0], request))
        if request.method == "GET" and len(parts) == 2:
            found = self.resources.get(parts[0], {}).get(parts[1])
            if not found:
                raise Refusal(404, f"{parts[0]}/{parts[1]} not found", CLIENT_ERRORS, "not-found")
            return self.json(200, found, {"ETag": f'W/"{found["meta"]["versionId"]}"'})
        creates = {"Encounter": self.create_encounter, "DocumentReference": self.create_document,
                   "MedicationRequest": self.create_medication}
        if request.method == "POST" and len(parts) == 1 and parts[0] in creates:
            body = self.fhir_body(request, parts[0], self.CREATE_PAGES[parts[0]])
            stored = creates[parts[0]](body)
            return Response(b"", status=201, content_type=FHIR_JSON, headers={
                "Location": f"{self.base}/{parts[0]}/{stored['id']}", "ETag": f'W/"{stored["meta"]["versionId"]}"'})
        if request.method == "PATCH" and len(parts) == 2 and parts[0] == "Encounter":
            stored = self.patch_encounter(parts[1], request)
            return Response(b"", status=200, content_type=FHIR_JSON,
                            headers={"ETag": f'W/"{stored["meta"]["versionId"]}"'})
        raise Refusal(405, f"{request.method} {'/'.join(parts)} is not a documented interaction",
                      self.PAGES.get(parts[0] if parts else "", CLIENT_ERRORS), "not-supported")

    CREATE_PAGES = {"Encounter": ENCOUNTER_CREATE, "DocumentReference": DOCUMENT_CREATE,
                    "MedicationRequest": MEDICATION_CREATE}

    def fhir_body(self, request: Request, rtype: str, page: str) -> dict[str, Any]:
        """Create pages' headers: ``Content-Type: application/fhir+json``; ``resourceType`` must match."""
        if (request.content_type or "").split(";")[0] != FHIR_JSON:
            raise Refusal(415, f"Content-Type must be {FHIR_JSON}", page, "structure")
        try:
            body = json.loads(request.get_data())
        except ValueError:
            raise Refusal(400, "the body is not JSON", page, "structure") from None
        if not isinstance(body, dict) or body.get("resourceType") != rtype:
            raise rule(f"resourceType must be {rtype}", CLIENT_ERRORS)
        return body

    # -- storage --

    def _store(self, resource: dict[str, Any], rid: str | None = None) -> dict[str, Any]:
        rid = rid or str(next(self.ids))
        previous = self.resources.get(resource["resourceType"], {}).get(rid)
        version = int(previous["meta"]["versionId"]) + 1 if previous else 0
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        stored = {**resource, "id": rid, "meta": {"versionId": str(version), "lastUpdated": now}}
        self.resources.setdefault(resource["resourceType"], {})[rid] = stored
        return stored

    def patient_ref(self, body: dict[str, Any], field: str, page: str) -> None:
        reference = (body.get(field) or {}).get("reference", "") if isinstance(body.get(field), dict) else ""
        if not reference:
            raise required(field, page)
        kind, _, rid = reference.partition("/")
        if kind != "Patient":  # the create pages: subject must be a Patient reference
            raise rule(f"{field} must be a Patient reference", page)
        if rid not in self.resources.get("Patient", {}):
            raise rule(f"{field} {reference} is not a patient of this tenant", page, "not-found")

    # -- Encounter --

    def create_encounter(self, body: dict[str, Any]) -> dict[str, Any]:
        """The checks of ENCOUNTER_CREATE (fields as on ENCOUNTER_PAGE)."""
        for index, ident in enumerate(body.get("identifier") or []):
            for part in ("type", "system", "value"):  # ENCOUNTER_CREATE: required if identifier is given
                if not ident.get(part):
                    raise required(f"Encounter.identifier[{index}].{part}", ENCOUNTER_CREATE)
        status = body.get("status")
        if not status:  # ENCOUNTER_CREATE: status is required
            raise required("Encounter.status", ENCOUNTER_CREATE)
        if status in ("cancelled", "entered-in-error"):  # ENCOUNTER_PAGE: not supported on create
            raise rule(f"status {status} is not supported on create", ENCOUNTER_PAGE)
        if "class" in body:  # ENCOUNTER_CREATE: class cannot be written; it is inferred from type
            raise rule("Direct writing of class is not supported", ENCOUNTER_CREATE, "not-supported")
        if not body.get("type"):  # ENCOUNTER_CREATE: type is required
            raise required("Encounter.type", ENCOUNTER_CREATE)
        self.patient_ref(body, "subject", ENCOUNTER_CREATE)
        self.check_place(body)
        for key in ("start", "end"):  # ENCOUNTER_CREATE: a date with time must be provided
            if key in (body.get("period") or {}):
                check_time(body["period"][key], f"Encounter.period.{key}", ENCOUNTER_CREATE)
        for ext in body.get("extension") or []:
            self.check_custom_attribute(ext, ENCOUNTER_CREATE)
        return self._store(body)

    def check_place(self, body: dict[str, Any]) -> None:
        """ENCOUNTER_CREATE: serviceProvider or location is required; they cannot be given together;
        only one location reference."""
        has_provider, locations = bool(body.get("serviceProvider")), body.get("location") or []
        if has_provider and locations:
            raise rule("location cannot be provided when serviceProvider is present", ENCOUNTER_CREATE)
        if not has_provider and not locations:
            raise required("Encounter.serviceProvider (or Encounter.location)", ENCOUNTER_CREATE)
        if len(locations) > 1:
            raise rule("only one location reference is permitted", ENCOUNTER_CREATE)

    @staticmethod
    def check_custom_attribute(ext: Any, page: str) -> None:
        """ENCOUNTER_CREATE / ENCOUNTER_PATCH: the custom attribute's name has an ``ENCNTR:`` id and a
        valueString; the value is string, integer, dateTime or CodeableConcept; no id on the attribute."""
        if not isinstance(ext, dict) or ext.get("url") != CUSTOM_ATTRIBUTE:
            raise rule(f"extension {ext.get('url') if isinstance(ext, dict) else ext!r} cannot be written", page,
                       "extension")
        if ext.get("id"):
            raise rule("the custom-attribute id field cannot be set", page)
        parts = {e.get("url"): e for e in ext.get("extension") or [] if isinstance(e, dict)}
        name, value = parts.get("custom-attribute-name"), parts.get("custom-attribute-value")
        if not name or not value:
            raise required("custom-attribute-name and custom-attribute-value", page)
        if not re.fullmatch(r"ENCNTR:\d+", str(name.get("id") or "")) or not isinstance(name.get("valueString"), str):
            raise rule("custom-attribute-name needs an id ENCNTR:<code> and a valueString", page)
        if not any(k in value for k in ("valueString", "valueInteger", "valueDateTime", "valueCodeableConcept")):
            raise rule("custom-attribute-value must be a string, integer, dateTime or CodeableConcept", page)

    PATCHABLE = {("replace", "/period/start"), ("replace", "/period/end"), ("replace", "/type"),
                 ("replace", "/extension"), ("add", "/extension/-")}

    def patch_encounter(self, enc_id: str, request: Request) -> dict[str, Any]:
        """ENCOUNTER_PATCH: JSON Patch, ``If-Match`` with the current version (CLIENT_ERRORS: an
        out-of-date version is 409), only the documented operations."""
        current = self.resources.get("Encounter", {}).get(enc_id)
        if current is None:
            raise Refusal(404, f"Encounter/{enc_id} not found", ENCOUNTER_PATCH, "not-found")
        if (request.content_type or "").split(";")[0] != JSON_PATCH:
            raise Refusal(415, f"Content-Type must be {JSON_PATCH} ({ENCOUNTER_PATCH})", ENCOUNTER_PATCH,
                          "structure")
        if self._conflicts and self._conflicts[0] in (None, enc_id):
            self._conflicts.pop(0)
            current = self._store(dict(current), enc_id)  # someone else's update moves the version on
        if_match = request.headers.get("If-Match")
        if not if_match:
            raise required("If-Match header", ENCOUNTER_PATCH)
        if if_match != f'W/"{current["meta"]["versionId"]}"':
            raise Refusal(409, f"If-Match {if_match} is not the current version ({CLIENT_ERRORS})",
                          CLIENT_ERRORS, "conflict")
        try:
            ops = json.loads(request.get_data())
        except ValueError:
            raise Refusal(400, "the body is not JSON", ENCOUNTER_PATCH, "structure") from None
        if not isinstance(ops, list) or not ops:
            raise rule("the body must be a JSON Patch array", ENCOUNTER_PATCH, "structure")
        updated = json.loads(json.dumps(current))
        for op in ops:
            self.apply(updated, op)
        return self._store(updated, enc_id)

    def apply(self, resource: dict[str, Any], op: Any) -> None:
        key = (op.get("op"), op.get("path")) if isinstance(op, dict) else (None, None)
        if key not in self.PATCHABLE:  # ENCOUNTER_PATCH: only operations on the listed paths
            raise rule(f"{key[0]} {key[1]} is not a supported patch operation", ENCOUNTER_PATCH, "not-supported")
        value = op.get("value")
        if key[1].startswith("/period/"):
            if value:
                check_time(value, f"Encounter{key[1].replace('/', '.')}", ENCOUNTER_PATCH)
                resource.setdefault("period", {})[key[1].rsplit("/", 1)[1]] = value
            else:  # ENCOUNTER_PATCH: no value unsets it
                (resource.get("period") or {}).pop(key[1].rsplit("/", 1)[1], None)
        elif key[1] == "/type":
            if not isinstance(value, list) or not value:
                raise rule("/type must be a list of CodeableConcept", ENCOUNTER_PATCH)
            resource["type"] = value[:1]  # the first value is used
        elif key[1] == "/extension/-":
            self.check_custom_attribute(value, ENCOUNTER_PATCH)
            resource.setdefault("extension", []).append(value)
        else:
            if not isinstance(value, list):
                raise rule("/extension must be a list", ENCOUNTER_PATCH)
            resource["extension"] = value

    # -- DocumentReference --

    DOCUMENT_FIELDS = ("resourceType", "status", "docStatus", "type", "subject", "author", "authenticator",
                       "content", "context")
    CONTENT_TYPES = ("application/pdf", "text/plain;charset=utf-8", "text/richtext;charset=utf-8",
                     "text/rtf;charset=utf-8", "text/html;charset=utf-8", "application/xml;charset=utf-8",
                     "application/xhtml+xml;charset=utf-8")

    def create_document(self, body: dict[str, Any]) -> dict[str, Any]:
        """The checks of DOCUMENT_CREATE (fields as on DOCUMENT_PAGE); unsupported fields ignored."""
        for field in ("status", "docStatus", "type", "content", "context"):
            if not body.get(field):  # DOCUMENT_CREATE: required
                raise required(f"DocumentReference.{field}", DOCUMENT_CREATE)
        if body["status"] != "current":  # DOCUMENT_CREATE: only current
            raise rule("status must be current", DOCUMENT_CREATE)
        if body["docStatus"] not in ("final", "amended"):  # DOCUMENT_CREATE: final or amended (system access)
            raise rule(f"docStatus {body['docStatus']!r} is not supported (final or amended)", DOCUMENT_CREATE)
        self.check_document_type(body["type"])
        self.patient_ref(body, "subject", DOCUMENT_CREATE)
        self.check_content(body["content"])
        self.check_context(body["context"])
        kept = {k: v for k, v in body.items() if k in self.DOCUMENT_FIELDS}  # the rest is ignored
        stored = self._store(kept)
        attachment = stored["content"][0]["attachment"]  # on read, the document is a Binary link
        stored["content"][0]["attachment"] = {
            **{k: v for k, v in attachment.items() if k != "data"},
            "url": f"{self.base}/Binary/XR-{stored['id']}"}
        stored["date"] = stored["meta"]["lastUpdated"]
        return stored

    @staticmethod
    def check_document_type(concept: Any) -> None:
        """DOCUMENT_CREATE: a LOINC or a proprietary (code set 72) coding, not both together."""
        systems = {c.get("system", "") for c in (concept or {}).get("coding") or [] if isinstance(c, dict)}
        loinc = "http://loinc.org" in systems
        proprietary = any(s.endswith("/codeSet/72") for s in systems)
        if loinc == proprietary:
            raise rule("type must include a LOINC or a proprietary coding, not both", DOCUMENT_CREATE)

    def check_content(self, content: Any) -> None:
        """DOCUMENT_CREATE: exactly one content; attachment with data and a supported contentType that
        includes its character set."""
        if not isinstance(content, list) or len(content) != 1:
            raise rule("content must contain only one entry", DOCUMENT_CREATE)
        attachment = (content[0] or {}).get("attachment") or {}
        if not attachment.get("data") or not attachment.get("contentType"):
            raise required("DocumentReference.content.attachment.data and contentType", DOCUMENT_CREATE)
        if attachment["contentType"].replace(" ", "").lower() not in self.CONTENT_TYPES:
            raise rule(f"contentType {attachment['contentType']!r} must be a supported MIME type with its "
                       "character set", DOCUMENT_CREATE)
        if "creation" in attachment:
            check_time(attachment["creation"], "content.attachment.creation", DOCUMENT_CREATE)

    @staticmethod
    def check_context(context: dict[str, Any]) -> None:
        """DOCUMENT_CREATE: context.period with end is required (start optional), dates with a time;
        one encounter reference at most."""
        period = context.get("period") or {}
        if not period.get("end"):
            raise required("DocumentReference.context.period.end", DOCUMENT_CREATE)
        for key, value in period.items():
            check_time(value, f"context.period.{key}", DOCUMENT_CREATE)
        if len(context.get("encounter") or []) > 1:
            raise rule("only a single encounter reference is supported", DOCUMENT_CREATE)

    # -- MedicationRequest --

    MEDICATION_FIELDS = ("resourceType", "status", "intent", "doNotPerform", "reportedBoolean",
                         "medicationCodeableConcept", "subject", "encounter", "note", "dosageInstruction",
                         "dispenseRequest", "substitution")

    def create_medication(self, body: dict[str, Any]) -> dict[str, Any]:
        """The checks of MEDICATION_CREATE (fields as on MEDICATION_PAGE); unsupported fields ignored."""
        for field in ("status", "intent", "reportedBoolean", "medicationCodeableConcept"):
            if field not in body:  # MEDICATION_CREATE: required
                raise required(f"MedicationRequest.{field}", MEDICATION_CREATE)
        if body["status"] != "active":  # MEDICATION_CREATE: a new MedicationRequest must be active
            raise rule("status must be active on create", MEDICATION_CREATE)
        if body["intent"] not in ("order", "plan"):  # MEDICATION_CREATE: order or plan
            raise rule("intent must be order or plan", MEDICATION_CREATE)
        if body["reportedBoolean"] is not True:  # MEDICATION_CREATE: boolean, set to true
            raise rule("reportedBoolean must be true", MEDICATION_CREATE)
        if body.get("doNotPerform", False) is not False:  # MEDICATION_CREATE: if provided, false
            raise rule("doNotPerform must be false", MEDICATION_CREATE)
        self.check_medication(body["medicationCodeableConcept"])
        self.patient_ref(body, "subject", MEDICATION_CREATE)
        if len(body.get("dosageInstruction") or []) > 1:  # MEDICATION_CREATE: only once
            raise rule("dosageInstruction can only be provided once", MEDICATION_CREATE)
        quantity = (body.get("dispenseRequest") or {}).get("quantity")
        if quantity is not None:  # MEDICATION_CREATE: system and code together; unit not supported
            if "unit" in quantity:
                raise rule("dispenseRequest.quantity.unit is not supported", MEDICATION_CREATE, "not-supported")
            if not (quantity.get("system") and quantity.get("code")):
                raise rule("dispenseRequest.quantity must contain system and code", MEDICATION_CREATE)
        return self._store({k: v for k, v in body.items() if k in self.MEDICATION_FIELDS})

    @staticmethod
    def check_medication(concept: Any) -> None:
        """MEDICATION_CREATE: a CodeableConcept with text, or one coding with system and code."""
        codings = (concept or {}).get("coding") or [] if isinstance(concept, dict) else []
        if len(codings) > 1 or any(not (c.get("system") and c.get("code")) for c in codings):
            raise rule("medicationCodeableConcept takes one coding with system and code", MEDICATION_CREATE)
        if not codings and not (concept or {}).get("text"):
            raise required("MedicationRequest.medicationCodeableConcept (text or coding)", MEDICATION_CREATE)

    # -- search --

    PAGE_SIZE = "10"
    NEEDS = {"Patient": ("_id", "identifier", "name", "family", "given", "birthdate", "phone", "email"),
             "Encounter": ("_id", "patient", "subject", "account", "identifier"),
             "DocumentReference": ("_id", "patient"), "MedicationRequest": ("_id", "patient")}
    PAGES = {"Patient": PATIENT_PAGE, "Encounter": ENCOUNTER_PAGE, "DocumentReference": DOCUMENT_PAGE,
             "MedicationRequest": MEDICATION_PAGE}

    def search(self, rtype: str, request: Request) -> dict[str, Any]:
        """Each resource page's search: one of its conditionally required parameters must be given
        (400 otherwise, CLIENT_ERRORS); ``_id`` alone."""
        if rtype not in self.NEEDS:
            raise Refusal(404, f"{rtype} is not simulated", CLIENT_ERRORS, "not-found")
        query = {k: v for k, v in request.args.lists()}
        if not any(k in query for k in self.NEEDS[rtype]):
            raise Refusal(400, "no supported search parameters provided", self.PAGES[rtype], "required")
        if "_id" in query and set(query) - {"_id", "_revinclude"}:
            raise Refusal(400, f"_id must not be combined with other parameters ({self.PAGES[rtype]})",
                          self.PAGES[rtype], "business-rule")
        offset = int(query.pop("-offset", ["0"])[0])
        found = [r for r in self.resources.get(rtype, {}).values()
                 if all(self.match(r, name, value) for name, values in query.items() for value in values)]
        count = min(int(query.get("_count", [self.PAGE_SIZE])[0]), 100)  # DOCUMENT_PAGE: default 10, max 100
        bundle = {"resourceType": "Bundle", "type": "searchset",
                  "link": [{"relation": "self", "url": request.url}],
                  "entry": [{"fullUrl": f"{self.base}/{rtype}/{r['id']}", "resource": r,
                             "search": {"mode": "match"}} for r in found[offset:offset + count]]}
        if offset + count < len(found):  # the pages say: follow Bundle.link[next]
            following = urlencode([(k, v) for k, values in request.args.lists() if k != "-offset" for v in values])
            bundle["link"].append({"relation": "next",
                                   "url": f"{self.base}/{rtype}?{following}&-offset={offset + count}"})
        return bundle

    def match(self, resource: dict[str, Any], name: str, value: str) -> bool:
        value = unquote(value)
        if name == "_id":
            return resource["id"] in value.split(",")
        if name in ("patient", "subject"):
            target = (resource.get("subject") or {}).get("reference", "")
            return target in (f"Patient/{value}", value)
        if name == "identifier":
            system, wanted = split_token(value)
            return any(i.get("value") == wanted and (system is None or i.get("system") == system)
                       for i in resource.get("identifier") or [])
        if name == "encounter":
            refs = [e.get("reference") for e in (resource.get("context") or {}).get("encounter") or []]
            return any(f"Encounter/{v}" in refs for v in value.split(","))
        if name == "type":
            wanted = {split_token(v) for v in value.split(",")}
            codings = (resource.get("type") or {}).get("coding") or []
            return any((c.get("system"), c.get("code")) in wanted or (None, c.get("code")) in wanted for c in codings)
        if name in ("intent", "status"):
            return resource.get(name) in value.split(",")
        if name in ("_count", "_revinclude"):
            return True
        raise Refusal(400, f"search parameter {name!r} is not simulated",
                      self.PAGES.get(resource.get("resourceType", ""), CLIENT_ERRORS), "not-supported")
