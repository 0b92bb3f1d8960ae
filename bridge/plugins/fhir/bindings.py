"""The R4 *required* value-set bindings of what we emit, as data, and a check of a resource against them.

Validators check structure; few check that a ``code`` bound *required* is in its value set (issue 13
found MedicationRequest.status "revoked" passing two validators). Every set below is copied from the
FHIR R4 (4.0.1) specification, https://hl7.org/fhir/R4/ — the value set named after each path (its
``valueset-<name>.html`` page); docs/fhir.md lists them. Extensible and preferred bindings (such as
Encounter.class) are not checked: other codes are allowed there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

VS = "http://hl7.org/fhir/ValueSet/"

GENDER = frozenset({"male", "female", "other", "unknown"})
ENCOUNTER_STATUS = frozenset({"planned", "arrived", "triaged", "in-progress", "onleave", "finished",
                              "cancelled", "entered-in-error", "unknown"})

CODES: dict[tuple[str, ...], tuple[str, frozenset[str]]] = {
    ("Patient", "gender"): ("administrative-gender", GENDER),
    ("Patient", "contact", "gender"): ("administrative-gender", GENDER),
    ("Practitioner", "gender"): ("administrative-gender", GENDER),
    ("RelatedPerson", "gender"): ("administrative-gender", GENDER),
    ("Patient", "link", "type"): ("link-type", frozenset({"replaced-by", "replaces", "refer", "seealso"})),
    ("Encounter", "status"): ("encounter-status", ENCOUNTER_STATUS),
    ("Encounter", "statusHistory", "status"): ("encounter-status", ENCOUNTER_STATUS),
    ("Encounter", "location", "status"): ("encounter-location-status",
                                          frozenset({"planned", "active", "reserved", "completed"})),
    ("Appointment", "status"): ("appointmentstatus", frozenset({
        "proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow",
        "entered-in-error", "checked-in", "waitlist"})),
    ("Appointment", "participant", "status"): ("participationstatus", frozenset({
        "accepted", "declined", "tentative", "needs-action"})),
    ("Appointment", "participant", "required"): ("participantrequired", frozenset({
        "required", "optional", "information-only"})),
    ("MedicationRequest", "status"): ("medicationrequest-status", frozenset({
        "active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"})),
    ("MedicationRequest", "intent"): ("medicationrequest-intent", frozenset({
        "proposal", "plan", "order", "original-order", "reflex-order", "filler-order", "instance-order",
        "option"})),
    ("MedicationRequest", "priority"): ("request-priority", frozenset({"routine", "urgent", "asap", "stat"})),
    ("MedicationDispense", "status"): ("medicationdispense-status", frozenset({
        "preparation", "in-progress", "cancelled", "on-hold", "completed", "entered-in-error", "stopped",
        "declined", "unknown"})),
    ("DocumentReference", "status"): ("document-reference-status", frozenset({
        "current", "superseded", "entered-in-error"})),
    ("DocumentReference", "docStatus"): ("composition-status", frozenset({
        "preliminary", "final", "amended", "entered-in-error"})),
    ("DocumentReference", "relatesTo", "code"): ("document-relationship-type", frozenset({
        "replaces", "transforms", "signs", "appends"})),
    ("Observation", "status"): ("observation-status", frozenset({
        "registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error",
        "unknown"})),
    ("DiagnosticReport", "status"): ("diagnostic-report-status", frozenset({
        "registered", "partial", "preliminary", "final", "amended", "corrected", "appended", "cancelled",
        "entered-in-error", "unknown"})),
    ("AllergyIntolerance", "type"): ("allergy-intolerance-type", frozenset({"allergy", "intolerance"})),
    ("AllergyIntolerance", "category"): ("allergy-intolerance-category", frozenset({
        "food", "medication", "environment", "biologic"})),
    ("AllergyIntolerance", "criticality"): ("allergy-intolerance-criticality", frozenset({
        "low", "high", "unable-to-assess"})),
    ("AllergyIntolerance", "reaction", "severity"): ("reaction-event-severity", frozenset({
        "mild", "moderate", "severe"})),
    ("Coverage", "status"): ("fm-status", frozenset({"active", "cancelled", "draft", "entered-in-error"})),
    ("Location", "status"): ("location-status", frozenset({"active", "suspended", "inactive"})),
    ("Location", "mode"): ("location-mode", frozenset({"instance", "kind"})),
    ("Bundle", "type"): ("bundle-type", frozenset({
        "document", "message", "transaction", "transaction-response", "batch", "batch-response", "history",
        "searchset", "collection"})),
    ("Bundle", "entry", "request", "method"): ("http-verb", frozenset({
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"})),
    ("Bundle", "entry", "search", "mode"): ("search-entry-mode", frozenset({"match", "include", "outcome"})),
}
"""(resource type, element path…) → (R4 value set name, its codes), for ``code`` elements."""

CONCEPTS: dict[tuple[str, ...], tuple[str, str, frozenset[str]]] = {
    ("AllergyIntolerance", "clinicalStatus"): (
        "allergyintolerance-clinical", "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
        frozenset({"active", "inactive", "resolved"})),
    ("AllergyIntolerance", "verificationStatus"): (
        "allergyintolerance-verification",
        "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
        frozenset({"unconfirmed", "confirmed", "refuted", "entered-in-error"})),
    ("Condition", "clinicalStatus"): (
        "condition-clinical", "http://terminology.hl7.org/CodeSystem/condition-clinical",
        frozenset({"active", "recurrence", "relapse", "inactive", "remission", "resolved"})),
    ("Condition", "verificationStatus"): (
        "condition-ver-status", "http://terminology.hl7.org/CodeSystem/condition-ver-status",
        frozenset({"unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"})),
}
"""Required CodeableConcept bindings: every coding must be from the value set's system and codes."""

DATATYPE_CODES: dict[tuple[str, str], tuple[str, frozenset[str]]] = {
    ("identifier", "use"): ("identifier-use", frozenset({"usual", "official", "temp", "secondary", "old"})),
    ("telecom", "system"): ("contact-point-system", frozenset({
        "phone", "fax", "email", "pager", "url", "sms", "other"})),
    ("telecom", "use"): ("contact-point-use", frozenset({"home", "work", "temp", "old", "mobile"})),
    ("name", "use"): ("name-use", frozenset({"usual", "official", "temp", "nickname", "anonymous", "old",
                                             "maiden"})),
    ("address", "use"): ("address-use", frozenset({"home", "work", "temp", "old", "billing"})),
    ("address", "type"): ("address-type", frozenset({"postal", "physical", "both"})),
    ("*", "comparator"): ("quantity-comparator", frozenset({"<", "<=", ">=", ">"})),
    ("text", "status"): ("narrative-status", frozenset({"generated", "extensions", "additional", "empty"})),
    ("repeat", "periodUnit"): ("units-of-time", frozenset({"s", "min", "h", "d", "wk", "mo", "a"})),
    ("repeat", "durationUnit"): ("units-of-time", frozenset({"s", "min", "h", "d", "wk", "mo", "a"})),
}
"""(element name, child) → value set, for data types wherever they appear (Identifier.use under any
``identifier``, ContactPoint under any ``telecom``, HumanName under ``name``, Quantity.comparator…)."""

ANY = frozenset({"*"})
TARGETS: dict[tuple[str, ...], frozenset[str]] = {
    ("Encounter", "subject"): frozenset({"Patient", "Group"}),
    ("Encounter", "participant", "individual"): frozenset({"Practitioner", "PractitionerRole", "RelatedPerson"}),
    ("Encounter", "appointment"): frozenset({"Appointment"}),
    ("Encounter", "location", "location"): frozenset({"Location"}),
    ("Encounter", "serviceProvider"): frozenset({"Organization"}),
    ("Encounter", "reasonReference"): frozenset({"Condition", "Procedure", "Observation", "ImmunizationRecommendation"}),
    ("Encounter", "diagnosis", "condition"): frozenset({"Condition", "Procedure"}),
    ("Appointment", "participant", "actor"): frozenset({
        "Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "Device", "HealthcareService", "Location"}),
    ("MedicationRequest", "medicationReference"): frozenset({"Medication"}),
    ("MedicationRequest", "subject"): frozenset({"Patient", "Group"}),
    ("MedicationRequest", "encounter"): frozenset({"Encounter"}),
    ("MedicationRequest", "requester"): frozenset({
        "Practitioner", "PractitionerRole", "Organization", "Patient", "RelatedPerson", "Device"}),
    ("MedicationRequest", "dispenseRequest", "performer"): frozenset({"Organization"}),
    ("MedicationDispense", "medicationReference"): frozenset({"Medication"}),
    ("MedicationDispense", "subject"): frozenset({"Patient", "Group"}),
    ("MedicationDispense", "performer", "actor"): frozenset({
        "Practitioner", "PractitionerRole", "Organization", "Patient", "Device", "RelatedPerson"}),
    ("MedicationDispense", "authorizingPrescription"): frozenset({"MedicationRequest"}),
    ("DocumentReference", "subject"): frozenset({"Patient", "Practitioner", "Group", "Device"}),
    ("DocumentReference", "author"): frozenset({
        "Practitioner", "PractitionerRole", "Organization", "Device", "Patient", "RelatedPerson"}),
    ("DocumentReference", "context", "encounter"): frozenset({"Encounter", "EpisodeOfCare"}),
    ("Observation", "subject"): frozenset({"Patient", "Group", "Device", "Location"}),
    ("Observation", "encounter"): frozenset({"Encounter"}),
    ("Observation", "performer"): frozenset({
        "Practitioner", "PractitionerRole", "Organization", "CareTeam", "Patient", "RelatedPerson"}),
    ("DiagnosticReport", "subject"): frozenset({"Patient", "Group", "Device", "Location"}),
    ("DiagnosticReport", "encounter"): frozenset({"Encounter"}),
    ("DiagnosticReport", "result"): frozenset({"Observation"}),
    ("DiagnosticReport", "performer"): frozenset({
        "Practitioner", "PractitionerRole", "Organization", "CareTeam"}),
    ("AllergyIntolerance", "patient"): frozenset({"Patient"}),
    ("AllergyIntolerance", "encounter"): frozenset({"Encounter"}),
    ("Condition", "subject"): frozenset({"Patient", "Group"}),
    ("Condition", "encounter"): frozenset({"Encounter"}),
    ("Coverage", "beneficiary"): frozenset({"Patient"}),
    ("Coverage", "subscriber"): frozenset({"Patient", "RelatedPerson"}),
    ("Coverage", "policyHolder"): frozenset({"Patient", "RelatedPerson", "Organization"}),
    ("Coverage", "payor"): frozenset({"Organization", "Patient", "RelatedPerson"}),
    ("Patient", "link", "other"): frozenset({"Patient", "RelatedPerson"}),
    ("Patient", "generalPractitioner"): frozenset({"Organization", "Practitioner", "PractitionerRole"}),
    ("Patient", "managingOrganization"): frozenset({"Organization"}),
    ("Location", "managingOrganization"): frozenset({"Organization"}),
    ("Organization", "partOf"): frozenset({"Organization"}),
}
"""Reference targets allowed by R4 for the references we write (the type must be one of them)."""

# Procedure, Account, EpisodeOfCare and the message envelope (MessageHeader, Provenance, Device).
_EVENT_STATUS = frozenset({"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed",
                           "entered-in-error", "unknown"})
_AGENTS = frozenset({"Practitioner", "PractitionerRole", "RelatedPerson", "Patient", "Device", "Organization"})
CODES.update({
    ("Procedure", "status"): ("event-status", _EVENT_STATUS),
    ("Account", "status"): ("account-status", frozenset({"active", "inactive", "entered-in-error", "on-hold",
                                                          "unknown"})),
    ("EpisodeOfCare", "status"): ("episode-of-care-status", frozenset({
        "planned", "waitlist", "active", "onhold", "finished", "cancelled", "entered-in-error"})),
    ("Device", "status"): ("device-status", frozenset({"active", "inactive", "entered-in-error", "unknown"})),
    ("Device", "deviceName", "type"): ("device-nametype", frozenset({
        "udi-label-name", "user-friendly-name", "patient-reported-name", "manufacturer-name", "model-name",
        "other"})),
    ("Provenance", "entity", "role"): ("provenance-entity-role", frozenset({
        "derivation", "revision", "quotation", "source", "removal"})),
    ("MessageHeader", "response", "code"): ("response-code", frozenset({"ok", "transient-error", "fatal-error"})),
})
TARGETS.update({
    ("Procedure", "subject"): frozenset({"Patient", "Group"}),
    ("Procedure", "encounter"): frozenset({"Encounter"}),
    ("Procedure", "performer", "actor"): _AGENTS,
    ("Procedure", "partOf"): frozenset({"Procedure", "Observation", "MedicationAdministration"}),
    ("Account", "subject"): frozenset({"Patient", "Device", "Practitioner", "PractitionerRole", "Location",
                                       "HealthcareService", "Organization"}),
    ("EpisodeOfCare", "patient"): frozenset({"Patient"}),
    ("MessageHeader", "sender"): frozenset({"Practitioner", "PractitionerRole", "Organization"}),
    ("MessageHeader", "enterer"): frozenset({"Practitioner", "PractitionerRole"}),
    ("MessageHeader", "destination", "target"): frozenset({"Device"}),
    ("MessageHeader", "destination", "receiver"): frozenset({"Practitioner", "PractitionerRole", "Organization"}),
    ("Provenance", "agent", "who"): _AGENTS,
    ("Provenance", "agent", "onBehalfOf"): _AGENTS,
    ("Device", "owner"): frozenset({"Organization"}),
})

_MIME = re.compile(r"^[\w.+-]+/[\w.+-]+(\s*;.*)?$")
_REF_TYPE = re.compile(r"^(?:[a-z]+://[^?]*/)?([A-Z][A-Za-z]+)(?:/|\?)")


def _at(node: Any, path: tuple[str, ...]) -> Iterator[Any]:
    """Every value at ``path`` below ``node`` (lists flattened at each step)."""
    if not path:
        yield from (node if isinstance(node, list) else [node])
        return
    for item in node if isinstance(node, list) else [node]:
        if isinstance(item, dict) and path[0] in item:
            yield from _at(item[path[0]], path[1:])


def _walk(node: Any, parent: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(element name, object) for every JSON object in a resource, contained resources included."""
    for item in node if isinstance(node, list) else [node]:
        if isinstance(item, dict):
            yield parent, item
            for key, value in item.items():
                yield from _walk(value, key)


def _reference_type(ref: dict[str, Any], index: dict[str, str]) -> str | None:
    """The resource type a Reference points at: its ``type``, the bundle entry of its fullUrl, or
    the ``Type/id``/``Type?search`` form of the reference itself."""
    if ref.get("type"):
        return str(ref["type"])
    text = str(ref.get("reference") or "")
    if text in index:
        return index[text]
    if text.startswith("#"):
        return index.get(text)
    match = _REF_TYPE.match(text)
    return match.group(1) if match else None


def violations(resource: dict[str, Any], index: dict[str, str] | None = None, *,
               targets: bool = True) -> list[str]:
    """Every required-binding problem in one resource (or Bundle): ``Type.path: 'code' not in <VS>``.

    ``index`` maps fullUrls (and ``#id`` of contained resources) to resource types, to check
    reference targets of references that do not state their type; ``targets=False`` checks codes only."""
    rtype = resource.get("resourceType", "")
    index = dict(index or {})
    for contained in resource.get("contained", []) or []:
        if isinstance(contained, dict) and contained.get("id"):
            index["#" + str(contained["id"])] = contained.get("resourceType", "")
    found: list[str] = []
    for (owner, *path), (name, codes) in CODES.items():
        if owner == rtype:
            found += [f"{rtype}.{'.'.join(path)}: {v!r} not in {VS}{name}"
                      for v in _at(resource, tuple(path)) if v not in codes]
    for (owner, *path), (name, system, codes) in CONCEPTS.items():
        if owner != rtype:
            continue
        for concept in _at(resource, tuple(path)):
            for coding in concept.get("coding", []) if isinstance(concept, dict) else []:
                if coding.get("system") != system or coding.get("code") not in codes:
                    found.append(f"{rtype}.{'.'.join(path)}: {coding.get('system')}|{coding.get('code')} "
                                 f"not in {VS}{name}")
    for parent, obj in _walk({k: v for k, v in resource.items() if k != "contained"}):
        for (element, child), (name, codes) in DATATYPE_CODES.items():
            if (element == parent or element == "*") and child in obj and isinstance(obj[child], str) \
                    and obj[child] not in codes:
                found.append(f"{rtype} {parent}.{child}: {obj[child]!r} not in {VS}{name}")
        if parent == "attachment" and "contentType" in obj and not _MIME.match(str(obj["contentType"])):
            found.append(f"{rtype} attachment.contentType: {obj['contentType']!r} is not a MIME type (BCP 13)")
    for (owner, *path), allowed in TARGETS.items():
        if owner != rtype or not targets:
            continue
        for ref in _at(resource, tuple(path)):
            target = _reference_type(ref, index) if isinstance(ref, dict) else None
            if target is not None and target not in allowed:
                found.append(f"{rtype}.{'.'.join(path)}: a reference to {target}, allowed "
                             f"{', '.join(sorted(allowed))}")
    for contained in resource.get("contained", []) or []:
        if isinstance(contained, dict):
            found += violations(contained, index, targets=targets)
    return found


def bundle_violations(bundle: dict[str, Any], *, targets: bool = True) -> list[str]:
    """Required-binding problems of a Bundle and of every resource in it (``targets=False``: codes
    only — the encoder's check, since a reference we keep verbatim from a FHIR sender is theirs)."""
    entries = [e for e in bundle.get("entry", []) if isinstance(e, dict)]
    index = {str(e["fullUrl"]): e["resource"].get("resourceType", "")
             for e in entries if e.get("fullUrl") and isinstance(e.get("resource"), dict)}
    found = violations({k: v for k, v in bundle.items() if k != "entry"} | {
        "entry": [{k: v for k, v in e.items() if k != "resource"} for e in entries]}, index, targets=targets)
    for entry in entries:
        if isinstance(entry.get("resource"), dict):
            found += violations(entry["resource"], index, targets=targets)
    return found

# ChargeItem (HL7v2 FT1) and MessageHeader.responsible (HL7v2 MSH-22).
CODES.update({
    ("Linkage", "item", "type"): ("linkage-type", frozenset({"source", "alternate", "historical"})),
    ("ChargeItem", "status"): ("chargeitem-status", frozenset({
        "planned", "billable", "not-billable", "aborted", "billed", "entered-in-error", "unknown"})),
})
TARGETS.update({
    ("ChargeItem", "subject"): frozenset({"Patient", "Group"}),
    ("ChargeItem", "context"): frozenset({"Encounter", "EpisodeOfCare"}),
    ("ChargeItem", "performer", "actor"): frozenset({"Practitioner", "PractitionerRole", "Organization",
                                                     "CareTeam", "Patient", "Device", "RelatedPerson"}),
    ("ChargeItem", "enterer"): frozenset({"Practitioner", "PractitionerRole", "Organization", "Patient",
                                          "Device", "RelatedPerson"}),
    ("ChargeItem", "costCenter"): frozenset({"Organization"}),
    ("ChargeItem", "performingOrganization"): frozenset({"Organization"}),
    ("ChargeItem", "requestingOrganization"): frozenset({"Organization"}),
    ("ChargeItem", "account"): frozenset({"Account"}),
    ("ChargeItem", "service"): frozenset({"DiagnosticReport", "ImagingStudy", "Immunization",
                                          "MedicationAdministration", "MedicationDispense", "Observation",
                                          "Procedure", "SupplyDelivery"}),
    ("MessageHeader", "responsible"): frozenset({"Practitioner", "PractitionerRole", "Organization"}),
})
