"""Issue 11 §3: an HL7v2 destination may ask for its own zone (option ``timezone``).

Exact times are written as the receiver's wall-clock time with that zone's offset for the instant;
times without an offset stay as they are (their zone is unknown); the records are not changed for
the other destinations.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bridge import Appointment, EncodeError, Encounter, Patient, Period
from bridge.plugins.hl7v2.codec import encode


def segments(raw: bytes) -> dict[str, list[str]]:
    return {line.split("|", 1)[0]: line.split("|") for line in raw.decode().split("\r") if line}


def test_exact_times_are_written_in_the_receivers_zone_with_the_offset_of_each_instant():
    encounter = Encounter(id="V1", period=Period(start="2026-01-15T10:30:00-06:00", end="2026-07-15T15:30:00Z"),
                          patient=Patient(id="P1", birth_date="1980-04-12"))
    pv1 = segments(encode([encounter], {"timezone": "America/New_York"}))["PV1"]
    assert pv1[44] == "20260115113000-0500"   # January: EST
    assert pv1[45] == "20260715113000-0400"   # July: EDT
    assert segments(encode([encounter], {"timezone": "America/New_York"}))["PID"][7] == "19800412"
    assert encounter.period.start == "2026-01-15T10:30:00-06:00"  # the record itself is unchanged


def test_without_the_option_times_are_written_as_they_are():
    encounter = Encounter(id="V1", period=Period(start="2026-01-15T10:30:00-06:00"))
    assert segments(encode([encounter], {}))["PV1"][44] == "20260115103000-0600"


def test_a_local_time_is_not_converted():
    appt = Appointment(id="A1", status="booked", start="2026-01-15T10:30:00")
    raw = encode([appt], {"timezone": "America/New_York"})
    assert "20260115103000" in raw.decode() and "20260115103000-" not in raw.decode()


def test_message_time_is_stamped_in_the_receivers_zone():
    encounter = Encounter(id="V1")
    msh = segments(encode([encounter], {"timezone": "Asia/Kolkata"}))["MSH"]
    assert msh[6].endswith("+0530")
    stamped = datetime.strptime(msh[6], "%Y%m%d%H%M%S%z")
    assert abs((datetime.now(ZoneInfo("UTC")) - stamped).total_seconds()) < 60


def test_an_unknown_zone_is_a_clear_encode_error():
    with pytest.raises(EncodeError, match="options.timezone: unknown time zone 'Eastern'"):
        encode([Encounter(id="V1")], {"timezone": "Eastern"})
