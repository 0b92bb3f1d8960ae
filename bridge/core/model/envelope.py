"""The envelope of a received message: who sent it, to whom, when, with what software, and why.

Not a record: a message's records are what it says about patients and visits; the envelope is
what it says about itself (HL7v2 MSH, SFT and EVN). Routes pick records, and a destination that
receives any record of a message receives the envelope beside them, so a FHIR server can be told
where the resources came from (MessageHeader, Provenance) whichever records a route chose.

A format builds it from the raw bytes with ``FormatSpec.envelope``; the engine localizes its times
in the channel's zone like the records' and passes it to every destination's encoder as the option
``source_envelope`` (see ``docs/records.md``, "The message envelope"). It is plain data with no
patient details, so it may be logged and shown to operators.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from .records import Coding, Organization, Practitioner
from .times import localize


@dataclass(frozen=True)
class Endpoint:
    """An application or a facility as HL7v2 names it (HD: namespace, universal id and its type)."""

    name: str | None = None
    universal_id: str | None = None
    universal_id_type: str | None = None

    def __bool__(self) -> bool:
        return bool(self.name or self.universal_id)


@dataclass(frozen=True)
class Software:
    """Software that created or relayed the message (HL7v2 SFT): vendor, version, product."""

    vendor: str | None = None
    version: str | None = None
    product: str | None = None
    binary_id: str | None = None
    info: str | None = None
    installed: str | None = None


@dataclass(frozen=True)
class MessageEnvelope:
    """What a message says about itself. ``format`` names the format that read it (``hl7v2``);
    ``message_code``/``event``/``structure`` are MSH-9's parts, ``control_id`` MSH-10, ``sent_at``
    MSH-7. The ``event_*`` fields and ``operator`` are the event's own (HL7v2 EVN-2, EVN-4, EVN-5,
    EVN-6), as opposed to the message's. ``sending_organization`` and ``receiving_organization``
    are the organizations answerable for the two ends (HL7v2 MSH-22, MSH-23, v2.7+): the legal
    entity behind a sending or receiving facility, which is what a receiver holds accountable."""

    format: str
    message_code: str | None = None
    event: str | None = None
    structure: str | None = None
    control_id: str | None = None
    sent_at: str | None = None
    sending_application: Endpoint | None = None
    sending_facility: Endpoint | None = None
    receiving_application: Endpoint | None = None
    receiving_facility: Endpoint | None = None
    processing_id: str | None = None
    version: str | None = None
    software: tuple[Software, ...] = field(default_factory=tuple)
    event_recorded: str | None = None
    event_facility: Endpoint | None = None
    """Where the event happened (HL7v2 EVN-7, an HD): the site of the event's Provenance."""
    event_reason: Coding | None = None
    operator: Practitioner | None = None
    event_occurred: str | None = None
    sending_organization: Organization | None = None
    receiving_organization: Organization | None = None

    @property
    def message_type(self) -> str:
        """MSH-9 as ``ADT^A01^ADT_A01`` (the parts that were sent)."""
        return "^".join(p for p in (self.message_code, self.event, self.structure) if p)


def localize_envelope(envelope: MessageEnvelope, zone: ZoneInfo) -> MessageEnvelope:
    """The envelope with its offset-less times given ``zone``'s offset (as localize_records does
    for records): a FHIR Provenance needs an exact instant, never a guessed one."""
    def at(value: str | None) -> str | None:
        return localize(value, zone) if value else value

    return dataclasses.replace(envelope, sent_at=at(envelope.sent_at), event_recorded=at(envelope.event_recorded),
                               event_occurred=at(envelope.event_occurred),
                               software=tuple(dataclasses.replace(s, installed=at(s.installed))
                                              for s in envelope.software))
