"""ChargeItem records as FHIR R4 ChargeItem resources, and back.

FHIR requires the status (chargeitem-status, a required binding), the code and the subject. The
price is the charge's own (``priceOverride``: what the sender billed, not a catalogue price), the
department a cost center, and the performing and ordering facilities are Organization entries
(conditional creates on their identifier or a derived key, like every Organization we write). A
charge without an identifier a server could match (an FT1-2 transaction id names no system) gets
one derived from the patient, visit, code, date and transaction id (``…/sid/charge-item-key``), so
a re-sent message updates the resource it created.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from bridge import CHARGE_ITEM_STATUSES, Account, ChargeItem, Encounter, EncodeError, Patient, Practitioner, Procedure
from bridge import keys_of

from . import constants as C
from .datatypes import compact, fhir_datetime
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

SID_CHARGE_ITEM_KEY = f"{C.BASE}/sid/charge-item-key"


def charge_item_out(rec: ChargeItem, w: Writer) -> dict[str, Any]:
    _required(rec)
    occurred = fhir_datetime(rec.occurred, "ChargeItem.occurred", w.options)
    keyed = rec if any(i.system for i in rec.identifiers) else dataclasses.replace(rec, identifiers=[])
    key = derived_key(SID_CHARGE_ITEM_KEY, keyed, keys_of([rec.encounter]).encounter_id if rec.encounter else None,
                      rec.code.system if rec.code else None, rec.code.code if rec.code else None, occurred,
                      rec.identifiers[0].value if rec.identifiers else None)
    return compact({
        "resourceType": "ChargeItem",
        "extension": common_extensions(rec),
        "identifier": absolute_identifiers(rec, key),
        "status": rec.status,
        "code": coded_out(rec.code),
        "subject": w.ref(rec.patient),
        "context": w.ref(rec.encounter) if rec.encounter else None,
        "occurrenceDateTime": occurred,
        "performer": [{"actor": w.ref(rec.performer)}] if rec.performer else [],
        "performingOrganization": w.ref(rec.performing_organization) if rec.performing_organization else None,
        "requestingOrganization": w.ref(rec.requesting_organization) if rec.requesting_organization else None,
        "costCenter": w.ref(rec.cost_center) if rec.cost_center else None,
        "quantity": {"value": rec.quantity} if rec.quantity is not None else None,
        "priceOverride": compact({"value": rec.amount, "currency": rec.currency}) if rec.amount is not None else None,
        "enteredDate": fhir_datetime(rec.entered, "ChargeItem.entered", w.options),
        "enterer": w.ref(rec.enterer) if rec.enterer else None,
        "reason": [c for c in (coded_out(r) for r in rec.reason) if c],
        "account": [w.ref(rec.account)] if rec.account else [],
        "productCodeableConcept": coded_out(rec.product),
        "service": [w.ref(rec.service)] if rec.service else [],
    })


def _required(rec: ChargeItem) -> None:
    if rec.patient is None:
        raise EncodeError("ChargeItem.patient is required by FHIR (ChargeItem.subject)")
    if rec.status is None:
        raise EncodeError(f"ChargeItem.status is required by FHIR (one of {', '.join(CHARGE_ITEM_STATUSES)})")
    if rec.code is None:
        raise EncodeError("ChargeItem.code is required by FHIR")


def charge_item_in(node: Node, r: Reader) -> ChargeItem:
    from .places import follow_organization

    found, identifiers = split_identifiers(node, C.SID_RECORD_ID, SID_CHARGE_ITEM_KEY)
    price = node.obj("priceOverride")
    quantity = node.obj("quantity")
    performer = next((who for who in (r.follow(p.obj("actor"), Practitioner) for p in node.list("performer"))
                      if who is not None), None)
    return ChargeItem(
        id=record_id(node, found), identifiers=identifiers,
        status=choice(node.str("status"), CHARGE_ITEM_STATUSES, node.at("status")),
        code=coded_in(node.obj("code")),
        quantity=_number(quantity.data.get("value")) if quantity is not None else None,
        amount=_number(price.data.get("value")) if price is not None else None,
        currency=price.str("currency") if price is not None else None,
        occurred=node.datetime("occurrenceDateTime"), entered=node.datetime("enteredDate"),
        reason=[c for c in (coded_in(n) for n in node.list("reason")) if c],
        performer=performer, enterer=r.follow(node.obj("enterer"), Practitioner),
        cost_center=follow_organization(r, node.obj("costCenter")),
        performing_organization=follow_organization(r, node.obj("performingOrganization")),
        requesting_organization=follow_organization(r, node.obj("requestingOrganization")),
        product=coded_in(node.obj("productCodeableConcept")),
        service=next((p for p in (r.follow(ref, Procedure) for ref in node.list("service")) if p), None),
        account=next((a for a in (r.follow(ref, Account) for ref in node.list("account")) if a), None),
        patient=r.follow(node.obj("subject"), Patient), encounter=r.follow(node.obj("context"), Encounter),
        extra=record_extra_in(node),
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
