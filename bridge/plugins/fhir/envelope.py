"""The inbound message's envelope as FHIR resources: MessageHeader, Provenance, Device, Organization.

The engine passes a decoded message's envelope (:class:`bridge.MessageEnvelope`, from HL7v2 MSH, SFT
and EVN) to the encoder as ``options["source_envelope"]``; the Bundle then also says where its
resources came from:

* **MessageHeader**: the event (``eventCoding``, HL7 table 0003, else the message code of table
  0076), the source (MSH-3 name and endpoint, SFT product and version), the destination (MSH-5 and
  its Device, MSH-6 as receiver), the sender (MSH-4), the enterer (EVN-5), the reason (EVN-4) and
  the focus (the Bundle's top-level records).
* **Provenance** of the message: every resource of the Bundle as target, recorded at MSH-7, the
  sending application's Device as author on behalf of the sending facility, and the message itself
  (MSH-10 in the sending application's namespace) as the source entity.
* **Provenance** of the event, when EVN says who or when: recorded at EVN-2, occurred at EVN-6,
  the operator (EVN-5) as enterer, EVN-4 as reason, the event facility (EVN-7) as its location (a
  site Location, keyed like every Location).
* **Device** for the sending and receiving applications (MSH-3, MSH-5) and for each SFT, and
  **Organization** for the sending and receiving facilities (MSH-4, MSH-6).
* **Organization** for the responsible organizations (MSH-22, MSH-23, v2.7+): the sending one is
  ``MessageHeader.responsible``, and each is the ``partOf`` of its end's facility (a hospital
  trust's sites are parts of the trust); a message with no facility at that end references it as
  the sender or receiver itself.

Identities are stable: a redelivered message gives the same Bundle. MessageHeader and Provenance
have no identifier element in R4, so they are ``PUT Type/id`` with an id derived (uuid5) from the
sender, the control id, MSH-7 and the message type; Devices are conditional creates on a derived
identifier, Organizations go through the Organization record's own mapping. A Provenance needs an
exact instant: a message whose MSH-7 (or EVN-2) has no offset even after the channel's zone is
applied gets no Provenance for it rather than a guessed one. The destination option ``envelope:
false`` leaves all of these out (some servers refuse a MessageHeader in a transaction).
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from bridge import EncodeError, Endpoint, Identifier, Location, MessageEnvelope, Organization, Software

from . import constants as C
from .datatypes import compact, fhir_datetime
from .resources import coded_out

if TYPE_CHECKING:
    from .encode import Writer

log = logging.getLogger(__name__)

OPTION = "envelope"
SOURCE = "source_envelope"
V2_EVENT = f"{C.V2_TABLE}0003"
V2_MESSAGE_TYPE = f"{C.V2_TABLE}0076"
PROVENANCE_AGENT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
SID_APPLICATION = f"{C.BASE}/sid/hl7v2-application"
SID_SOFTWARE = f"{C.BASE}/sid/software"
ENDPOINT_BASE = f"{C.BASE}/hl7v2/endpoint/"
OID = re.compile(r"[0-2](\.(0|[1-9]\d*))+")
FALSE = (False, "false", "no", "0", "off")


def wanted(options: Any) -> MessageEnvelope | None:
    """The envelope to write, unless the destination said ``envelope: false`` or there is none."""
    envelope = options.get(SOURCE)
    if not isinstance(envelope, MessageEnvelope) or options.get(OPTION, True) in FALSE:
        return None
    if not (envelope.sending_application or envelope.sending_facility) or not envelope.message_code:
        log.info("fhir encode: the message names no sender or type; no MessageHeader written")
        return None
    return envelope


def endpoint_url(hd: Endpoint | None) -> str | None:
    """An HD as a URL: an ISO OID as ``urn:oid:``, a UUID as ``urn:uuid:``, a URI as itself; a
    local name (no universal id) under our base, so the same name always gives the same URL."""
    if not hd:
        return None
    uid, kind = hd.universal_id or "", (hd.universal_id_type or "").upper()
    if uid and (kind == "ISO" or not kind) and OID.fullmatch(uid):
        return f"urn:oid:{uid}"
    if uid and kind == "UUID":
        return f"urn:uuid:{uid.lower()}"
    if uid.startswith(("http://", "https://", "urn:")):
        return uid
    return ENDPOINT_BASE + quote(hd.name or uid, safe="")


def _label(hd: Endpoint | None) -> str:
    return (hd.name or hd.universal_id or "") if hd else ""


class EnvelopeWriter:
    """Adds one message's envelope resources to a Writer's entries."""

    def __init__(self, writer: Writer, envelope: MessageEnvelope):
        self.w = writer
        self.env = envelope
        self.seed = "|".join(str(p or "") for p in (
            envelope.format, _label(envelope.sending_application), _label(envelope.sending_facility),
            envelope.control_id, envelope.sent_at, envelope.message_type))

    def write(self) -> None:
        targets = [{"reference": url} for url in self.w.entries]
        focus = [{"reference": url} for url in self.w.roots]
        env = self.env
        responsible = self.w.ref(env.sending_organization) if env.sending_organization else None
        receiving_body = self.w.ref(env.receiving_organization) if env.receiving_organization else None
        sender = self.organization(env.sending_facility, env.sending_organization) or responsible
        receiver = self.organization(env.receiving_facility, env.receiving_organization) or receiving_body
        source_device = self.application(env.sending_application, env.sending_facility, sender)
        target_device = self.application(env.receiving_application, env.receiving_facility, receiver)
        for software in env.software:
            self.software(software)
        self.header(sender, receiver, target_device, focus, responsible)
        author = source_device or sender
        self.message_provenance(targets, author, sender if source_device else None)
        self.event_provenance(targets, author)

    # -- resources --

    def put(self, rtype: str, kind: str, resource: dict[str, Any]) -> dict[str, str]:
        """An entry with an id derived from the message: PUT Type/id (idempotent on redelivery)."""
        rid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{C.BASE}/{rtype}/{kind}#{self.seed}"))
        full_url = f"urn:uuid:{rid}"
        entry: dict[str, Any] = {"fullUrl": full_url, "resource": {"resourceType": rtype, "id": rid, **resource}}
        if self.w.bundle_type == "transaction":
            entry["request"] = {"method": "PUT", "url": f"{rtype}/{rid}"}
        self.w.entries[full_url] = entry
        return {"reference": full_url}

    def device(self, resource: dict[str, Any]) -> dict[str, str]:
        """A Device: reference data, created once on its identifier (never overwritten)."""
        from .create_once import created_once

        return created_once(self.w, resource)

    def organization(self, hd: Endpoint | None, body: Organization | None = None) -> dict[str, str] | None:
        """A facility (MSH-4, MSH-6) through the Organization record's mapping: an ISO OID as its
        identifier (RFC 3986 system), else a key derived from its name; part of ``body``, the
        responsible organization of its end (MSH-22, MSH-23), when the message names one."""
        if not hd:
            return None
        url = endpoint_url(hd)
        idents = [Identifier(value=url, system="urn:ietf:rfc:3986")] if url and not url.startswith(ENDPOINT_BASE) \
            else []
        name = hd.name or hd.universal_id
        if body is not None and not body.identifiers and (body.name or "").casefold() == (name or "").casefold():
            body = None  # MSH-22 names the facility itself: one organization, not a part of itself
        return self.w.ref(Organization(identifiers=idents, name=name, part_of=body))

    def application(self, hd: Endpoint | None, facility: Endpoint | None,
                    owner: dict[str, str] | None) -> dict[str, str] | None:
        """The sending or receiving application (MSH-3, MSH-5) as a Device owned by its facility.
        Its identifier is the application's URL, or its name within the facility's name: two sites
        both running "EPIC" are two installations."""
        if not hd:
            return None
        url = endpoint_url(hd) or ""
        value = url if not url.startswith(ENDPOINT_BASE) else f"{_label(hd)}@{_label(facility)}"
        return self.device(compact({
            "resourceType": "Device",
            "identifier": [{"system": SID_APPLICATION if value != url else "urn:ietf:rfc:3986", "value": value}],
            "deviceName": [{"name": hd.name, "type": "user-friendly-name"}] if hd.name else [],
            "owner": owner,
        }))

    def software(self, sft: Software) -> dict[str, str] | None:
        """An SFT: vendor as manufacturer, product as the manufacturer's name, version and binary id."""
        value = "|".join(p or "" for p in (sft.vendor, sft.product, sft.version, sft.binary_id))
        if not value.strip("|"):
            return None
        return self.device(compact({
            "resourceType": "Device",
            "identifier": [{"system": SID_SOFTWARE, "value": value}],
            "manufacturer": sft.vendor,
            "deviceName": [{"name": sft.product, "type": "manufacturer-name"}] if sft.product else [],
            "version": [v for v in (compact({"value": sft.version}) if sft.version else None,
                                    {"type": {"text": "binary id"}, "value": sft.binary_id} if sft.binary_id else None)
                        if v],
            "note": [{"text": sft.info}] if sft.info else [],
        }))

    def event_coding(self) -> dict[str, str]:
        env = self.env
        if env.event:
            return {"system": V2_EVENT, "code": env.event, "display": env.message_type}
        return {"system": V2_MESSAGE_TYPE, "code": str(env.message_code), "display": env.message_type}

    def header(self, sender: dict[str, str] | None, receiver: dict[str, str] | None,
               target: dict[str, str] | None, focus: list[dict[str, str]],
               responsible: dict[str, str] | None = None) -> None:
        env = self.env
        product = next((s for s in env.software if s.product or s.version), None)
        destination = compact({
            "name": env.receiving_application.name if env.receiving_application else None,
            "target": target,
            "endpoint": endpoint_url(env.receiving_application) or endpoint_url(env.receiving_facility),
            "receiver": receiver,
        }) if env.receiving_application or env.receiving_facility else None
        self.put("MessageHeader", "message", compact({
            "eventCoding": self.event_coding(),
            "destination": [destination] if destination else [],
            "sender": sender,
            "enterer": self.w.ref(env.operator) if env.operator else None,
            "source": compact({
                "name": env.sending_application.name if env.sending_application else None,
                "software": product.product if product else None,
                "version": product.version if product else None,
                "endpoint": endpoint_url(env.sending_application) or endpoint_url(env.sending_facility),
            }),
            "reason": coded_out(env.event_reason),
            "responsible": responsible,
            "focus": focus,
        }))

    def instant(self, value: str | None, field: str) -> str | None:
        """An exact instant, or None when the time is a date or has no offset (never guessed)."""
        if not value or "T" not in value:
            return None
        try:
            return fhir_datetime(value, field, self.w.options, instant=True)
        except EncodeError:
            log.info("fhir encode: %s has no time zone; its Provenance is left out", field)
            return None

    def message_provenance(self, targets: list[dict[str, str]], author: dict[str, str] | None,
                           on_behalf: dict[str, str] | None) -> None:
        env = self.env
        recorded = self.instant(env.sent_at, "MSH-7")
        if recorded is None or author is None:
            return
        namespace = endpoint_url(env.sending_application) or endpoint_url(env.sending_facility)
        message = compact({"identifier": compact({"system": namespace, "value": env.control_id})
                           if env.control_id else None,
                           "display": f"{env.format} {env.message_type} message"})
        self.put("Provenance", "message", compact({
            "target": targets,
            "recorded": recorded,
            "activity": {"coding": [self.event_coding()]},
            "agent": [compact({"type": self.agent_type("author"), "who": author, "onBehalfOf": on_behalf})],
            "entity": [{"role": "source", "what": message}],
        }))

    def event_provenance(self, targets: list[dict[str, str]], author: dict[str, str] | None) -> None:
        env = self.env
        recorded = self.instant(env.event_recorded, "EVN-2")
        if recorded is None:
            return
        agent = {"type": self.agent_type("enterer"), "who": self.w.ref(env.operator)} if env.operator else \
            {"type": self.agent_type("author"), "who": author} if author else None
        if agent is None:
            return
        occurred = self.instant(env.event_occurred, "EVN-6")
        self.put("Provenance", "event", compact({
            "target": targets,
            "occurredDateTime": occurred,
            "recorded": recorded,
            "location": self.place(env.event_facility),
            "reason": [c for c in (coded_out(env.event_reason),) if c],
            "activity": {"coding": [self.event_coding()]},
            "agent": [agent],
        }))

    def place(self, hd: Endpoint | None) -> dict[str, str] | None:
        """A facility where something happened (EVN-7) as a site Location: a Provenance's location
        is a Location, not an Organization. Its OID is an identifier as for :meth:`organization`."""
        if not hd:
            return None
        url = endpoint_url(hd)
        idents = [Identifier(value=url, system="urn:ietf:rfc:3986")] if url and not url.startswith(ENDPOINT_BASE) \
            else []
        return self.w.ref(Location(identifiers=idents, name=hd.name or hd.universal_id, mode="instance",
                                   physical_type="si"))

    @staticmethod
    def agent_type(code: str) -> dict[str, Any]:
        return {"coding": [{"system": PROVENANCE_AGENT, "code": code}]}


def add_envelope(writer: Writer) -> None:
    """Write the envelope of ``writer.options`` into its entries (nothing when there is none)."""
    envelope = wanted(writer.options)
    if envelope is not None:
        EnvelopeWriter(writer, envelope).write()
