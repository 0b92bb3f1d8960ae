"""What counts as PHI in an error, exactly as bridge.testing.phi documents it."""

from __future__ import annotations

import pytest

from bridge import DecodeError, TransientDeliveryError
from bridge.testing.phi import FAKE_PHI, assert_no_phi, fake_patient, phi_in_exception, phi_in_text


@pytest.mark.parametrize("text, field", [
    ("born 19370423", "birth date"), ("dob 04/23/1937", "birth date"), ("QUILLFEATHER", "family name"),
    ("call (202) 555-0142", "phone"), ("tel 2025550142", "phone"), ("17 larkspur close", "street"),
])
def test_every_spelling_of_a_seeded_value_is_found(text, field):
    assert phi_in_text(text) == [field]


def test_identifiers_are_not_counted():
    assert phi_in_text(f"patient {FAKE_PHI.mrn} not found at visit V1001") == []


def test_cause_and_detail_are_checked_but_a_suppressed_context_is_not():
    try:
        try:
            raise ValueError("Quillfeather")
        except ValueError:
            raise DecodeError("bad name", "PID-5") from None
    except DecodeError as exc:
        assert phi_in_exception(exc) == []
    try:
        try:
            raise ValueError("born 1937-04-23")
        except ValueError as inner:
            raise DecodeError("bad date", "PID-7") from inner
    except DecodeError as exc:
        assert phi_in_exception(exc) == ["birth date in ValueError"]
    with pytest.raises(AssertionError, match="given name in TransientDeliveryError"):
        assert_no_phi(TransientDeliveryError("HTTP 503", detail="rejected note for Ottoline"))


def test_fake_patient_carries_every_seeded_value():
    patient = fake_patient()
    text = repr(patient)
    assert set(phi_in_text(text)) == set(FAKE_PHI.spellings())
