"""FT1 financial transactions of type charge as ChargeItem records (every message type).

=======  ======================================  =============================================
Field    Record                                  Notes
=======  ======================================  =============================================
FT1-2    ``ChargeItem.identifiers[0]``           transaction id
FT1-4    ``occurred``                            transaction date (DR: its start)
FT1-5    ``entered``                             posting date
FT1-6    (which FT1 are read)                    ``CG`` charge, or empty; payments (``PY``),
                                                 adjustments (``AJ``) and credits (``CD``) move
                                                 money, they are not charge items: left kept
FT1-7    ``code``                                transaction code (CWE)
FT1-10   ``quantity``                            transaction quantity
FT1-11   ``amount``, ``currency``                extended amount (CP: MO amount & currency)
FT1-13   ``cost_center``                         department code (CWE) as an Organization
FT1-19   ``reason``                              diagnosis codes (each repetition)
FT1-20   ``performer``                           performed by (XCN)
FT1-24   ``enterer``                             entered by (XCN)
FT1-25   ``service``                             procedure code (CNE): the message's PR1 Procedure
                                                 with that code, else a Procedure of its own
                                                 (status ``unknown``, done at FT1-4 by FT1-20)
FT1-29   ``product``                             NDC code (CWE) of a drug charged
FT1-32   ``performing_organization``             performing facility (XON)
FT1-33   ``requesting_organization``             ordering facility (XON)
=======  ======================================  =============================================

The patient, visit and account are the message's (the first patient its records name, that
patient's first visit and its PID-18 account). Like procedures and accounts these records are
carried: the FT1 segments stay kept on the message's first record, so an HL7v2 round trip writes
them as read. A ChargeItem from another format has no HL7v2 message of its own (that would be a DFT,
which the encoder does not build): routing one alone to HL7v2 is an encode error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge import Account, ChargeItem, Coding, Encounter, Identifier, Organization, Patient, Practitioner, Procedure
from bridge import ProcedurePerformer, Record

from . import datatypes as dt
from .accounts import encounter_of
from .organizations import read_organization
from .reader import NULL, Segment, text

if TYPE_CHECKING:
    from .decode import Decoder

CHARGE_TYPES = frozenset(("CG", ""))
"""FT1-6 transaction types (HL7 table 0017) that are a charge."""


def beside(decoder: Decoder, records: list[Record]) -> list[Record]:
    """A ChargeItem per charge FT1 of the message, after its other records (none without a patient:
    FHIR requires ChargeItem.subject)."""
    ft1s = [seg for seg in decoder.message.segments if seg.name == "FT1"]
    patient = _first_patient(records) if ft1s else None
    if patient is None:
        return []
    from .adt import carried

    encounter = encounter_of(records, patient)
    account = next((r for r in records if isinstance(r, Account) and r.patient is patient), None)
    done = [r for r in records if isinstance(r, Procedure) and r.patient is patient]
    out: list[Record] = []
    for seg in ft1s:
        item = read(decoder, seg, patient, encounter, account)
        if item is not None:
            item.service = _service(decoder, seg, item, done)
            out.append(carried(item))
    return out


def read(decoder: Decoder, ft1: Segment, patient: Patient, encounter: Encounter | None,
         account: Account | None) -> ChargeItem | None:
    """One FT1 → ChargeItem, or None for a transaction that is not a charge or names no code."""
    seps = decoder.seps
    if decoder.t(ft1, 6).upper() not in CHARGE_TYPES:
        return None
    code = _coding(decoder, ft1, 7)
    if code is None:
        return None  # FHIR requires ChargeItem.code
    amount, currency = _money(decoder, ft1, 11)
    transaction = decoder.t(ft1, 2)
    return ChargeItem(
        identifiers=[Identifier(value=transaction)] if transaction else [],
        status="billable", code=code, quantity=_number(decoder.t(ft1, 10)), amount=amount, currency=currency,
        occurred=dt.read_datetime(decoder.t(ft1, 4)) if decoder.t(ft1, 4) else None,
        entered=dt.read_datetime(decoder.t(ft1, 5)) if decoder.t(ft1, 5) else None,
        reason=[c for c in (dt.read_coding(r, seps) for r in decoder.reps(ft1, 19)) if c],
        performer=_person(decoder, ft1, 20), enterer=_person(decoder, ft1, 24),
        cost_center=_department(decoder, ft1, 13), product=_coding(decoder, ft1, 29),
        performing_organization=_facility(decoder, ft1, 32), requesting_organization=_facility(decoder, ft1, 33),
        account=account, patient=patient, encounter=encounter,
    )


def _service(decoder: Decoder, ft1: Segment, item: ChargeItem, done: list[Procedure]) -> Procedure | None:
    """The procedure a charge is for (FT1-25): the PR1 one with that code when the message has it
    (one procedure, charged), else one of its own with what the FT1 says of it."""
    code = _coding(decoder, ft1, 25)
    if code is None:
        return None
    same = next((p for p in done if p.code is not None and (p.code.code, p.code.system) == (code.code, code.system)),
                None)
    if same is not None:
        return same
    return Procedure(status="unknown", code=code, performed=item.occurred, reason=list(item.reason),
                     performers=[ProcedurePerformer(practitioner=item.performer)] if item.performer else [],
                     patient=item.patient, encounter=item.encounter)


def _coding(decoder: Decoder, seg: Segment, number: int) -> Coding | None:
    values = decoder.reps(seg, number)
    return dt.read_coding(values[0], decoder.seps) if values else None


def _person(decoder: Decoder, seg: Segment, number: int) -> Practitioner | None:
    values = decoder.reps(seg, number)
    return dt.read_practitioner(values[0], decoder.seps) if values else None


def _facility(decoder: Decoder, seg: Segment, number: int) -> Organization | None:
    values = decoder.reps(seg, number)
    return read_organization(values[0], decoder.seps) if values else None


def _department(decoder: Decoder, seg: Segment, number: int) -> Organization | None:
    """A department code (CWE: code ^ name ^ coding system) as the Organization it names."""
    values = decoder.reps(seg, number)
    if not values:
        return None
    parts = values[0].split(decoder.seps.component) + ["", ""]
    code, name = text(parts[0], decoder.seps), text(parts[1], decoder.seps)
    if not code and not name:
        return None
    return Organization(name=name or code, identifiers=[Identifier(value=code)] if code else [])


def _money(decoder: Decoder, seg: Segment, number: int) -> tuple[float | None, str | None]:
    """CP's first component, MO (amount & currency)."""
    raw = seg.get(number)
    if not raw or raw == NULL:
        return None, None
    mo = raw.split(decoder.seps.repetition)[0].split(decoder.seps.component)[0].split(decoder.seps.subcomponent)
    amount = _number(text(mo[0], decoder.seps))
    currency = text(mo[1], decoder.seps) if len(mo) > 1 else ""
    return amount, (currency or None) if amount is not None else None


def _number(value: str) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _first_patient(records: list[Record]) -> Patient | None:
    for record in records:
        patient = record if isinstance(record, Patient) else getattr(record, "patient", None)
        if isinstance(patient, Patient):
            return patient
    return None
