"""Observation and DiagnosticReport records as FHIR R4 resources, and back.

A report's observations are entries of their own, referenced from ``DiagnosticReport.result``.
Two things make them deliverable: an observation without its own patient or encounter takes the
report's (``subject`` is what an EHR files a result under), and one without an identifier a server
can search gets a key derived from the report's identifier, its code and its place among results
of that code (system ``…/sid/result-key``), so a re-delivered or corrected report updates the same
Observations instead of adding copies. Both are undone on decode, so a round trip gives the records
back unchanged. The mapping tables are in ``docs/fhir.md``.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import TYPE_CHECKING, Any

from bridge import (
    OBSERVATION_CATEGORIES,
    OBSERVATION_STATUSES,
    REPORT_STATUSES,
    COMPARATORS,
    Coding,
    DiagnosticReport,
    EncodeError,
    Encounter,
    Identifier,
    Observation,
    Patient,
    Practitioner,
    Specimen,
    Quantity,
    Range,
    Ratio,
    ReferenceRange,
)

from . import constants as C
from . import keep
from .equipment import device_ref, equipment_in
from .datatypes import code_out, coding_in, coding_out, compact, ext, ext_value, fhir_datetime, identifier_in
from .reader import Node
from .systems import system_name, system_uri

if TYPE_CHECKING:
    from .decode import Reader
    from .encode import Writer

RESULT_KEY_NAMESPACE = uuid.UUID("0b6f3d1e-93a4-5c57-8e0e-5a1c2b7d9e44")
"""uuid5 namespace of derived result keys (a fixed random value: changing it re-keys every result)."""
NO_CODE = "no code sent"
"""The text of ``code`` for a result or report whose sender gave no code (an HL7v2 OBX with an empty
OBX-3, seen in narrative reports): FHIR requires a code, and saying so is better than inventing one."""


# --- codes -------------------------------------------------------------------------------------


def concept_out(codings: list[Coding]) -> dict[str, Any] | None:
    """A CodeableConcept; a code-less coding (text only) becomes the concept's text."""
    coded = [coding_out(c) for c in codings if c.code]
    texts = [c.display for c in codings if not c.code and c.display]
    return compact({"coding": coded, "text": texts[0] if texts else None}) or None


def concept_in(node: Node | None) -> list[Coding]:
    if node is None or (node.data == {"text": NO_CODE}):
        return []
    codings = [coding_in(c) for c in node.list("coding")]
    text = node.str("text")
    if text and not any(c.display == text for c in codings):
        codings.append(Coding(code="", display=text))
    return codings


# --- quantities --------------------------------------------------------------------------------


def quantity_out(q: Quantity | None, simple: bool = False) -> dict[str, Any] | None:
    """A Quantity; its unit code only with its system (FHIR qty-3). A SimpleQuantity (range bounds)
    has no comparator. The value is written as a decimal, as it is read back, so a second encode
    gives the same bytes."""
    if q is None:
        return None
    return compact({"value": float(q.value), "comparator": None if simple else q.comparator, "unit": q.unit,
                    "system": system_uri(q.system) if q.code else None, "code": q.code if q.system else None})


def quantity_in(node: Node | None) -> Quantity | None:
    if node is None or node.num("value") is None:
        return None
    comparator = node.str("comparator")
    return Quantity(value=node.num("value"), unit=node.str("unit"), code=node.str("code"),  # type: ignore[arg-type]
                    system=system_name(node.str("system")),
                    comparator=comparator if comparator in COMPARATORS else None)


def range_out(low: Quantity | None, high: Quantity | None) -> dict[str, Any] | None:
    return compact({"low": quantity_out(low, True), "high": quantity_out(high, True)}) or None


def reference_range_out(rr: ReferenceRange | None) -> list[dict[str, Any]]:
    if rr is None:
        return []
    found = compact({"low": quantity_out(rr.low, True), "high": quantity_out(rr.high, True), "text": rr.text})
    return [found] if found else []


def reference_range_in(node: Node) -> ReferenceRange | None:
    for item in node.list("referenceRange"):
        return ReferenceRange(low=quantity_in(item.obj("low")), high=quantity_in(item.obj("high")),
                              text=item.str("text"))
    return None


# --- Observation -------------------------------------------------------------------------------


def observation_out(rec: Observation, w: Writer) -> dict[str, Any]:
    from .resources import common_extensions, identifiers_out

    units_ext = {"url": C.EXT_OBSERVATION_UNITS, "valueCoding": coding_out(rec.units)} if rec.units else None
    return compact({
        "resourceType": "Observation",
        "extension": common_extensions(rec, ext(C.EXT_VALUE_TYPE, "Code", rec.value_type), units_ext),
        "identifier": identifiers_out(rec),
        "status": rec.status or "unknown",
        "category": [{"coding": [{"system": C.OBSERVATION_CATEGORY, "code": rec.category}]}]
        if rec.category else [],
        "code": concept_out(rec.code) or {"text": NO_CODE},
        "subject": w.ref(rec.patient) if rec.patient else None,
        "encounter": w.ref(rec.encounter) if rec.encounter else None,
        "effectiveDateTime": fhir_datetime(rec.effective, "Observation.effective", w.options),
        "performer": [w.ref(p) for p in (rec.performer, rec.performing_organization) if p is not None],
        **value_out(rec, w),
        "device": device_ref(rec.equipment, w),
        "interpretation": [{"coding": [coding_out(c)]} for c in rec.interpretation],
        "note": [{"text": n} for n in rec.notes],
        "referenceRange": reference_range_out(rec.reference_range),
    })


def value_out(rec: Observation, w: Writer) -> dict[str, Any]:
    """The one value[x] the record carries."""
    if rec.value_quantity is not None:
        return {"valueQuantity": quantity_out(rec.value_quantity)}
    if rec.value_codings:
        return {"valueCodeableConcept": concept_out(rec.value_codings)}
    if rec.value_text is not None:
        return {"valueString": rec.value_text}
    if rec.value_datetime is not None:
        return {"valueDateTime": fhir_datetime(rec.value_datetime, "Observation.value_datetime", w.options)}
    if rec.value_range is not None:
        return {"valueRange": range_out(rec.value_range.low, rec.value_range.high) or {}}
    if rec.value_ratio is not None:
        return {"valueRatio": compact({"numerator": quantity_out(rec.value_ratio.numerator),
                                       "denominator": quantity_out(rec.value_ratio.denominator)})}
    return {}


def observation_in(node: Node, r: Reader) -> Observation:
    from .places import follow_organization

    from .resources import category_in, choice, record_extra_in, record_id

    found, identifiers = split_result_ids(node)
    category = category_in(node, C.OBSERVATION_CATEGORY, OBSERVATION_CATEGORIES)
    status = node.str("status")
    units = next((coding_in(e.obj("valueCoding")) for e in node.list("extension")  # type: ignore[arg-type]
                  if e.str("url") == C.EXT_OBSERVATION_UNITS and e.obj("valueCoding")), None)
    obs = Observation(
        id=record_id(node, found), identifiers=identifiers,
        status=choice(None if status == "unknown" else status, OBSERVATION_STATUSES, node.at("status")),
        category=category, code=concept_in(node.obj("code")),
        value_type=ext_value(node, C.EXT_VALUE_TYPE, "Code"), units=units,
        reference_range=reference_range_in(node),
        interpretation=[c for i in node.list("interpretation") for c in concept_in(i)],
        effective=node.datetime("effectiveDateTime"),
        performer=next((p for p in (r.follow(ref, Practitioner) for ref in node.list("performer")) if p), None),
        performing_organization=next((o for o in (follow_organization(r, ref) for ref in node.list("performer"))
                                      if o), None),
        notes=[n.str("text") or "" for n in node.list("note")],
        patient=r.follow(node.obj("subject"), Patient), encounter=r.follow(node.obj("encounter"), Encounter),
        equipment=equipment_in(node.obj("device"), r), extra=record_extra_in(node))
    value_in(obs, node)
    return obs


def value_in(obs: Observation, node: Node) -> None:
    obs.value_quantity = quantity_in(node.obj("valueQuantity"))
    obs.value_codings = concept_in(node.obj("valueCodeableConcept"))
    obs.value_text = node.str("valueString")
    obs.value_datetime = node.datetime("valueDateTime")
    span = node.obj("valueRange")
    if span is not None:
        obs.value_range = Range(low=quantity_in(span.obj("low")), high=quantity_in(span.obj("high")))
    ratio = node.obj("valueRatio")
    if ratio is not None:
        obs.value_ratio = Ratio(numerator=quantity_in(ratio.obj("numerator")),
                                denominator=quantity_in(ratio.obj("denominator")))


def split_result_ids(node: Node) -> tuple[dict[str, str], list[Identifier]]:
    """Our record id apart; a derived result key is dropped (the report gives it again)."""
    found: dict[str, str] = {}
    rest = []
    for item in node.list("identifier"):
        system = item.str("system")
        if system == C.SID_RECORD_ID and "id" not in found and item.str("value"):
            found[C.SID_RECORD_ID] = item.str("value")  # type: ignore[assignment]
        elif system != C.SID_RESULT_KEY:
            rest.append(identifier_in(item))
    return found, rest


# --- DiagnosticReport --------------------------------------------------------------------------


def report_key(rec: DiagnosticReport) -> Identifier | None:
    """The identifier results are keyed under: the filler's (the lab's) number, else the placer's."""
    for wanted in ("FILL", "PLAC", None):
        for ident in rec.identifiers:
            if ident.value and (wanted is None or ident.type == wanted):
                return ident
    return None


def in_context(rec: DiagnosticReport, obs: Observation, seen: dict[str, int]) -> Observation:
    """The observation as delivered: the report's patient and encounter when it has none, and a
    derived key when it has no identifier a server could search."""
    changes: dict[str, Any] = {}
    if obs.patient is None and rec.patient is not None:
        changes["patient"] = rec.patient
    if obs.encounter is None and rec.encounter is not None:
        changes["encounter"] = rec.encounter
    key = report_key(rec)
    if key is not None and not obs.id and not any(i.system and i.value for i in obs.identifiers):
        code = next((c for c in obs.code if c.code), None)
        label = f"{code.system}|{code.code}" if code else ""
        seen[label] = seen.get(label, 0) + 1
        seed = "\n".join([key.system or "", key.value, label, str(seen[label])])
        derived = Identifier(value=str(uuid.uuid5(RESULT_KEY_NAMESPACE, seed)), system=C.SID_RESULT_KEY)
        changes["identifiers"] = [*obs.identifiers, derived]
    return dataclasses.replace(obs, **changes) if changes else obs


def report_out(rec: DiagnosticReport, w: Writer) -> dict[str, Any]:
    from .resources import common_extensions, identifiers_out

    seen: dict[str, int] = {}
    issued, issued_ext = None, None
    if rec.issued and "T" in rec.issued:
        issued = fhir_datetime(rec.issued, "DiagnosticReport.issued", w.options, instant=True)
    elif rec.issued:  # a date without a time cannot be an instant: kept, not padded with a guess
        issued_ext = ext(C.EXT_ISSUED_DATE, "DateTime", rec.issued)
    return compact({
        "resourceType": "DiagnosticReport",
        "extension": common_extensions(rec, issued_ext),
        "identifier": identifiers_out(rec),
        "status": rec.status or "unknown",
        "category": [{"coding": [coding_out(rec.category)]}] if rec.category else [],
        "code": concept_out(rec.code) or {"text": NO_CODE},
        "subject": w.ref(rec.patient) if rec.patient else None,
        "encounter": w.ref(rec.encounter) if rec.encounter else None,
        "effectiveDateTime": fhir_datetime(rec.effective, "DiagnosticReport.effective", w.options),
        "issued": issued,
        "result": [w.ref(in_context(rec, obs, seen)) for obs in rec.observations],
        "specimen": [w.ref(sample) for sample in rec.specimens],
    })


def report_in(node: Node, r: Reader) -> DiagnosticReport:
    from .resources import choice, record_extra_in, record_id, split_identifiers

    found, identifiers = split_identifiers(node, C.SID_RECORD_ID)
    status = node.str("status")
    categories = [coding_in(c) for concept in node.list("category") for c in concept.list("coding")]
    report = DiagnosticReport(
        id=record_id(node, found), identifiers=identifiers,
        status=choice(None if status == "unknown" else status, REPORT_STATUSES, node.at("status")),
        category=categories[0] if categories else None, code=concept_in(node.obj("code")),
        effective=node.datetime("effectiveDateTime"),
        issued=node.datetime("issued") or ext_value(node, C.EXT_ISSUED_DATE, "DateTime"),
        patient=r.follow(node.obj("subject"), Patient), encounter=r.follow(node.obj("encounter"), Encounter),
        extra=record_extra_in(node))
    pairs = [(ref, r.follow(ref, Observation)) for ref in node.list("result")]
    report.observations = [obs for _, obs in pairs if obs is not None]
    report.specimens = [s for s in (r.follow(ref, Specimen) for ref in node.list("specimen")) if s is not None]
    seen: dict[str, int] = {}
    for ref, obs in pairs:
        if obs is not None:
            detach(report, obs, r.target(ref), r, seen)
    return report


def detach(report: DiagnosticReport, obs: Observation, node: Node | None, r: Reader,
           seen: dict[str, int]) -> None:
    """Undo what :func:`in_context` added, and keep in ``extra["fhir"]`` only what the observation's
    resource holds beyond its encoding *in this report*."""
    from .encode import Writer

    if obs.patient is report.patient:
        obs.patient = None
    if obs.encounter is report.encounter:
        obs.encounter = None
    if node is None:
        return
    obs.extra.pop(keep.FHIR, None)
    try:
        generated = Writer(r.options).body(in_context(report, obs, seen))
    except EncodeError:
        generated = {}
    kept = keep.remember(node.data, generated)
    if kept:
        obs.extra[keep.FHIR] = kept
