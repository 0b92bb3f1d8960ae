"""The request bodies Millennium documents, one builder per request, each citing its page.

Why a module of its own: these functions are the contract with Oracle Health. Each one writes only
the fields the cited page lists for that operation (Millennium ignores the others, or refuses them),
and :func:`missing_required` re-checks a body against the same pages when Millennium answers 500
for a missing field (see ``destination.OracleSession``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge import ClinicalNote, Encounter, PermanentDeliveryError, Prescription
from bridge.plugins.fhir import vendorkit as kit

from . import docs

CUSTOM_ATTRIBUTE = "https://fhir-ehr.cerner.com/r4/StructureDefinition/custom-attribute"
V2_IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
NOTE_TYPE = {"system": kit.LOINC, "code": "11506-3", "display": "Progress note"}
NOTE_MARKER = "tb-note"
RX_MARKER = "tb-rx"
SUPPORTED_CONTENT = {"text/plain", "text/richtext", "text/rtf", "text/html", "application/xml",
                     "application/xhtml+xml"}
"""Attachment MIME types DocumentReference create accepts with ``;charset=utf-8`` (PDF goes without)."""
NOTE_STATUSES = {None: "final", "final": "final", "amended": "amended", "corrected": "amended"}
"""ClinicalNote.status → docStatus: DocumentReference create takes ``final`` or ``amended`` only."""


def marker(kind: str, key: str) -> str:
    """The tag our writes carry where Millennium keeps text (note title, medication note), so a
    redelivery finds the earlier write: Millennium ignores ``identifier`` on these creates."""
    return f"[{kind} {key.replace(']', ')')}]"


# --- Encounter ------------------------------------------------------------------------------------


def encounter_body(settings: Any, encounter: Encounter, patient: str, visit_number: str,
                   encounter_type: dict[str, Any], period: Mapping[str, str]) -> dict[str, Any]:
    """``POST Encounter`` — https://docs.oracle.com/en/industries/health/millennium-platform-apis/mfrap/op-encounter-post.html
    (fields: https://fhir.cerner.com/millennium/r4/base/management/encounter/).

    ``identifier`` carries ``type`` (required when an identifier is given; v2-0203 ``VN``);
    ``status`` is required and may not be cancelled or entered-in-error; ``class`` is never written
    (inferred from ``type``, code set 71); exactly one of ``serviceProvider`` and ``location``
    (required, mutually exclusive); the custom attribute's name carries its ``ENCNTR:`` id and a
    ``valueString``, its value a ``valueString``; dates carry a time.
    """
    body: dict[str, Any] = {"resourceType": "Encounter"}
    extension = modality_extension(settings, encounter)
    if extension:
        body["extension"] = [extension]
    body["identifier"] = [{"type": {"coding": [{"system": V2_IDENTIFIER_TYPE, "code": "VN"}]},
                           "system": settings.systems.visit_number, "value": visit_number}]
    body["status"] = encounter.status if encounter.status in ("planned", "arrived", "triaged", "in-progress",
                                                              "onleave", "finished") else "in-progress"
    body["type"] = [encounter_type]
    body["subject"] = {"reference": f"Patient/{patient}"}
    if period:
        body["period"] = dict(period)
    if settings.service_provider:
        body["serviceProvider"] = {"reference": f"Organization/{settings.service_provider}"}
    else:
        body["location"] = [{"location": {"reference": f"Location/{settings.location}"}}]
    return body


def modality_extension(settings: Any, encounter: Encounter) -> dict[str, Any] | None:
    """The custom attribute carrying the visit's modality, as
    https://docs.oracle.com/en/industries/health/millennium-platform-apis/mfrap/op-encounter-post.html documents it:
    ``custom-attribute-name`` with ``id`` ``ENCNTR:<code>`` and the attribute's name as
    ``valueString``; ``custom-attribute-value`` as ``valueString``."""
    attribute = settings.modality_attribute
    if not attribute or not encounter.modality:
        return None
    return {"url": CUSTOM_ATTRIBUTE, "extension": [
        {"id": attribute["id"], "url": "custom-attribute-name", "valueString": attribute["name"]},
        {"url": "custom-attribute-value", "valueString": encounter.modality}]}


def has_attribute(current: Mapping[str, Any], attribute_id: str) -> bool:
    for ext in current.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == CUSTOM_ATTRIBUTE:
            if any(isinstance(e, dict) and e.get("id") == attribute_id for e in ext.get("extension") or []):
                return True
    return False


def encounter_patch_ops(settings: Any, encounter: Encounter, current: Mapping[str, Any],
                        encounter_type: dict[str, Any], period: Mapping[str, str]) -> list[dict[str, Any]]:
    """``PATCH Encounter/{id}`` — https://docs.oracle.com/en/industries/health/millennium-platform-apis/mfrap/op-encounter-id-patch.html

    Only the documented operations: ``replace`` on ``/period/start``, ``/period/end``, ``/type``
    (a list; the first entry is used) and ``/extension``, and ``add`` on ``/extension/-`` (custom
    attributes only). A finished visit is therefore its ``period.end``; ``status`` cannot be patched
    and Millennium may keep showing the encounter in progress (its page says so).
    """
    have = current.get("period") or {}
    ops = [{"op": "replace", "path": f"/period/{key}", "value": period[key]}
           for key in ("start", "end") if period.get(key) and not same_instant(period[key], have.get(key))]
    codes = {(c.get("system"), c.get("code")) for t in current.get("type") or [] for c in t.get("coding") or []}
    wanted = encounter_type["coding"][0]
    if (wanted["system"], wanted["code"]) not in codes:
        ops.append({"op": "replace", "path": "/type", "value": [encounter_type]})
    extension = modality_extension(settings, encounter)
    if extension and not has_attribute(current, settings.modality_attribute["id"]):
        ops.append({"op": "add", "path": "/extension/-", "value": extension})
    return ops


def same_instant(ours: str, theirs: str | None) -> bool:
    """Millennium answers in UTC (``…Z``); ours carry the sender's offset: compare the instants."""
    if not theirs:
        return False
    from datetime import datetime

    try:
        return datetime.fromisoformat(ours.replace("Z", "+00:00")) == datetime.fromisoformat(
            theirs.replace("Z", "+00:00"))
    except ValueError:
        return ours == theirs


# --- DocumentReference ----------------------------------------------------------------------------


def content_type(note: ClinicalNote) -> str:
    """The attachment type with its charset, as DocumentReference create requires
    (https://docs.oracle.com/en/industries/health/millennium-platform-apis/mfrap/op-documentreference-post.html:
    ``text/plain;charset=utf-8``); a type it does not list is a permanent failure."""
    media = (note.content_type or "text/plain").split(";")[0].strip().lower()
    if media == "application/pdf":
        return media
    if media not in SUPPORTED_CONTENT:
        raise PermanentDeliveryError(f"Millennium DocumentReference create does not accept {media!r} "
                                     f"(see {docs.DOCUMENT_CREATE})")
    return f"{media};charset=utf-8"


def doc_status(note: ClinicalNote) -> str:
    """``final`` or ``amended``, the only docStatus values of
    https://docs.oracle.com/en/industries/health/millennium-platform-apis/mfrap/op-documentreference-post.html"""
    status = NOTE_STATUSES.get(note.status)
    if status is None:
        raise PermanentDeliveryError(f"a {note.status} note cannot be filed: Millennium DocumentReference create "
                                     f"takes docStatus final or amended only ({docs.DOCUMENT_CREATE})")
    return status


def note_body(note: ClinicalNote, note_key: str, patient: str, encounter_id: str,
              period: Mapping[str, str], authored: str | None) -> dict[str, Any]:
    """``POST DocumentReference`` — https://docs.oracle.com/en/industries/health/millennium-platform-apis/mfrap/op-documentreference-post.html
    (fields: https://fhir.cerner.com/millennium/r4/foundation/documents/document-reference/).

    ``status`` current; ``docStatus`` final or amended; a LOINC ``type``; one ``content`` whose
    attachment has a charset in its content type; ``context.period`` with ``end`` (required; all
    dates with a time) and one ``context.encounter``. No ``identifier`` (not supported, ignored):
    our key goes in the attachment title as :func:`marker`, which Millennium returns on search.
    """
    note_type = note.note_type if note.note_type and note.note_type.system == kit.LOINC else None
    coding = {"system": kit.LOINC, "code": note_type.code} if note_type else dict(NOTE_TYPE)
    attachment: dict[str, Any] = {"contentType": content_type(note), "data": kit.b64_text(note.text or ""),
                                  "title": f"{note.title or 'Telehealth visit note'} {marker(NOTE_MARKER, note_key)}"}
    if authored:
        attachment["creation"] = authored
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": doc_status(note),
        "type": {"coding": [coding]},
        "subject": {"reference": f"Patient/{patient}"},
        "content": [{"attachment": attachment}],
        "context": {"encounter": [{"reference": f"Encounter/{encounter_id}"}], "period": dict(period)},
    }


# --- MedicationRequest ----------------------------------------------------------------------------


def medication_body(rx: Prescription, order: str, patient: str, encounter_id: str | None) -> dict[str, Any]:
    """``POST MedicationRequest`` — https://docs.oracle.com/en/industries/health/millennium-platform-apis/mfrap/op-medicationrequest-post.html
    (fields: https://fhir.cerner.com/millennium/r4/clinical/medications/medication-request/).

    A documented medication: ``status`` active, ``intent`` plan, ``reportedBoolean`` true, a
    medication as text or one coding with system and code. ``identifier``, ``category`` and
    ``authoredOn`` are not create fields and are not sent; ``dispenseRequest.quantity`` needs
    ``system`` and ``code`` and must not carry ``unit`` (without a coded unit the quantity goes in
    the note instead). Our order number goes in ``note`` as :func:`marker`.
    """
    med = rx.medication
    concept: dict[str, Any] = {"text": (med.description if med else None) or "unnamed medication"}
    if med and med.rxnorm:
        concept["coding"] = [{"system": kit.RXNORM, "code": med.rxnorm}]
    body: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": "active", "intent": "plan", "reportedBoolean": True,
        "medicationCodeableConcept": concept,
        "subject": {"reference": f"Patient/{patient}"},
    }
    if encounter_id:
        body["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    if rx.sig:
        body["dosageInstruction"] = [{"text": rx.sig}]
    dispense: dict[str, Any] = {}
    quantity = rx.quantity
    coded = bool(quantity and quantity.code and quantity.system)
    if quantity and coded:
        dispense["quantity"] = {"value": quantity.value, "system": kit.system_uri(quantity.system),
                                "code": quantity.code}
    if rx.refills is not None:
        dispense["numberOfRepeatsAllowed"] = rx.refills
    if dispense:
        body["dispenseRequest"] = dispense
    text = ("Prescribed on the telemedicine platform and sent to the pharmacy by it; documented here, "
            "not e-prescribed from Millennium.")
    if quantity and not coded:
        shown = int(quantity.value) if float(quantity.value).is_integer() else quantity.value
        text += f" Quantity: {shown}{' ' + quantity.unit if quantity.unit else ''}."
    body["note"] = [{"text": f"{text} {marker(RX_MARKER, order)}"}]
    return body


# --- re-validation --------------------------------------------------------------------------------

REQUIRED = {
    "Encounter": ("status", "type", "subject"),
    "DocumentReference": ("status", "docStatus", "type", "subject", "content", "context"),
    "MedicationRequest": ("status", "intent", "reportedBoolean", "medicationCodeableConcept", "subject"),
}


def missing_required(body: Mapping[str, Any]) -> list[str]:
    """The fields the create pages mark required that ``body`` lacks (empty: none we can see)."""
    rtype = str(body.get("resourceType"))
    missing = [name for name in REQUIRED.get(rtype, ()) if body.get(name) in (None, "", [], {})]
    if rtype == "Encounter" and not (body.get("serviceProvider") or body.get("location")):
        missing.append("serviceProvider or location")
    if rtype == "Encounter":
        missing += [f"identifier[{i}].type" for i, ident in enumerate(body.get("identifier") or [])
                    if not ident.get("type")]
    if rtype == "DocumentReference" and not ((body.get("context") or {}).get("period") or {}).get("end"):
        missing.append("context.period.end")
    return missing
