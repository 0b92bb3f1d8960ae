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

from bridge import FormatSpec, OptionSpec, TransportSpec, hookimpl

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


VERSION_OPTION = OptionSpec("version", "SCRIPT version (only 2017071 for now)", kind="any", default="2017071")
DECODE_OPTIONS = (
    VERSION_OPTION,
    OptionSpec("max_xml_bytes", "largest SCRIPT document read", kind="integer"),
    OptionSpec("require_routing", "refuse messages without Header To/From/SentTime", kind="boolean", default=False),
)
ENCODE_OPTIONS = (
    VERSION_OPTION,
    OptionSpec("from_id", "Header/From: our id at the switch (e.g. the prescriber system's id)", kind="any"),
    OptionSpec("from_qualifier", "Header/From Qualifier", kind="string", default="D"),
    OptionSpec("sender_software", "Header/SenderSoftware: {developer, product, version}", kind="mapping"),
    OptionSpec("sent_time", "a fixed Header/SentTime (default: now, UTC)", kind="string"),
    OptionSpec("directory", "pharmacy directory file (EPCS capability), relative to the config folder",
               kind="string"),
    OptionSpec("schedule_overrides", "YAML file of extra or replacing drug schedule rows (as the policy's), "
               "relative to the config folder", kind="string"),
)
_AUTH = (
    OptionSpec("allow_plain_http", "allow ncpdp+http to a non-loopback host", kind="boolean", default=False),
    OptionSpec("username", "HTTP basic user", kind="string"),
    OptionSpec("username_env", "environment variable holding the HTTP basic user", kind="string"),
    OptionSpec("password_env", "environment variable holding the HTTP basic password", kind="string"),
    OptionSpec("cert_file", "certificate, PEM (a listener's own, or a client certificate)", kind="string"),
    OptionSpec("key_file", "private key, PEM", kind="string"),
)
SOURCE_OPTIONS = (
    *_AUTH,
    OptionSpec("client_ca_file", "mutual TLS: CA that signs the switch's client certificates", kind="string"),
    OptionSpec("request_timeout", "seconds to read one request", kind="number", default=30.0),
)
DESTINATION_OPTIONS = (
    *_AUTH,
    OptionSpec("ca_file", "CA bundle to verify the switch with, PEM", kind="string"),
    OptionSpec("connect_timeout", "seconds to connect", kind="number"),
    OptionSpec("timeout", "seconds for the whole exchange", kind="number"),
)


@hookimpl
def bridge_formats() -> list[FormatSpec]:
    return [FormatSpec(
        name=NAME, media_type=MEDIA_TYPE, decode=decode, encode=encode, peek=peek, detect=detect,
        file_extension="xml", description="NCPDP SCRIPT 2017071 (NewRx, CancelRx, responses, RxFill…)",
        decode_options=DECODE_OPTIONS, encode_options=ENCODE_OPTIONS,
    )]


@hookimpl
def bridge_transports() -> list[TransportSpec]:
    return [
        TransportSpec(scheme="ncpdp+https", source=CallbackSource, destination=SwitchDestination,
                      description="NCPDP SCRIPT over HTTPS: POST to a switch; callback endpoint (mutual TLS or basic auth)",
                      source_options=SOURCE_OPTIONS, destination_options=DESTINATION_OPTIONS),
        TransportSpec(scheme="ncpdp+http", source=CallbackSource, destination=SwitchDestination,
                      description="NCPDP SCRIPT over plain HTTP (loopback only unless allow_plain_http)",
                      source_options=SOURCE_OPTIONS, destination_options=DESTINATION_OPTIONS),
    ]


__all__ = ["bridge_formats", "bridge_transports", "decode", "encode", "peek", "local", "parse_xml"]
