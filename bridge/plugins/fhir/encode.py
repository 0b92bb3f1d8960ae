"""Records to a FHIR R4 Bundle whose entries are safe to deliver twice.

Idempotency: every entry carries a conditional request on its business identifier. Reference data
(Patient, Practitioner, Organization, Location, Medication) is a conditional create — ``POST`` with
``ifNoneExist`` — so we never overwrite what the EHR's master files hold; clinical events
(Encounter, Appointment, MedicationRequest, MedicationDispense, DocumentReference, DiagnosticReport,
Observation, AllergyIntolerance, Condition, Coverage, ServiceRequest, MedicationAdministration,
Immunization) are a conditional update — ``PUT Type?identifier=system|value`` — so a
re-delivery after a status change updates the one resource. A Patient with links (a merge's
survivor, HL7v2 A40) is a conditional update too: a create that found the patient would drop the
merge. Entries reference each other by ``urn:uuid:`` full URLs derived (uuid5) from the same
business identifiers, so encoding a record twice gives the same bytes.
"""

from __future__ import annotations

import json
import logging
import uuid
from functools import lru_cache
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from bridge import EncodeError, Immunization, Medication, Record

from . import constants as C
from . import resources  # noqa: F401  (first: orders → resources → immunization → orders is a cycle)
from . import keep, people
from .keep import without_entry_key
from .assigners import assigners_last, link_assigners
from .orders import filler_order_key, is_filler_view
from .organizations import organizations_out
from .resources import OUT, RESOURCE_TYPE, medication_codings

log = logging.getLogger(__name__)

NAMESPACE = uuid.UUID("6f1c7a52-4a0e-5b7e-9d59-1f3c1e6f2b10")
"""uuid5 namespace of our fullUrls (a fixed random value: changing it changes every fullUrl)."""

CONDITIONAL_CREATE = frozenset({"Patient", "Practitioner", "Organization", "Location", "Medication",
                                "PractitionerRole"})
PREFERRED_SYSTEMS = {
    "Practitioner": (C.NPI,),
    "PractitionerRole": (people.SID_ROLE_KEY,),
    "Organization": (C.NCPDP, C.NPI),
    "MedicationDispense": (C.SID_NCPDP_MESSAGE_ID,),
    "Location": (C.SID_LOCATION_KEY,),
    "Specimen": (C.SID_SPECIMEN_KEY,),
}
PREFERRED_TYPES = {"Patient": ("MR",), "Encounter": ("VN",), "MedicationRequest": ("PLAC",),
                   "DiagnosticReport": ("FILL", "PLAC"), "Coverage": ("MB",),
                   "ServiceRequest": ("PLAC", "FILL"), "Immunization": ("PLAC", "FILL")}
BUNDLE_TYPES = ("transaction", "collection")


def search_value(system: str | None, value: str) -> str:
    """``system|value`` escaped for a FHIR search: ``\\ | , $`` get a backslash, then URL-encoding.
    Without a system the token is the bare value (it then matches that value in any system)."""
    def escape(text: str) -> str:
        for char in "\\|,$":
            text = text.replace(char, "\\" + char)
        return quote(text, safe=":/.-_~")
    return f"{escape(system)}|{escape(value)}" if system else escape(value)


def business_key(resource: dict[str, Any]) -> tuple[str, str] | None:
    """(search parameter, ``system|value``) that identifies this resource on a server, if any."""
    rtype = resource["resourceType"]
    if rtype == "Medication":
        for coding in (resource.get("code") or {}).get("coding", []):
            if coding.get("system") and coding.get("code"):
                return "code", search_value(coding["system"], coding["code"])
        return None
    if rtype == "ServiceRequest" and is_filler_view(resource):
        return filler_order_key(resource)
    idents = [i for i in resource.get("identifier", []) if i.get("system") and i.get("value")]
    for system in PREFERRED_SYSTEMS.get(rtype, ()):
        for ident in idents:
            if ident["system"] == system:
                return "identifier", search_value(system, ident["value"])
    for code in PREFERRED_TYPES.get(rtype, ()):
        for ident in idents:
            if any(c.get("code") == code for c in (ident.get("type") or {}).get("coding", [])):
                return "identifier", search_value(ident["system"], ident["value"])
    if idents:
        return "identifier", search_value(idents[0]["system"], idents[0]["value"])
    # HL7v2 senders often name only an assigning authority (CX-4), not a URI system: a preferred-type
    # identifier (an MRN, a visit number) still keys the conditional write, by value alone.
    for code in PREFERRED_TYPES.get(rtype, ()):
        for ident in resource.get("identifier", []):
            if ident.get("value") and any(c.get("code") == code for c in (ident.get("type") or {}).get("coding", [])):
                return "identifier", search_value(None, ident["value"])
    return None


def content_tag(resource: dict[str, Any]) -> str:
    """Tag ``resource`` with a key derived from its content and return the ``_tag`` search for it.

    A resource with no business identifier — an Observation, a Patient or a Practitioner sent
    without one — would otherwise be a plain ``POST``, created again by every redelivery. ``_tag``
    is searchable on every resource type, so ``ifNoneExist: _tag=…`` makes the entry a create-once.
    The key is a uuid5 of the resource without this tag (see :func:`without_entry_key`).
    """
    value = str(uuid.uuid5(NAMESPACE, "entry-key|" + canonical_json(without_entry_key(resource))))
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*(meta.get("tag") or []), {"system": C.TAG_ENTRY_KEY, "code": value}]
    resource["meta"] = meta
    return f"_tag={search_value(C.TAG_ENTRY_KEY, value)}"


@lru_cache(maxsize=4096)
def keyed_url(seed: str) -> str:
    """The fullUrl of a resource with a business key: the same reference data (an assigning
    authority, a clinic, the sending application) comes back bundle after bundle, and uuid5 is a
    SHA-1 and a UUID object each time."""
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, seed)}"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Writer:
    """Collects the Bundle entries for a list of records (nested records become entries too)."""

    def __init__(self, options: Mapping[str, Any]):
        self.options = options
        self.entries: dict[str, dict[str, Any]] = {}
        self.roots: dict[str, list[int]] = {}
        self.assigners: dict[str, str] = {}  # assigning authority -> fullUrl (see assigners.py)
        self.bundle_type = str(options.get("bundle_type") or "transaction")
        if self.bundle_type not in BUNDLE_TYPES:
            raise EncodeError(f"fhir option bundle_type must be one of {', '.join(BUNDLE_TYPES)}, "
                              f"got {self.bundle_type!r}")

    # -- building resources --

    def body(self, record: Record) -> dict[str, Any]:
        """The resource our mapping gives for a record, before kept elements are put back."""
        encoder = OUT.get(type(record))
        if encoder is None:
            raise EncodeError(f"no FHIR mapping for record kind {record.kind!r}")
        resource = people.merge(record, encoder(record, self), self)
        return link_assigners(organizations_out(record, resource, self), self)

    def contained_body(self, medication: Medication) -> dict[str, Any]:
        """An uncoded medication as we contain it: always under the local id ``med``."""
        return {"resourceType": "Medication", "id": "med",
                **{k: v for k, v in self.body(medication).items() if k != "resourceType"}}

    def resource(self, record: Record) -> dict[str, Any]:
        return without_entry_key(keep.apply(self.body(record), getattr(record, "extra", {}).get(keep.FHIR)))

    def add(self, record: Record) -> str:
        """Add the record (and, through references, what it refers to); return its fullUrl."""
        resource = self.resource(record)
        full_url = self.add_resource(resource, business_key(resource))
        for part in getattr(record, "observations", ()) if isinstance(record, Immunization) else ():
            self.add_part(part, full_url)
        return full_url

    def add_part(self, record: Record, whole: str) -> str:
        """An Observation ``partOf`` the resource at ``whole`` (an Immunization's: the reference
        points from the part, so the part's entry is added after the whole's fullUrl is known)."""
        resource = self.resource(record)
        resource["partOf"] = [{"reference": whole}]
        return self.add_resource(resource, business_key(resource))

    def add_resource(self, resource: dict[str, Any], key: tuple[str, str] | None) -> str:
        """Add a resource already built (``key``: its :func:`business_key`); return its fullUrl."""
        seed = f"{resource['resourceType']}|{key[0]}={key[1]}" if key else canonical_json(resource)
        full_url = keyed_url(seed) if key else f"urn:uuid:{uuid.uuid5(NAMESPACE, seed)}"
        previous = self.entries.get(full_url)
        if previous is not None and previous["resource"] != resource:
            # Two different resources claim one business identifier (a stub and a full copy, or
            # bad source data): keep both rather than drop one; the second gets its own fullUrl.
            log.warning("fhir encode: two different %s resources share one business identifier",
                        resource["resourceType"])
            full_url = f"urn:uuid:{uuid.uuid5(NAMESPACE, seed + '|' + canonical_json(resource))}"
            previous = self.entries.get(full_url)
        if previous is None:
            self.entries[full_url] = self.entry(full_url, resource, key)
        return full_url

    def ref(self, record: Record) -> dict[str, str]:
        return {"reference": self.add(record)}

    def medication_ref(self, medication: Medication, contained: list[dict[str, Any]]) -> dict[str, str]:
        """A coded medication is its own entry (conditional on its code); an uncoded one is
        contained in the resource that uses it, because nothing could make its creation idempotent."""
        if medication_codings(medication):
            return self.ref(medication)
        resource = keep.apply(self.contained_body(medication), medication.extra.get(keep.FHIR))
        contained.append(resource)
        return {"reference": f"#{resource['id']}"}

    def entry(self, full_url: str, resource: dict[str, Any], key: tuple[str, str] | None) -> dict[str, Any]:
        entry: dict[str, Any] = {"fullUrl": full_url, "resource": resource}
        if self.bundle_type != "transaction":
            return entry
        rtype = resource["resourceType"]
        if key is None:  # nothing a server could match it by: created once on a key derived from its content
            entry["request"] = {"method": "POST", "url": rtype, "ifNoneExist": content_tag(resource)}
        elif rtype in CONDITIONAL_CREATE and not resource.get("link"):
            entry["request"] = {"method": "POST", "url": rtype, "ifNoneExist": f"{key[0]}={key[1]}"}
        else:
            entry["request"] = {"method": "PUT", "url": f"{rtype}?{key[0]}={key[1]}"}
        return entry

    # -- the bundle --

    def bundle(self, records: Sequence[Record]) -> dict[str, Any]:
        for index, record in enumerate(records):
            if type(record) not in RESOURCE_TYPE and type(record) not in OUT:
                raise EncodeError(f"records[{index}]: no FHIR mapping for record kind {record.kind!r}")
            try:
                full_url = self.add(record)
            except EncodeError as exc:
                raise EncodeError(f"records[{index}] ({record.kind}): {exc}") from None
            self.roots.setdefault(full_url, []).append(index)
        from .envelope import add_envelope  # the inbound message's MessageHeader and Provenance
        from .linkage import add_linkages  # merged and linked patients as Linkage resources

        add_linkages(self)
        add_envelope(self)
        entries = []
        for full_url, entry in assigners_last(self.entries, self.assigners, self.roots):
            marks = [{"url": C.EXT_RECORD_INDEX, "valueInteger": i} for i in self.roots.get(full_url, [])]
            entries.append({"extension": marks, **entry} if marks else entry)
        return {"resourceType": "Bundle", "type": self.bundle_type, "entry": entries}
