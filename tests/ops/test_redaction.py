"""The redaction on log records: what looks like payload is scrubbed, exception texts are withheld."""

from __future__ import annotations

import logging

import pytest

from bridge.core import redaction
from bridge.errors import DecodeError, StoreError, TransientDeliveryError


NAME = "Doe^Jane"


@pytest.fixture
def redacted(caplog):
    was = redaction.installed()
    redaction.install()
    caplog.set_level(logging.DEBUG)
    yield caplog
    if not was:
        redaction.uninstall()


def text_of(caplog) -> str:
    formatter = logging.Formatter("%(message)s")
    return "\n".join(formatter.format(r) for r in caplog.records)


@pytest.mark.parametrize("raw, kept, gone", [
    ("got PID|1||Q77^^^H^MR||Doe^Jane||19610412\rPV1|1|O", "PID|[redacted]", ("Doe", "19610412")),
    ('{"resourceType": "Patient", "name": [{"family": "Doe", "given": ["Jane"]}], "birthDate": "1961-04-12"}',
     '"resourceType": "Patient"', ("Doe", "Jane", "1961-04-12")),
    ("{'family': 'Doe', 'birth_date': '1961-04-12', 'id': 'p1'}", "'id': 'p1'", ("Doe", "1961-04-12")),
    ("<Patient><LastName>Doe</LastName><ns:DateOfBirth><Date>1961-04-12</Date></ns:DateOfBirth></Patient>",
     "<LastName>[redacted]</LastName>", ("Doe", "1961-04-12")),
    ("GET /fhir/Patient?family=Doe&identifier=urn%3Aoid%7CQ77 HTTP/1.1", "GET /fhir/Patient?family=", ("Doe", "Q77")),
    ("ssn 123-45-6789 and phone (555) 867-5309 or +1 555.867.5309", "[redacted-ssn]", ("6789", "867")),
])
def test_payload_shaped_text_is_scrubbed(raw, kept, gone):
    out = redaction.scrub(raw)
    assert kept in out and not [g for g in gone if g in out], out


def test_ids_counts_and_timestamps_are_left_alone():
    text = "message 1234 on channel adt-in: 3 page(s), watermark 2026-03-01T10:05:00+00:00, port 8080, 10.0.0.1"
    assert redaction.scrub(text) == text


def test_every_record_is_redacted_whatever_the_logger_and_tracebacks_withhold_messages(redacted):
    logging.getLogger("some.library").info("payload %s", "PID|1||Q77||Doe^Jane")
    try:
        raise DecodeError(f"PID-5: cannot read {NAME!r}")  # (the traceback shows this source line)
    except DecodeError:
        logging.getLogger("bridge.x").exception("decode failed")
    try:
        try:
            raise KeyError(NAME)
        except KeyError as exc:
            raise StoreError("store unavailable: database is locked") from exc
    except StoreError:
        logging.getLogger("bridge.y").error("store", exc_info=True)
    text = text_of(redacted)
    assert "Doe" not in text and "Jane" not in text
    assert "DecodeError (message withheld from logs" in text
    assert "StoreError: store unavailable: database is locked" in text  # a system error keeps its text
    assert "KeyError (message withheld" in text and "Traceback (most recent call last)" in text


def test_a_bad_format_string_keeps_the_template_not_the_arguments(redacted):
    logging.getLogger("bridge.z").warning("broken %d template", "Doe")
    assert text_of(redacted) == "broken %d template"


def test_stored_errors_cut_peer_text_and_hide_plugin_bugs():
    peer = TransientDeliveryError("search Patient page 1: HTTP 500 — Patient Doe, born 1961-04-12")
    assert redaction.safe_error(peer) == \
        "TransientDeliveryError: search Patient page 1: HTTP 500 — [peer text withheld]"
    assert redaction.safe_error(RuntimeError("Doe")) == \
        "RuntimeError (message withheld from logs: it may quote message content)"
    assert redaction.safe_error(OSError("disk full")) == "OSError: disk full"
