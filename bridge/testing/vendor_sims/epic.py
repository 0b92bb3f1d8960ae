"""An Epic FHIR R4 simulator on loopback: the interactions Telemed Bridge uses, as Epic documents them.

Start it with ``with EpicSimulator(client_id=…, public_key=…, kid=…) as epic:``; ``epic.base`` is
the FHIR base and ``epic.token_url`` the SMART Backend Services token endpoint (a
:class:`~bridge.testing.fakes.FakeTokenEndpoint` started with it, checking the signed assertion).
Seed the chart with :meth:`EpicSimulator.add_patient`, :meth:`add_encounter`,
:meth:`add_practitioner`; read what was filed from ``notes``, ``observations`` and ``note_text``.

What it enforces, each with the page it comes from (``Refusal.source``; a refused request is kept in
``violations``):

- only the catalogued interactions (:data:`INTERACTIONS`): Patient, Encounter and Practitioner are
  search-only; DocumentReference (Clinical Notes) is Create, Read and Search, **no Update**;
  Observation (Vitals) is Create and Search; Binary is Read. Anything else answers 405;
- a bearer token the token endpoint issued (401 otherwise) — SMART Backend Services;
- a note's required elements: ``type`` (a LOINC coding), ``subject`` (a Patient held here),
  ``context.encounter`` (an Encounter of that patient), one attachment ``text/plain`` or
  ``text/html`` with base64 ``data``; ``docStatus`` ``final`` or ``preliminary``. A ``final`` note
  without an ``author`` is filed as signed by the background user (``background_signed``), as Epic
  does for a backend app;
- vitals: category ``vital-signs``, a LOINC ``code``, ``subject``, ``encounter``, ``valueQuantity``;
  the encounter must be **open** (third-party notes of Epic's sandbox, not confirmed in Epic's
  public pages) and a repeated reading (same patient, code, encounter, time, value) answers 400
  (same source);
- content types: ``application/fhir+json`` bodies (415 otherwise); errors come as OperationOutcome.

What Epic keeps of a note and gives back on search is modelled conservatively: our ``identifier``
is **not** kept (Epic's create documentation does not list it as kept), and search results carry
the text as ``content.attachment.url`` = ``Binary/{id}``, not inline — so a plugin must find its
earlier write by what Epic keeps (patient, type, encounter, the text).

Scripting: ``inject(...)`` (one-shot answers, e.g. 429 with Retry-After, or a 403 OperationOutcome),
``lose_answer("POST", "/DocumentReference")`` (the write happens, the answer is lost).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from typing import Any
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from bridge.testing.fakes.fhir_server import Refused, split_token, validate
from bridge.testing.fakes.token_endpoint import FakeTokenEndpoint

from ._common import Refusal, VendorSimulator

CATALOGUE = "https://open.epic.com/Interface/FHIR"
SPECS = "https://fhir.epic.com/Specifications"
SMART_BACKEND = "https://fhir.epic.com/Documentation?docId=oauth2"
VITALS_NOTES = "third-party notes of Epic's sandbox (unconfirmed in Epic's public pages)"
FHIR_JSON = "application/fhir+json"
LOINC = "http://loinc.org"
BASE_PATH = "/api/FHIR/R4"
NOTE_CONTENT_TYPES = ("text/plain", "text/html")
OPEN = frozenset({"planned", "arrived", "triaged", "in-progress", "onleave"})

INTERACTIONS: dict[tuple[str, str], str] = {
    ("GET", "Patient"): f"{SPECS} Patient.Search (R4)",
    ("GET", "Encounter"): f"{SPECS} Encounter.Search (R4)",
    ("GET", "Practitioner"): f"{SPECS} Practitioner.Search (R4)",
    ("GET", "DocumentReference"): f"{SPECS} DocumentReference.Search (Clinical Notes) (R4)",
    ("GET", "DocumentReference/id"): f"{SPECS} DocumentReference.Read (Clinical Notes) (R4)",
    ("POST", "DocumentReference"): f"{SPECS} DocumentReference.Create (Clinical Notes) (R4)",
    ("GET", "Binary/id"): f"{SPECS} Binary.Read (Clinical Notes) (R4)",
    ("GET", "Observation"): f"{SPECS} Observation.Search (Vitals) (R4)",
    ("POST", "Observation"): f"{SPECS} Observation.Create (Vitals) (R4)",
}
"""(method, resource type or ``Type/id``) → the catalogue entry that documents it. Nothing else is
allowed; in particular there is no DocumentReference Update (PUT) for clinical notes."""


def outcome(text: str, code: str = "invalid", source: str | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": code, "details": {"text": text}}
    if source:
        issue["diagnostics"] = f"simulated per {source}"
    return {"resourceType": "OperationOutcome", "issue": [issue]}


class EpicSimulator(VendorSimulator):
    """Epic's FHIR R4 API for a backend app, in memory (see the module docstring)."""

    content_type = FHIR_JSON

    def __init__(self, *, client_id: str, public_key: Any, kid: str | None = None, validate_models: bool = True):
        super().__init__()
        self.token_endpoint = FakeTokenEndpoint(client_id=client_id, public_key=public_key, kid=kid,
                                                expires_in=3600)
        self.validate_models = validate_models
        self.patients: dict[str, dict[str, Any]] = {}
        self.encounters: dict[str, dict[str, Any]] = {}
        self.practitioners: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, dict[str, Any]] = {}
        self.binaries: dict[str, tuple[str, bytes]] = {}
        self.observations: dict[str, dict[str, Any]] = {}
        self.background_signed: list[str] = []
        self.ids = itertools.count(1)

    # -- lifecycle --

    def __enter__(self) -> EpicSimulator:
        self.token_endpoint.__enter__()
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        self.token_endpoint.__exit__(*exc)

    @property
    def base(self) -> str:
        return f"{self.url}{BASE_PATH}"

    @property
    def token_url(self) -> str:
        return self.token_endpoint.token_url

    # -- the chart --

    def new_id(self, prefix: str) -> str:
        return f"e{prefix}{next(self.ids)}"

    def add_patient(self, mrn_system: str, mrn: str) -> str:
        pid = self.new_id("Pat")
        self.patients[pid] = {"resourceType": "Patient", "id": pid,
                              "identifier": [{"system": mrn_system, "value": mrn}]}
        return pid

    def add_encounter(self, patient: str, visit_system: str, visit: str, status: str = "in-progress") -> str:
        eid = self.new_id("Enc")
        self.encounters[eid] = {"resourceType": "Encounter", "id": eid, "status": status,
                                "identifier": [{"system": visit_system, "value": visit}],
                                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"},
                                "subject": {"reference": f"Patient/{patient}"}}
        return eid

    def set_encounter_status(self, encounter: str, status: str) -> None:
        """Epic closes its own encounter (the visit is not written through the API)."""
        with self.lock:
            self.encounters[encounter]["status"] = status

    def add_practitioner(self, system: str, value: str) -> str:
        rid = self.new_id("Prac")
        self.practitioners[rid] = {"resourceType": "Practitioner", "id": rid,
                                   "identifier": [{"system": system, "value": value}]}
        return rid

    def note_text(self, note_id: str) -> str:
        url = self.notes[note_id]["content"][0]["attachment"]["url"]
        return self.binaries[url.split("/")[-1]][1].decode("utf-8")

    # -- HTTP --

    def scripted_body(self, injection: Any) -> Any:
        return outcome(injection.text or "scripted failure", "processing")

    def refusal_response(self, refusal: Refusal) -> Response:
        return self.json(refusal.status, outcome(refusal.text, refusal.code, refusal.source), refusal.headers)

    def answer(self, request: Request) -> Response:
        try:
            self.authorize(request)
            return self.route(request)
        except Refusal as refusal:
            return self.refused(request, refusal)

    def authorize(self, request: Request) -> None:
        header = request.headers.get("Authorization", "")
        if not (header.startswith("Bearer ") and header[7:] in self.token_endpoint.issued):
            raise Refusal(401, "invalid or expired access token", SMART_BACKEND, "login",
                          {"WWW-Authenticate": "Bearer"})

    def route(self, request: Request) -> Response:
        if not request.path.startswith(BASE_PATH + "/"):
            raise Refusal(404, f"no FHIR R4 endpoint at {request.path}", CATALOGUE, "not-found")
        parts = [unquote(p) for p in request.path[len(BASE_PATH) + 1:].split("/") if p]
        key = (request.method, parts[0] if len(parts) == 1 else f"{parts[0]}/id")
        if len(parts) > 2 or key not in INTERACTIONS:
            raise Refusal(405, f"{request.method} {'/'.join(parts[:1])}{'/{id}' if len(parts) > 1 else ''} is not "
                               "an interaction in Epic's catalogue for this API", CATALOGUE, "not-supported")
        with self.lock:
            if request.method == "POST":
                return self.create(parts[0], self.body(request), INTERACTIONS[key])
            if len(parts) == 2:
                return self.read(parts[0], parts[1])
            return self.json(200, self.search(parts[0], request))

    def body(self, request: Request) -> dict[str, Any]:
        if (request.content_type or "").split(";")[0].strip() not in (FHIR_JSON, "application/json"):
            raise Refusal(415, f"expected {FHIR_JSON}, got {request.content_type!r}", CATALOGUE, "structure")
        try:
            doc = json.loads(request.get_data())
        except ValueError:
            raise Refusal(400, "the body is not JSON", CATALOGUE, "structure") from None
        if not isinstance(doc, dict):
            raise Refusal(400, "the body is not a FHIR resource", CATALOGUE, "structure")
        return doc

    # -- reads and searches --

    def read(self, rtype: str, rid: str) -> Response:
        if rtype == "Binary":
            if rid not in self.binaries:
                raise Refusal(404, f"Binary/{rid} not found", INTERACTIONS[("GET", "Binary/id")], "not-found")
            content_type, data = self.binaries[rid]
            return self.json(200, {"resourceType": "Binary", "id": rid, "contentType": content_type,
                                   "data": base64.b64encode(data).decode("ascii")})
        found = self.notes.get(rid)
        if not found:
            raise Refusal(404, f"{rtype}/{rid} not found", INTERACTIONS[("GET", "DocumentReference/id")], "not-found")
        return self.json(200, found)

    def search(self, rtype: str, request: Request) -> dict[str, Any]:
        source = INTERACTIONS[("GET", rtype)]
        params = {k: v for k, v in request.args.items()}
        held = {"Patient": self.patients, "Encounter": self.encounters, "Practitioner": self.practitioners,
                "DocumentReference": self.notes, "Observation": self.observations}[rtype]
        if rtype in ("DocumentReference", "Observation") and "patient" not in params:
            raise Refusal(400, "a patient is required for this search", source, "required")
        if rtype in ("Patient", "Encounter", "Practitioner") and "identifier" not in params:
            raise Refusal(400, "this search needs an identifier here", source, "required")
        found = [r for r in held.values() if all(self.match(r, k, v) for k, v in params.items())]
        return {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                "entry": [{"fullUrl": f"{self.base}/{rtype}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                          for r in found]}

    def match(self, resource: dict[str, Any], name: str, value: str) -> bool:
        if name.startswith("_"):
            return True
        if name == "identifier":
            system, code = split_token(value)
            return any(i.get("value") == code and (system is None or i.get("system") == system)
                       for i in resource.get("identifier") or [])
        if name == "patient":
            return (resource.get("subject") or {}).get("reference") == f"Patient/{value}"
        if name in ("type", "code"):
            system, code = split_token(value)
            concept = resource.get(name) or {}
            return any(c.get("code") == code and (system is None or c.get("system") == system)
                       for c in concept.get("coding") or [])
        if name == "category":
            return any(c.get("code") == value for cat in resource.get("category") or [] for c in cat.get("coding") or [])
        if name == "encounter":
            refs = resource.get("encounter") or (resource.get("context") or {}).get("encounter") or []
            refs = refs if isinstance(refs, list) else [refs]
            return any(r.get("reference") == f"Encounter/{value}" for r in refs)
        raise Refusal(400, f"search parameter {name!r} is not supported here", CATALOGUE, "not-supported")

    # -- creates --

    def create(self, rtype: str, resource: dict[str, Any], source: str) -> Response:
        if resource.get("resourceType") != rtype:
            raise Refusal(400, f"resourceType must be {rtype}", source, "structure")
        try:
            validate(resource, models=self.validate_models)
        except Refused as refused:
            raise Refusal(422 if refused.status == 422 else 400, refused.text, source, refused.code) from None
        stored = self.create_note(resource, source) if rtype == "DocumentReference" else \
            self.create_vital(resource, source)
        return Response(b"", status=201, headers={"Location": f"{self.base}/{rtype}/{stored}"})

    def patient_of(self, resource: dict[str, Any], source: str) -> str:
        ref = (resource.get("subject") or {}).get("reference") or ""
        pid = ref.removeprefix("Patient/")
        if not ref.startswith("Patient/") or pid not in self.patients:
            raise Refusal(400, "subject must reference a Patient of this organisation", source, "required")
        return pid

    def open_encounter_of(self, ref: str, patient: str, source: str, *, must_be_open: bool) -> dict[str, Any]:
        encounter = self.encounters.get(ref.removeprefix("Encounter/")) if ref.startswith("Encounter/") else None
        if encounter is None or encounter["subject"]["reference"] != f"Patient/{patient}":
            raise Refusal(400, "the encounter must be an Encounter of the subject", source, "required")
        if must_be_open and encounter["status"] not in OPEN:
            raise Refusal(400, "vitals can only be filed on an open encounter", f"{source}; {VITALS_NOTES}",
                          "business-rule")
        return encounter

    def create_note(self, note: dict[str, Any], source: str) -> str:
        patient = self.patient_of(note, source)
        refs = (note.get("context") or {}).get("encounter") or []
        if len(refs) != 1:
            raise Refusal(400, "context.encounter (one Encounter) is required", source, "required")
        self.open_encounter_of(refs[0].get("reference") or "", patient, source, must_be_open=False)
        if not any(c.get("system") == LOINC and c.get("code") for c in (note.get("type") or {}).get("coding") or []):
            raise Refusal(400, "type needs a LOINC note type", source, "required")
        if note.get("docStatus") not in ("final", "preliminary"):
            raise Refusal(400, "docStatus must be final or preliminary", source, "value")
        attachment = self.attachment(note, source)
        for ref in note.get("author") or []:
            if (ref.get("reference") or "").removeprefix("Practitioner/") not in self.practitioners:
                raise Refusal(400, "author must reference a Practitioner of this organisation", source, "value")
        nid = self.new_id("Doc")
        bid = self.new_id("Bin")
        self.binaries[bid] = attachment
        kept = {k: v for k, v in note.items() if k not in ("identifier", "content", "id", "meta")}
        kept.update({"id": nid, "meta": {"versionId": "1"},
                     "content": [{"attachment": {"contentType": attachment[0], "url": f"Binary/{bid}"}}]})
        if note["docStatus"] == "final" and not note.get("author"):
            self.background_signed.append(nid)
        self.notes[nid] = kept
        return nid

    def attachment(self, note: dict[str, Any], source: str) -> tuple[str, bytes]:
        contents = note.get("content") or []
        attachment = (contents[0].get("attachment") or {}) if len(contents) == 1 else {}
        content_type = attachment.get("contentType")
        if content_type not in NOTE_CONTENT_TYPES:
            raise Refusal(400, f"content[0].attachment.contentType must be one of {', '.join(NOTE_CONTENT_TYPES)}",
                          source, "value")
        try:
            data = base64.b64decode(attachment.get("data") or "", validate=True)
            data.decode("utf-8")
        except (binascii.Error, ValueError):
            raise Refusal(400, "content[0].attachment.data must be base64 UTF-8 text", source, "value") from None
        if not data:
            raise Refusal(400, "the note has no text", source, "required")
        return content_type, data

    def create_vital(self, obs: dict[str, Any], source: str) -> str:
        patient = self.patient_of(obs, source)
        if not any(c.get("code") == "vital-signs" for cat in obs.get("category") or [] for c in cat.get("coding") or []):
            raise Refusal(400, "category must be vital-signs", source, "value")
        if not any(c.get("system") == LOINC for c in (obs.get("code") or {}).get("coding") or []):
            raise Refusal(400, "code needs a LOINC coding", source, "required")
        if not isinstance((obs.get("valueQuantity") or {}).get("value"), (int, float)):
            raise Refusal(400, "valueQuantity.value is required", source, "required")
        ref = (obs.get("encounter") or {}).get("reference") or ""
        self.open_encounter_of(ref, patient, source, must_be_open=True)
        key = self.reading_key(obs)
        if any(self.reading_key(o) == key for o in self.observations.values()):
            raise Refusal(400, "this reading is already filed", f"{source}; {VITALS_NOTES}", "duplicate")
        oid = self.new_id("Obs")
        self.observations[oid] = {**{k: v for k, v in obs.items() if k != "identifier"}, "id": oid}
        return oid

    @staticmethod
    def reading_key(obs: dict[str, Any]) -> tuple[Any, ...]:
        code = next((c.get("code") for c in (obs.get("code") or {}).get("coding") or []), None)
        return ((obs.get("subject") or {}).get("reference"), code, (obs.get("encounter") or {}).get("reference"),
                obs.get("effectiveDateTime"), (obs.get("valueQuantity") or {}).get("value"))
