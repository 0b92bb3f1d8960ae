"""Account and EpisodeOfCare records as FHIR R4 Account and EpisodeOfCare resources, and back.

Both require a status (required bindings account-status, episode-of-care-status) and the patient
(``Account.subject[0]``, ``EpisodeOfCare.patient``). Identifiers rarely name a system (HL7v2 PID-18
and PV1-54 give a namespace at most), so a record without one that has a system also gets a key
derived from the patient and its identifier (``…/sid/account-key``, ``…/sid/episode-key``): a
re-sent message updates the resource it created (conditional update, like other clinical events).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from bridge import ACCOUNT_STATUSES, EPISODE_STATUSES, Account, EncodeError, EpisodeOfCare, Patient

from . import constants as C
from .datatypes import compact
from .reader import Node
from .resources import absolute_identifiers, choice, common_extensions, derived_key, record_extra_in, record_id
from .resources import split_identifiers

if TYPE_CHECKING:
    from .decode import Reader
    from .encode import Writer

SID_ACCOUNT_KEY = f"{C.BASE}/sid/account-key"
SID_EPISODE_KEY = f"{C.BASE}/sid/episode-key"


def _key(system: str, rec: Account | EpisodeOfCare) -> dict[str, str] | None:
    """A derived key when no identifier has a system a server could match on."""
    if any(i.system for i in rec.identifiers):
        return None
    first = rec.identifiers[0] if rec.identifiers else None
    return derived_key(system, dataclasses.replace(rec, identifiers=[]),
                       first.value if first else None, first.assigner if first else None)


def _required(rec: Account | EpisodeOfCare, statuses: tuple[str, ...]) -> None:
    if rec.patient is None:
        raise EncodeError(f"{rec.kind}.patient is required by FHIR")
    if rec.status is None:
        raise EncodeError(f"{rec.kind}.status is required by FHIR (one of {', '.join(statuses)})")


def account_out(rec: Account, w: Writer) -> dict[str, Any]:
    _required(rec, ACCOUNT_STATUSES)
    return compact({
        "resourceType": "Account",
        "extension": common_extensions(rec),
        "identifier": absolute_identifiers(rec, _key(SID_ACCOUNT_KEY, rec)),
        "status": rec.status,
        "subject": [w.ref(rec.patient)],
    })


def account_in(node: Node, r: Reader) -> Account:
    found, identifiers = split_identifiers(node, C.SID_RECORD_ID, SID_ACCOUNT_KEY)
    subjects = [r.follow(s, Patient) for s in node.list("subject")]
    return Account(id=record_id(node, found), identifiers=identifiers,
                   status=choice(node.str("status"), ACCOUNT_STATUSES, node.at("status")),
                   patient=next((s for s in subjects if s is not None), None), extra=record_extra_in(node))


def episode_out(rec: EpisodeOfCare, w: Writer) -> dict[str, Any]:
    _required(rec, EPISODE_STATUSES)
    return compact({
        "resourceType": "EpisodeOfCare",
        "extension": common_extensions(rec),
        "identifier": absolute_identifiers(rec, _key(SID_EPISODE_KEY, rec)),
        "status": rec.status,
        "patient": w.ref(rec.patient),
    })


def episode_in(node: Node, r: Reader) -> EpisodeOfCare:
    found, identifiers = split_identifiers(node, C.SID_RECORD_ID, SID_EPISODE_KEY)
    return EpisodeOfCare(id=record_id(node, found), identifiers=identifiers,
                         status=choice(node.str("status"), EPISODE_STATUSES, node.at("status")),
                         patient=r.follow(node.obj("patient"), Patient), extra=record_extra_in(node))

