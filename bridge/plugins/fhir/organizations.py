"""The organizations a record names beside its main mapping, as references to Organization entries.

- ``Patient.primary_facility`` (HL7v2 PD1-3) ↔ ``Patient.generalPractitioner`` (an Organization
  reference; Practitioner references in the same list are left to the Patient mapping);
- ``Coverage.policy_holder`` (HL7v2 IN1-11) ↔ ``Coverage.policyHolder`` (when it is an Organization);
- ``ServiceRequest.performing_organization`` (HL7v2 RF1-19, a referral's authorized provider) ↔ an
  Organization among ``ServiceRequest.performer`` (the practitioners there are the request mapping's).

Each Organization is a Bundle entry written as a conditional create (reference data, as the encoder
writes every Organization), keyed by its identifier or, without one a server could match, by the
derived ``organization-key`` (see places.py), so the same facility is one resource however many
messages name it. Applied by the writer and reader after a record's own mapping, so this module
is the one place these references are made and read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge import Coverage, Patient, Record, ServiceRequest

from .reader import Node

if TYPE_CHECKING:
    from .decode import Reader
    from .encode import Writer


def organizations_out(record: Record, resource: dict[str, Any], w: Writer) -> dict[str, Any]:
    """Add the record's organization references to the resource our mapping built for it."""
    if isinstance(record, Patient) and record.primary_facility is not None:
        resource.setdefault("generalPractitioner", []).append(w.ref(record.primary_facility))
    elif isinstance(record, Coverage) and record.policy_holder is not None and "policyHolder" not in resource:
        resource["policyHolder"] = w.ref(record.policy_holder)
    elif isinstance(record, ServiceRequest) and record.performing_organization is not None:
        resource.setdefault("performer", []).append(w.ref(record.performing_organization))
    return resource


def organizations_in(node: Node, record: Record, r: Reader) -> None:
    """Read the references :func:`organizations_out` writes back into the record."""
    from .places import follow_organization

    if isinstance(record, Patient):
        for ref in node.list("generalPractitioner"):
            found = follow_organization(r, ref)
            if found is not None:
                record.primary_facility = found
                return
    elif isinstance(record, Coverage):
        record.policy_holder = follow_organization(r, node.obj("policyHolder"))
    elif isinstance(record, ServiceRequest):
        record.performing_organization = next(
            (found for found in (follow_organization(r, ref) for ref in node.list("performer")) if found), None)
