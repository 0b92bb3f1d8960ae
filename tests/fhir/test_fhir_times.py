"""Issue 11 §3: FHIR writes the offset that is right for each instant, and never makes one up."""

from __future__ import annotations

import pytest

from bridge import EncodeError, localize_records

from . import records as R
from .conftest import resources_of


def test_a_chicago_senders_january_and_july_visits_get_minus_six_and_minus_five(fhir_format):
    january, july = R.encounter(), R.encounter()
    january.period.start, july.period.start = "2026-01-15T10:30:00", "2026-07-15T10:30:00"
    january.period.end = july.period.end = None
    localize_records([january, july], "America/Chicago")
    starts = [resources_of(fhir_format.encode([e], {}), "Encounter")[0]["period"]["start"] for e in (january, july)]
    assert starts == ["2026-01-15T10:30:00-06:00", "2026-07-15T10:30:00-05:00"]


def test_a_time_known_to_the_hour_is_padded_like_seconds_are(fhir_format):
    enc = R.encounter()
    enc.period.start, enc.period.end = "2026-01-15T10-06:00", None
    (res,) = resources_of(fhir_format.encode([enc], {}), "Encounter")
    assert res["period"]["start"] == "2026-01-15T10:00:00-06:00"


def test_a_local_time_without_a_zone_names_the_channel_setting(fhir_format):
    enc = R.encounter()
    enc.period.start = "2026-01-15T10:30:00"
    with pytest.raises(EncodeError, match=r"has no time zone; FHIR requires one \(set timezone: on the channel"):
        fhir_format.encode([enc], {})


def test_fhir_declares_it_needs_a_zone(fhir_format):
    assert fhir_format.needs_timezone is True
