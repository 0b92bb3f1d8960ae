"""ServiceRequest records as FHIR R4 ServiceRequest resources, and back.

status, intent and priority have required bindings: the record holds their R4 codes, and a record
without a status is written ``unknown``, without an intent ``order`` (both in their value sets,
neither a claim the record did not make beyond "an order"). The category is a SNOMED CT code of
R4's example binding; the specimens an order needs are contained Specimen resources (they have no
identity of their own a server could match). The mapping is in ``docs/fhir.md``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from bridge import (
    REQUEST_INTENTS,
    REQUEST_PRIORITIES,
    SERVICE_REQUEST_STATUSES,
    Coding,
    EncodeError,
    Encounter,
    Identifier,
    Patient,
    Practitioner,
    ServiceRequest,
)

from . import constants as C
from .datatypes import compact, ext, ext_value, fhir_datetime, identifier_in, identifier_out, period_in, period_out
from .reader import Node
from .resources import (
    absolute_identifiers,
    choice,
    coded_in,
    coded_out,
    common_extensions,
    derived_key,
    record_extra_in,
    record_id,
    split_identifiers,
)

if TYPE_CHECKING:
    from .decode import Reader
    from .encode import Writer

SNOMED = "http://snomed.info/sct"
CATEGORY_CODES = {"laboratory": ("108252007", "Laboratory procedure"), "imaging": ("363679005", "Imaging"),
                  "referral": ("3457005", "Patient referral")}
"""ServiceRequest.category (SNOMED CT, R4's example value set plus 3457005 for referrals)."""
CATEGORY_BY_CODE = {code: name for name, (code, _) in CATEGORY_CODES.items()}
SID_SERVICE_REQUEST_KEY = f"{C.BASE}/sid/service-request-key"
"""A ServiceRequest without an identifier (a service an HL7v2 SIU books, AIS, names no order
number): uuid5 of the patient's key, its codes and its start, so a re-delivered message updates
the request it created instead of adding one."""


def concept_out(codings: list[Coding]) -> dict[str, Any] | None:
    """One CodeableConcept of several codings, each system an absolute URI (HL7 tables as
    ``…/v2-nnnn``, a sender's names under ``…/v2-local/``), undone by :func:`concept_in`; a
    code-less coding is the concept's text."""
    coded = [coded_out(c)["coding"][0] for c in codings if c.code]  # type: ignore[index]
    texts = [c.display for c in codings if not c.code and c.display]
    return compact({"coding": coded, "text": texts[0] if texts else None}) or None


def concept_in(node: Node | None) -> list[Coding]:
    if node is None:
        return []
    found = [coded_in(Node({"coding": [c.data]}, c.path)) for c in node.list("coding")]
    codings = [c for c in found if c is not None]
    text = node.str("text")
    if text and not any(c.display == text for c in codings):
        codings.append(Coding(code="", display=text))
    return codings


def service_request_key(rec: ServiceRequest) -> dict[str, str] | None:
    """The derived key (SID_SERVICE_REQUEST_KEY) of a request without identifiers, or of a filler's
    view of an order without its filler number (its placer number names the placer's own request,
    which must not be overwritten: see :func:`filler_order_key`)."""
    filler = bool(rec.filler_view) or rec.intent == "filler-order"
    if filler and any(i.type == "FILL" for i in rec.identifiers) or not filler and rec.identifiers:
        return None
    codes = ",".join(f"{c.system or ''}|{c.code}" for c in rec.code if c.code)
    placers = ",".join(i.value for i in rec.identifiers)
    return derived_key(SID_SERVICE_REQUEST_KEY, dataclasses.replace(rec, identifiers=[]), codes,
                       rec.occurrence.start if rec.occurrence else None, placers)


def is_filler_view(resource: dict[str, Any]) -> bool:
    """A ServiceRequest that is the order's filler's view of it (the ``filler-view`` extension, or a
    ``filler-order`` intent): keyed by its filler number, apart from the placer's own request."""
    return resource.get("intent") == "filler-order" or any(
        e.get("url") == C.EXT_FILLER_VIEW and e.get("valueBoolean") for e in resource.get("extension", []))


def filler_order_key(resource: dict[str, Any]) -> tuple[str, str] | None:
    """(search parameter, token) of a filler-order (an HL7v2 result's or schedule's view of an
    order): its filler number (FILL), else its derived key, never the placer number, which keys
    the placer's own ServiceRequest (intent ``order``) that a conditional update would overwrite."""
    from .encode import search_value

    idents = [i for i in resource.get("identifier", []) if i.get("value")]
    for ident in idents:
        if any(c.get("code") == "FILL" for c in (ident.get("type") or {}).get("coding", [])):
            return "identifier", search_value(ident.get("system"), ident["value"])
    derived = next((i for i in idents if i.get("system") == SID_SERVICE_REQUEST_KEY), None)
    return ("identifier", search_value(derived["system"], derived["value"])) if derived else None


def service_request_out(rec: ServiceRequest, w: Writer) -> dict[str, Any]:
    if rec.patient is None:
        raise EncodeError("ServiceRequest.patient is required by FHIR (ServiceRequest.subject)")
    subject = w.ref(rec.patient)
    contained = [compact({"resourceType": "Specimen", "id": f"specimen{n}", "type": concept_out([coding]),
                          "subject": subject}) for n, coding in enumerate(rec.specimen_types, start=1)]
    category = CATEGORY_CODES.get(rec.category or "")
    return compact({
        "resourceType": "ServiceRequest",
        "contained": contained,
        "extension": common_extensions(rec, ext(C.EXT_FILLER_VIEW, "Boolean", rec.filler_view)),
        "identifier": absolute_identifiers(rec, service_request_key(rec)),
        "status": rec.status or "unknown",
        "intent": rec.intent or "order",
        "category": ([{"coding": [{"system": SNOMED, "code": category[0], "display": category[1]}]}]
                     if category else []) + [c for c in [coded_out(rec.referral_type)] if c],
        "priority": rec.priority,
        "code": concept_out(rec.code),
        "subject": subject,
        "encounter": w.ref(rec.encounter) if rec.encounter else None,
        "occurrencePeriod": period_out(rec.occurrence, "ServiceRequest.occurrence", w.options),
        "authoredOn": fhir_datetime(rec.authored, "ServiceRequest.authored", w.options),
        "requester": w.ref(rec.requester) if rec.requester else None,
        "performer": [w.ref(p) for p in rec.performers],
        "reasonCode": [c for c in (concept_out([r]) for r in rec.reason) if c],
        "specimen": [{"reference": f"#{s['id']}"} for s in contained],
        "note": [{"text": n} for n in rec.notes],
        "basedOn": [parent_ref(rec.parent_order, subject, w)] if rec.parent_order else [],
    })


def parent_ref(parent: list[Identifier], subject: dict[str, str], w: Writer) -> dict[str, Any]:
    """The parent order (HL7v2 ORC-8/OBR-29), named by its numbers alone: a ServiceRequest of those
    identifiers, status ``unknown`` (the message says none) and the patient, created only if absent
    so it never overwrites the full order a server holds; a logical reference when no number could
    key it."""
    from .encode import business_key
    from .create_once import created_once

    idents = [identifier_out(i) for i in parent]
    resource = {"resourceType": "ServiceRequest", "identifier": idents, "status": "unknown", "intent": "order",
                "subject": subject}
    if business_key(resource) is None:
        return {"identifier": idents[0]}
    return created_once(w, resource)


def parent_in(node: Node, r: Reader) -> list[Identifier]:
    """basedOn: a logical reference's identifier, or the referenced ServiceRequest's identifiers."""
    for ref in node.list("basedOn"):
        logical = ref.obj("identifier")
        if logical is not None:
            return [identifier_in(logical)]
        target = r.target(ref, r.stack[-1] if r.stack else None)
        if target is not None and target.str("resourceType") == "ServiceRequest":
            r.referenced.add(id(target.data))  # the parent named here, not a record of its own
            return [identifier_in(i) for i in target.list("identifier")]
    return []


def service_request_in(node: Node, r: Reader) -> ServiceRequest:
    found, identifiers = split_identifiers(node, C.SID_RECORD_ID, SID_SERVICE_REQUEST_KEY)
    category, kinds = None, []
    for concept in node.list("category"):
        for coding in concept.list("coding"):
            if coding.str("system") == SNOMED:
                category = category or CATEGORY_BY_CODE.get(coding.str("code") or "")
        if not any(c.str("system") == SNOMED for c in concept.list("coding")):
            kinds.append(concept)
    # A referral's other category is its kind (RF1-3); another order's is not read (as before).
    referral_type = coded_in(kinds[0]) if category == "referral" and kinds else None
    specimens = {f"#{c.str('id')}": c for c in node.list("contained") if c.str("resourceType") == "Specimen"}
    specimen_types = []
    for ref in node.list("specimen"):
        target = specimens.get(ref.str("reference") or "")
        if target is not None:
            specimen_types += concept_in(target.obj("type"))
    return ServiceRequest(
        id=record_id(node, found), identifiers=identifiers,
        status=choice(node.str("status"), SERVICE_REQUEST_STATUSES, node.at("status")),
        intent=choice(node.str("intent"), REQUEST_INTENTS, node.at("intent")),
        category=category,
        priority=choice(node.str("priority"), REQUEST_PRIORITIES, node.at("priority")),
        code=concept_in(node.obj("code")),
        referral_type=referral_type,
        occurrence=period_in(node.obj("occurrencePeriod")),
        authored=node.datetime("authoredOn"),
        requester=r.follow(node.obj("requester"), Practitioner),
        performers=[p for p in (r.follow(n, Practitioner) for n in node.list("performer")) if p],
        reason=[c for n in node.list("reasonCode") for c in concept_in(n)],
        specimen_types=specimen_types,
        notes=[t for t in (n.str("text") for n in node.list("note")) if t],
        patient=r.follow(node.obj("subject"), Patient),
        encounter=r.follow(node.obj("encounter"), Encounter),
        extra=record_extra_in(node),
        parent_order=parent_in(node, r),
        filler_view=ext_value(node, C.EXT_FILLER_VIEW, "Boolean"),
    )
