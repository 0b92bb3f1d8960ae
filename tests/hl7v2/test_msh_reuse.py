"""parse_msh remembers its last answer (the MLLP listener and the intake's peek read each frame's MSH
one after the other): the remembered answer must never stand in for a different message."""

from __future__ import annotations

import threading

import pytest

from bridge import DecodeError
from bridge.plugins.hl7v2 import header
from bridge.plugins.hl7v2.header import parse_msh


def msh(control_id: str, sender: str = "LAB") -> bytes:
    return f"MSH|^~\\&|{sender}|FAC|BR|TB|20240101||ADT^A04|{control_id}|P|2.5\rPID|1||MRN1\r".encode()


def test_the_same_bytes_are_parsed_once_and_other_bytes_again():
    first = msh("C1")
    a = parse_msh(first)
    assert parse_msh(first) is a
    assert parse_msh(bytes(first)) is a  # an equal copy (a slice of a longer frame) gives the same answer
    assert parse_msh(msh("C2")).control_id == "C2"
    assert parse_msh(msh("C1", sender="RAD")).component(3) == "RAD"
    assert parse_msh(first.decode()).control_id == "C1"  # text is not confused with bytes


def test_an_unreadable_message_still_raises_after_a_readable_one():
    parse_msh(msh("C1"))
    with pytest.raises(DecodeError):
        parse_msh(b"PID|1||MRN1\r")
    with pytest.raises(DecodeError):
        parse_msh(b"PID|1||MRN1\r")


def test_threads_parsing_different_messages_each_get_their_own():
    errors: list[str] = []

    def parse_many(prefix: str) -> None:
        for i in range(2000):
            raw = msh(f"{prefix}{i}")
            if parse_msh(raw).control_id != f"{prefix}{i}" or parse_msh(raw).control_id != f"{prefix}{i}":
                errors.append(f"{prefix}{i}")

    threads = [threading.Thread(target=parse_many, args=(p,)) for p in "ABCD"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert header._last is not None


def test_the_quick_header_equals_the_dataclass_built_one():
    """``_header`` fills the MessageHeader's __dict__ directly (no frozen __init__): it must be the
    same value, with the other fields at their defaults, and as immutable."""
    from bridge import MessageHeader
    from bridge.plugins.hl7v2.header import peek, peek_quick

    raw = "MSH|^~\\&|LAB^x|FAC^y|BR|TB|20240101||ORU^R01^ORU_R01|C9|P|2.5\rPID|1||MRN1^^^TB^MR\r".encode()
    quick = peek_quick(raw)
    assert quick == MessageHeader(control_id="C9", sending_application="LAB", sending_facility="FAC",
                                  message_type="ORU^R01")
    assert hash(quick) == hash(MessageHeader(control_id="C9", sending_application="LAB", sending_facility="FAC",
                                             message_type="ORU^R01"))
    assert quick.keys_read is False and quick.dedupe_key is None
    full = peek(raw)
    assert full.keys_read is True and full.patient_id == "MRN1" and full.control_id == "C9"
    short = peek_quick(b"MSH|^~\\&|LAB\r")
    assert short == MessageHeader(sending_application="LAB")
    with pytest.raises(AttributeError):
        quick.control_id = "other"  # type: ignore[misc]


def test_separators_are_remembered_but_checked_once_per_kind():
    with pytest.raises(DecodeError):
        parse_msh(b"MSH|^^~\\&|LAB|FAC\r")  # duplicate encoding characters: never remembered
    with pytest.raises(DecodeError):
        parse_msh(b"MSH|^^~\\&|LAB|FAC\r")
    assert parse_msh(b"MSH#^~\\&#LAB#FAC\r").separators.field == "#"
    assert parse_msh(msh("C1")).separators.field == "|"
