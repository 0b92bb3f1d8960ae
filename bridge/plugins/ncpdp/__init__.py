"""NCPDP SCRIPT 2017071: the ``ncpdp`` format and the ``ncpdp+https`` pharmacy-network transport.

Format: NewRx and CancelRx ↔ :class:`bridge.Prescription`; Status, Error, Verify,
CancelRxResponse, RxRenewalRequest/Response, RxChangeRequest/Response and RxFill ↔
:class:`bridge.PrescriptionEvent`. Inbound XML is parsed with DTDs and entities refused and a size
limit; messages are validated structurally by our own rules (NCPDP's schemas are licensed) and
every problem is reported by path. Signed controlled-substance prescriptions carry their
``DigitalSignature`` unchanged and cannot be altered on the way out. See ``docs/ncpdp.md``.

Transport: ``ncpdp+https://switch/path`` as a destination POSTs SCRIPT to a switch and judges its
synchronous Status/Error/Verify answer; as a source it is the callback endpoint a switch POSTs
asynchronous messages to (RxFill, CancelRxResponse, renewal and change requests…), answered with
Status 000 only after the durable commit. ``ncpdp+http`` is the same in clear text, for loopback.
"""

from __future__ import annotations

from bridge import FormatSpec, TransportSpec, hookimpl

from .decode import decode
from .encode import encode
from .header import peek
from .transport import CallbackSource, SwitchDestination
from .xmlsafe import local, parse_xml

NAME = "ncpdp"
MEDIA_TYPE = "application/xml"


def detect(raw: bytes) -> bool:
    """True for a SCRIPT ``<Message>`` with a Header/MessageID (cheap; never raises)."""
    head = raw[:4096]
    return b"<Message" in head and b"MessageID" in raw[:65536] and peek(raw).control_id is not None


@hookimpl
def bridge_formats() -> list[FormatSpec]:
    return [FormatSpec(
        name=NAME, media_type=MEDIA_TYPE, decode=decode, encode=encode, peek=peek, detect=detect,
        file_extension="xml", description="NCPDP SCRIPT 2017071 (NewRx, CancelRx, responses, RxFill…)",
    )]


@hookimpl
def bridge_transports() -> list[TransportSpec]:
    return [
        TransportSpec(scheme="ncpdp+https", source=CallbackSource, destination=SwitchDestination,
                      description="NCPDP SCRIPT over HTTPS: POST to a switch; callback endpoint (mutual TLS or basic auth)"),
        TransportSpec(scheme="ncpdp+http", source=CallbackSource, destination=SwitchDestination,
                      description="NCPDP SCRIPT over plain HTTP (loopback only unless allow_plain_http)"),
    ]


__all__ = ["bridge_formats", "bridge_transports", "decode", "encode", "peek", "local", "parse_xml"]
