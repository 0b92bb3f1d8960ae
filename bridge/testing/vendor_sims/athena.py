"""An athenahealth (athenaOne) simulator on loopback: the token endpoint, the FHIR R4 Patient search
and the v1 encounter documents, as athenahealth documents them.

Start it with ``with AthenaSimulator(client_id=…, client_secret=…) as athena:`` (or ``public_key=…``
for private_key_jwt); its ``url`` is the host, as ``api.preview.platform.athenahealth.com`` is:
``{url}/oauth2/v1/token``, ``{url}/fhir/r4``, ``{url}/v1/{practiceid}``. Seed patients with
:meth:`AthenaSimulator.add_patient`; read the filed documents from ``documents``.

What it enforces, each with its page (``Refusal.source``; refused requests are kept in ``violations``):

- tokens (:data:`TOKENS`): client_credentials with HTTP Basic or a signed assertion; tokens live an
  hour; **at most** ``token_limit`` new tokens a minute (5 in preview, 50 in production) — past it,
  429 for the rest of the minute;
- FHIR (:data:`CAPABILITIES`): only the search parameters the CapabilityStatement lists for the
  resource (``ah-department`` for Patient, not for Encounter); ``ah-practice`` required; read and
  search only;
- v1 encounter documents (:data:`ENCOUNTER_DOCUMENTS`): the practice in the path, a bearer token;
  POST form-encoded (or multipart) with ``departmentid`` and ``documentsubclass`` required, only the
  documented parameters (``documentdata`` is the text; ``textdata`` is refused as unknown); answer
  ``{"success": true, "encounterdocumentid": …}``; GET lists them with their ``internalnote``; PUT
  takes only ``departmentid``, ``appointmentid``, ``encounterid``, ``internalnote`` (appended) and
  ``priority`` — the text cannot be changed;
- errors as athena's v1 answers them (``{"error": …, "detailedmessage": …}``), FHIR errors as
  OperationOutcome; ``inject(...)`` scripts a 429 with ``Retry-After`` or any other answer;
  ``lose_answer("POST", "/encounterdocument")`` files the document and loses the answer.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any

from werkzeug.wrappers import Request, Response

from bridge.testing.fakes.token_endpoint import FakeTokenEndpoint, TokenRefused

from ._common import Refusal, VendorSimulator

ENCOUNTER_DOCUMENTS = "https://docs.athenahealth.com/api/api-ref/document-type-encounter-document"
CAPABILITIES = "https://api.platform.athenahealth.com/fhir/r4/metadata"
TOKENS = "https://docs.athenahealth.com/api/guides/authentication-and-url-locations"
TOKEN_PATH = "/oauth2/v1/token"
FHIR_PATH = "/fhir/r4"
CREATE_PARAMETERS = frozenset({"departmentid", "documentsubclass", "appointmentid", "attachmentcontents",
                               "documentdata", "encounterid", "entityid", "entitytype", "internalnote",
                               "priority"})
UPDATE_PARAMETERS = frozenset({"departmentid", "appointmentid", "encounterid", "internalnote", "priority"})
LIST_PARAMETERS = frozenset({"departmentid", "documentsubclass", "encounterid", "showdeleted", "limit", "offset"})
SEARCH_PARAMETERS: dict[str, frozenset[str]] = {
    "Patient": frozenset({"_id", "identifier", "name", "birthdate", "gender", "family", "given", "_lastUpdated",
                          "ah-brand", "ah-chart-sharing-group", "ah-department", "ah-provider-group", "_count",
                          "cursor", "_include", "_revinclude", "ah-practice", "_security"}),
    "Encounter": frozenset({"_id", "patient", "date", "_revinclude", "_include", "_count", "cursor",
                            "ah-chart-sharing-group", "ah-practice", "_lastUpdated", "location", "service-provider",
                            "practitioner", "_security"}),
}
"""Search parameters per resource, as athena's CapabilityStatement lists them (:data:`CAPABILITIES`)."""


class AthenaTokens(FakeTokenEndpoint):
    """athena's token endpoint checks, served inside the simulator at ``/oauth2/v1/token``."""

    def __init__(self, simulator: AthenaSimulator, **kwargs: Any):
        super().__init__(expires_in=3600, **kwargs)
        self.simulator = simulator

    @property
    def token_url(self) -> str:
        return f"{self.simulator.url}{TOKEN_PATH}"


class AthenaSimulator(VendorSimulator):
    """athenaOne for one practice, in memory (see the module docstring)."""

    def __init__(self, *, practice_id: str = "195900", client_id: str, client_secret: str | None = None,
                 public_key: Any = None, kid: str | None = None, token_limit: int = 5,
                 subclasses: tuple[str, ...] = ("PROGRESSNOTE",)):
        super().__init__()
        self.practice_id = practice_id
        self.tokens = AthenaTokens(self, client_id=client_id, client_secret=client_secret, public_key=public_key,
                                   kid=kid)
        self.token_limit = token_limit
        self.token_times: list[float] = []
        self.subclasses = subclasses
        self.patients: dict[str, str] = {}
        self.documents: dict[str, dict[str, Any]] = {}
        self.ids = itertools.count(170001)
        self._token_lock = threading.Lock()

    # -- the chart --

    def add_patient(self, mrn_system: str, mrn: str, patient_id: str = "14545") -> str:
        self.patients[patient_id] = f"{mrn_system}|{mrn}"
        return patient_id

    def documents_of(self, patient: str) -> list[dict[str, Any]]:
        return [d for d in self.documents.values() if d["patientid"] == patient]

    # -- HTTP --

    def answer(self, request: Request) -> Response:
        try:
            if request.path == TOKEN_PATH:
                return self.token(request)
            self.authorize(request)
            if request.path.startswith(FHIR_PATH + "/"):
                return self.fhir(request)
            if request.path.startswith(f"/v1/{self.practice_id}/"):
                return self.v1(request)
            raise Refusal(404, f"no route {request.path} (wrong practice id?)", ENCOUNTER_DOCUMENTS)
        except Refusal as refusal:
            return self.refused(request, refusal)

    def refusal_response(self, refusal: Refusal) -> Response:
        if refusal.source == CAPABILITIES:
            return self.json(refusal.status, {"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": refusal.code, "diagnostics": refusal.text}]}, refusal.headers)
        return self.json(refusal.status, {"error": refusal.text, "detailedmessage": f"simulated per {refusal.source}"},
                         refusal.headers)

    def token(self, request: Request) -> Response:
        """The token endpoint, with athena's per-minute limit on new tokens."""
        now = time.time()
        with self._token_lock:
            minute = now - now % 60
            recent = [t for t in self.token_times if t >= minute]
            if len(recent) >= self.token_limit:
                raise Refusal(429, f"more than {self.token_limit} token requests this minute", TOKENS,
                              headers={"Retry-After": str(int(61 - now % 60))})
            self.token_times.append(now)
        try:
            form = dict(request.form.items())
            self.tokens.check_grant(form)
            self.tokens.authenticate(request, form)
            return self.tokens.issue(form)
        except TokenRefused as refused:
            raise Refusal(refused.status, f"{refused.error}: {refused.description}", TOKENS) from None

    def authorize(self, request: Request) -> None:
        header = request.headers.get("Authorization", "")
        if not (header.startswith("Bearer ") and header[7:] in self.tokens.issued):
            raise Refusal(401, "invalid or missing access token", TOKENS, headers={"WWW-Authenticate": "Bearer"})

    # -- FHIR R4 (read/search) --

    def fhir(self, request: Request) -> Response:
        parts = [p for p in request.path[len(FHIR_PATH) + 1:].split("/") if p]
        if request.method != "GET" or len(parts) != 1 or parts[0] not in SEARCH_PARAMETERS:
            raise Refusal(405, f"{request.method} {request.path}: athena's FHIR API is read/search only here",
                          CAPABILITIES, "not-supported")
        rtype, allowed = parts[0], SEARCH_PARAMETERS[parts[0]]
        unknown = sorted(set(request.args) - allowed)
        if unknown:
            raise Refusal(400, f"{rtype} search does not support {', '.join(unknown)}", CAPABILITIES, "not-supported")
        if request.args.get("ah-practice") != f"Organization/a-1.Practice-{self.practice_id}":
            raise Refusal(403, "ah-practice is required and must be this practice", CAPABILITIES, "forbidden")
        found = []
        if rtype == "Patient":
            wanted = request.args.get("identifier")
            found = [{"resourceType": "Patient", "id": f"a-{self.practice_id}.E-{pid}"}
                     for pid, ident in self.patients.items() if wanted in (None, ident)]
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                  "entry": [{"resource": r, "search": {"mode": "match"}} for r in found]}
        return Response(json.dumps(bundle), status=200, content_type="application/fhir+json")

    # -- v1 encounter documents --

    def v1(self, request: Request) -> Response:
        rest = request.path[len(f"/v1/{self.practice_id}/"):].split("/")
        if len(rest) < 4 or rest[0] != "patients" or rest[2:4] != ["documents", "encounterdocument"]:
            raise Refusal(404, f"no v1 endpoint {request.path} in this simulator", ENCOUNTER_DOCUMENTS)
        patient = rest[1]
        if patient not in self.patients:
            raise Refusal(404, f"no patient {patient} in this practice", ENCOUNTER_DOCUMENTS)
        with self.lock:
            if request.method == "GET" and len(rest) == 4:
                return self.list_documents(request, patient)
            if request.method == "POST" and len(rest) == 4:
                return self.create_document(request, patient)
            if request.method == "PUT" and len(rest) == 5:
                return self.update_document(request, patient, rest[4])
            if request.method == "GET" and len(rest) == 5 and rest[4] in self.documents:
                return self.json(200, [self.documents[rest[4]]])
        raise Refusal(405, f"{request.method} {request.path} is not an encounter-document endpoint",
                      ENCOUNTER_DOCUMENTS)

    def form(self, request: Request, allowed: frozenset[str]) -> dict[str, str]:
        kind = (request.content_type or "").split(";")[0].strip()
        if kind not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            raise Refusal(415, f"parameters must be form-encoded, got {kind or 'no content type'}",
                          ENCOUNTER_DOCUMENTS)
        form = dict(request.form.items())
        unknown = sorted(set(form) - allowed)
        if unknown:
            raise Refusal(400, f"unknown parameter(s) {', '.join(unknown)}", ENCOUNTER_DOCUMENTS)
        return form

    def list_documents(self, request: Request, patient: str) -> Response:
        unknown = sorted(set(request.args) - LIST_PARAMETERS)
        if unknown:
            raise Refusal(400, f"unknown parameter(s) {', '.join(unknown)}", ENCOUNTER_DOCUMENTS)
        found = [d for d in self.documents_of(patient)
                 if request.args.get("departmentid") in (None, d["departmentid"])
                 and request.args.get("documentsubclass") in (None, d["documentsubclass"].split("_", 1)[-1])]
        return self.json(200, {"encounterdocuments": found, "totalcount": len(found)})

    def create_document(self, request: Request, patient: str) -> Response:
        form = self.form(request, CREATE_PARAMETERS)
        for required in ("departmentid", "documentsubclass"):
            if not form.get(required):
                raise Refusal(400, f"{required} is required", ENCOUNTER_DOCUMENTS)
        if form["documentsubclass"] not in self.subclasses:
            raise Refusal(400, f"documentsubclass {form['documentsubclass']} is not valid for encounter documents",
                          ENCOUNTER_DOCUMENTS)
        if not (form.get("documentdata") or form.get("attachmentcontents")):
            raise Refusal(400, "the document has no content (documentdata or attachmentcontents)",
                          ENCOUNTER_DOCUMENTS)
        if not form["departmentid"].isdigit():
            raise Refusal(400, "departmentid must be numeric", ENCOUNTER_DOCUMENTS)
        doc_id = str(next(self.ids))
        self.documents[doc_id] = {
            "encounterdocumentid": int(doc_id), "patientid": patient, "departmentid": form["departmentid"],
            "documentsubclass": f"ENCOUNTERDOCUMENT_{form['documentsubclass']}", "status": "CLOSED",
            "documentdata": form.get("documentdata", ""), "internalnote": form.get("internalnote", ""),
            **({"encounterid": form["encounterid"]} if form.get("encounterid") else {})}
        return self.json(200, {"success": True, "encounterdocumentid": int(doc_id)})

    def update_document(self, request: Request, patient: str, doc_id: str) -> Response:
        document = self.documents.get(doc_id)
        if document is None or document["patientid"] != patient:
            raise Refusal(404, f"no encounter document {doc_id} for this patient", ENCOUNTER_DOCUMENTS)
        form = self.form(request, UPDATE_PARAMETERS)
        if not form.get("departmentid"):
            raise Refusal(400, "departmentid is required", ENCOUNTER_DOCUMENTS)
        if form.get("internalnote"):
            form["internalnote"] = f"{document['internalnote']}\n{form['internalnote']}".strip()
        document.update(form)
        return self.json(200, {"success": True})
