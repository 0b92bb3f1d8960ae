"""AllergyIntolerance, Condition and Coverage records as the AL1, DG1 and IN1 segments of an ADT.

Records an ADT decode gave carry their segments in the message's first record and are not written
again (``extra["hl7v2"]["carried"]``); these writers are for records built elsewhere (from FHIR or
the bridge JSON) that follow the Encounter or Patient they belong to. The field numbers are the
decoder's (docs/hl7v2.md, "Allergies, diagnoses, insurance").
"""

from __future__ import annotations

from bridge import AllergyIntolerance, Condition, Coverage, Identifier, Procedure, Record

from . import adt
from . import datatypes as dt
from . import organizations
from .reader import comp, esc

BACKGROUND = (AllergyIntolerance, Condition, Procedure, Coverage)
CATEGORY_TYPES = {"medication": "DA", "food": "FA", "environment": "EA"}
SEVERITY_CODES = {value: code for code, value in adt.ALLERGY_SEVERITY.items()}
RELATIONSHIP_CODES = {"self": "SEL", "spouse": "SPO", "common": "DOM", "child": "CHD", "parent": "PAR",
                      "other": "OTH", "injured": "OTH"}


def _ei(ident: Identifier | None) -> str:
    """EI: id ^ namespace ^ universal id ^ ISO (an ``urn:oid:`` system)."""
    if ident is None:
        return ""
    oid = ident.system[8:] if ident.system and ident.system.startswith("urn:oid:") else ""
    return comp(esc(ident.value), esc(ident.assigner), esc(oid), "ISO" if oid else "")


def al1(rec: AllergyIntolerance, number: int) -> dict[int, str]:
    kind = dt.write_coding(rec.allergen_type) if rec.allergen_type else CATEGORY_TYPES.get(rec.category or "", "")
    return {1: str(number), 2: kind, 3: dt.write_coding(rec.code), 4: SEVERITY_CODES.get(rec.severity or "", ""),
            5: "~".join(esc(r) for r in rec.reactions), 6: dt.write_datetime(rec.identified_at)}


def dg1(rec: Condition, number: int) -> dict[int, str]:
    return {1: str(number), 3: dt.write_coding(rec.code), 4: esc(rec.description),
            5: dt.write_datetime(rec.onset), 6: dt.write_coding(rec.diagnosis_type).split("^")[0]
            if rec.diagnosis_type else "", 16: dt.write_practitioner(rec.asserter),
            19: dt.write_datetime(rec.recorded), 20: _ei(rec.identifiers[0] if rec.identifiers else None)}


def in1(rec: Coverage, number: int) -> dict[int, str]:
    period = rec.period
    return {1: str(number), 2: dt.write_coding(rec.plan),
            3: "~".join(dt.write_identifier(i) for i in rec.payer_identifiers), 4: esc(rec.payer_name),
            8: esc(rec.group_number), 9: esc(rec.group_name),
            12: dt.write_datetime(period.start) if period else "", 13: dt.write_datetime(period.end) if period else "",
            15: dt.write_coding(rec.plan_type), 16: dt.write_name(rec.subscriber_name or (rec.subscriber.name if rec.subscriber else None)),
            17: RELATIONSHIP_CODES.get(rec.relationship or "", ""), 36: esc(rec.member_id),
            49: esc(rec.subscriber_id), **organizations.policy_holder_written(rec.policy_holder)}


def segments(records: list[Record]) -> list[tuple[str, dict[int, str]]]:
    """(segment name, field values) for each record, numbered per segment type: AL1, DG1, PR1, IN1."""
    out: list[tuple[str, dict[int, str]]] = []
    from .procedures import pr1

    for kind, name, write in ((AllergyIntolerance, "AL1", al1), (Condition, "DG1", dg1), (Procedure, "PR1", pr1),
                              (Coverage, "IN1", in1)):
        chosen = [r for r in records if isinstance(r, kind)]
        out += [(name, write(r, n)) for n, r in enumerate(chosen, start=1)]  # type: ignore[arg-type]
    return out
