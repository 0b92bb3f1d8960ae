"""Specimen records as FHIR R4 Specimen resources, and back; DiagnosticReport.specimen references them.

HL7v2 specimen ids (SPM-2) rarely carry a system, so a Specimen without an id or an identifier with a
system gets a derived key (``…/sid/specimen-key``: the patient, the sender's ids, the type and the
collection start), and a re-sent or corrected report updates the one Specimen it created.

A parent specimen (HL7v2 SPM-3) is named by its ids alone: it is written as a conditional create
(``ifNoneExist`` on its derived key), so it exists to be referenced by ``Specimen.parent`` but never
overwrites what a server already holds of it.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from bridge import EncodeError, Patient, Practitioner, Specimen, keys_of

from . import constants as C
from .datatypes import compact, fhir_datetime, period_in, period_out
from .reader import Node
from .resources import (
    absolute_identifiers,
    coded_in,
    coded_out,
    common_extensions,
    record_extra_in,
    record_id,
    split_identifiers,
)
from .results import quantity_in, quantity_out

if TYPE_CHECKING:
    from .decode import Reader
    from .encode import Writer


def specimen_key(rec: Specimen) -> dict[str, str] | None:
    if rec.id or any(i.system for i in rec.identifiers) or rec.patient is None:
        return None
    patient = keys_of([rec.patient]).patient_id
    parts = [",".join(i.value for i in rec.identifiers), rec.specimen_type.code if rec.specimen_type else "",
             rec.collected.start if rec.collected and rec.collected.start else ""]
    if not patient or not any(parts):
        return None
    seed = "|".join([patient, *parts])
    return {"system": C.SID_SPECIMEN_KEY, "value": str(uuid.uuid5(uuid.NAMESPACE_URL, C.SID_SPECIMEN_KEY + "#" + seed))}


def specimen_out(rec: Specimen, w: Writer) -> dict[str, Any]:
    if rec.patient is None and not rec.identifiers and not rec.id:
        raise EncodeError("Specimen needs a patient or an identifier: nothing would say whose sample it is")
    collected = rec.collected
    single = collected is not None and collected.start and (not collected.end or collected.end == collected.start)
    collection = compact({
        "collectedDateTime": fhir_datetime(collected.start, "Specimen.collected", w.options) if single else None,
        "collectedPeriod": period_out(collected, "Specimen.collected", w.options) if collected and not single else None,
        "collector": w.ref(rec.collector) if rec.collector else None,
        "quantity": quantity_out(rec.quantity, True),
        "method": coded_out(rec.collection_method),
        "bodySite": coded_out(rec.body_site),
    })
    return compact({
        "resourceType": "Specimen",
        "extension": common_extensions(rec),
        "identifier": absolute_identifiers(rec, specimen_key(rec)),
        "type": coded_out(rec.specimen_type),
        "subject": w.ref(rec.patient) if rec.patient else None,
        "receivedTime": fhir_datetime(rec.received, "Specimen.received", w.options),
        "collection": collection or None,
        "parent": [parent_ref(parent, w) for parent in rec.parents],
    })


def parent_ref(parent: Specimen, w: Writer) -> dict[str, str]:
    """The specimen this one came from: added through the Writer as any Specimen, then its entry
    turned into a create-if-absent, since the message knows no more of it than its ids."""
    full_url = w.add(parent)
    entry = w.entries[full_url]
    request = entry.get("request")
    if request is not None and request.get("method") == "PUT" and "?" in request.get("url", ""):
        entry["request"] = {"method": "POST", "url": "Specimen", "ifNoneExist": request["url"].split("?", 1)[1]}
    return {"reference": full_url}


def specimen_in(node: Node, r: Reader) -> Specimen:
    from bridge import Period

    found, identifiers = split_identifiers(node, C.SID_RECORD_ID, C.SID_SPECIMEN_KEY)
    collection = node.obj("collection")
    collected = None
    if collection is not None:
        at = collection.datetime("collectedDateTime")
        collected = Period(start=at) if at else period_in(collection.obj("collectedPeriod"))
    return Specimen(
        id=record_id(node, found), identifiers=identifiers, specimen_type=coded_in(node.obj("type")),
        body_site=coded_in(collection.obj("bodySite")) if collection is not None else None,
        collection_method=coded_in(collection.obj("method")) if collection is not None else None,
        quantity=quantity_in(collection.obj("quantity")) if collection is not None else None,
        collector=r.follow(collection.obj("collector"), Practitioner) if collection is not None else None,
        collected=collected, received=node.datetime("receivedTime"),
        patient=r.follow(node.obj("subject"), Patient),
        parents=[p for p in (r.follow(ref, Specimen) for ref in node.list("parent")) if p is not None],
        extra=record_extra_in(node))
