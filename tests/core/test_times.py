"""Issue 11 §3: a sender's local times read in its IANA zone, daylight saving included.

The rules under test (docs/records.md, "Time zones"): a time without an offset gets the offset its
zone had at that moment; an offset that arrived is never touched; a date stays a date; the string
as it arrived is kept in ``extra["original_times"]``; the repeated hour is read as its first
occurrence; a skipped hour is shifted forward by the gap.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from bridge import (
    ORIGINAL_TIMES,
    Appointment,
    DEARegistration,
    Encounter,
    Patient,
    Period,
    Practitioner,
    Prescription,
    convert_times,
    localize_records,
    record_from_dict,
    record_to_dict,
)
from bridge.core.model.times import fixed_offset_problem, in_zone, localize, zone_problem

CHICAGO = ZoneInfo("America/Chicago")


@pytest.mark.parametrize(("local", "exact"), [
    ("2026-01-15T10:30:00", "2026-01-15T10:30:00-06:00"),  # January: Central Standard Time
    ("2026-07-15T10:30:00", "2026-07-15T10:30:00-05:00"),  # July: Central Daylight Time
    ("2026-01-15T10:30", "2026-01-15T10:30-06:00"),        # the precision it arrived with is kept
    ("2026-07-15T10:30:00.250", "2026-07-15T10:30:00.250-05:00"),
    ("2026-07-15T10", "2026-07-15T10-05:00"),
])
def test_a_local_time_gets_the_offset_its_zone_had_at_that_moment(local: str, exact: str) -> None:
    assert localize(local, CHICAGO) == exact


def test_the_same_wall_time_in_two_zones_is_two_instants() -> None:
    assert localize("2026-01-15T10:30:00", CHICAGO) == "2026-01-15T10:30:00-06:00"
    assert localize("2026-01-15T10:30:00", ZoneInfo("America/New_York")) == "2026-01-15T10:30:00-05:00"
    assert localize("2026-01-15T10:30:00", ZoneInfo("America/Phoenix")) == "2026-01-15T10:30:00-07:00"
    assert localize("2026-07-15T10:30:00", ZoneInfo("America/Phoenix")) == "2026-07-15T10:30:00-07:00"  # no DST


def test_repeated_hour_is_read_as_its_first_occurrence() -> None:
    # 2026-11-01: Chicago clocks go from 02:00 CDT back to 01:00 CST, so 01:30 happens twice.
    assert localize("2026-11-01T01:30:00", CHICAGO) == "2026-11-01T01:30:00-05:00"
    assert localize("2026-11-01T00:59:00", CHICAGO) == "2026-11-01T00:59:00-05:00"
    assert localize("2026-11-01T02:00:00", CHICAGO) == "2026-11-01T02:00:00-06:00"


def test_skipped_hour_is_shifted_forward_by_the_gap() -> None:
    # 2026-03-08: Chicago clocks jump from 02:00 CST to 03:00 CDT; 02:30 never happens.
    assert localize("2026-03-08T02:30:00", CHICAGO) == "2026-03-08T03:30:00-05:00"
    assert localize("2026-03-08T02:00", CHICAGO) == "2026-03-08T03:00-05:00"
    assert localize("2026-03-08T01:59:59", CHICAGO) == "2026-03-08T01:59:59-06:00"
    assert localize("2026-03-08T03:00:00", CHICAGO) == "2026-03-08T03:00:00-05:00"


@pytest.mark.parametrize("value", [
    "2026-01-15T10:30:00Z", "2026-01-15T10:30:00+05:30", "2026-07-15T10:30:00-0800", "2026-07-15T10:30-06:00",
])
def test_a_time_that_carries_an_offset_is_untouched(value: str) -> None:
    assert localize(value, CHICAGO) == value


@pytest.mark.parametrize("value", ["2026-01-15", "2026-01", "1980", "not a date", "2026-12-31T23:59:60"])
def test_dates_and_unreadable_values_stay_as_they_are(value: str) -> None:
    assert localize(value, CHICAGO) == value


def test_local_mean_time_before_standard_zones_is_not_given_a_made_up_offset() -> None:
    # Chicago's offset in 1850 was -05:50:36, which ISO 8601 cannot write: the value stays local.
    assert localize("1850-06-01T10:00", CHICAGO) == "1850-06-01T10:00"


def _encounter() -> Encounter:
    return Encounter(
        id="V1", period=Period(start="2026-01-15T10:30:00", end="2026-01-15T11:00:00-06:00"),
        patient=Patient(id="P1", birth_date="1980-04-12"),
        practitioner=Practitioner(dea_registrations=[DEARegistration(number="AB1234563", expires="2027-01-31T23:59")]),
        last_in_person_visit="2025-12-01T09:00",
    )


def test_records_are_localized_in_place_with_every_original_kept() -> None:
    encounter = _encounter()
    changed = localize_records([encounter], "America/Chicago")
    assert changed == 3
    assert encounter.period.start == "2026-01-15T10:30:00-06:00"
    assert encounter.period.end == "2026-01-15T11:00:00-06:00"  # had an offset: untouched, no original
    assert encounter.last_in_person_visit == "2025-12-01T09:00-06:00"
    assert encounter.patient.birth_date == "1980-04-12"  # a date stays a date
    assert encounter.extra[ORIGINAL_TIMES] == {"period.start": "2026-01-15T10:30:00",
                                               "last_in_person_visit": "2025-12-01T09:00"}
    # a nested record keeps its own originals, with paths inside it
    practitioner = encounter.practitioner
    assert practitioner.dea_registrations[0].expires == "2027-01-31T23:59-06:00"
    assert practitioner.extra[ORIGINAL_TIMES] == {"dea_registrations[0].expires": "2027-01-31T23:59"}
    assert ORIGINAL_TIMES not in encounter.patient.extra


def test_localizing_twice_changes_nothing_and_keeps_the_first_original() -> None:
    encounter = _encounter()
    localize_records([encounter], "America/Chicago")
    before = record_to_dict(encounter)
    assert localize_records([encounter], "America/New_York") == 0
    assert record_to_dict(encounter) == before


def test_originals_survive_the_json_form() -> None:
    rx = Prescription(id="RX1", written_date="2026-07-04T08:15:00")
    localize_records([rx], "America/Chicago")
    again = record_from_dict(record_to_dict(rx))
    assert again.written_date == "2026-07-04T08:15:00-05:00"
    assert again.extra == {ORIGINAL_TIMES: {"written_date": "2026-07-04T08:15:00"}}


def test_an_unknown_zone_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'America/Chicgo'"):
        localize_records([_encounter()], "America/Chicgo")
    assert "fixed offset" in zone_problem("-05:00")
    assert zone_problem("America/Chicago") is None and zone_problem("UTC") is None
    assert "IANA" in zone_problem(None)


def test_fixed_offsets_are_checked() -> None:
    assert fixed_offset_problem("-05:00") is None and fixed_offset_problem("+0530") is None
    assert fixed_offset_problem("Z") is None
    for bad in ("EST", "-5", "+25:00", "America/Chicago", 5):
        assert fixed_offset_problem(bad) == f"expected a UTC offset such as -05:00, got {bad!r}"


def test_convert_times_shows_exact_times_in_the_receivers_zone_without_touching_the_input() -> None:
    appt = Appointment(id="A1", start="2026-01-15T10:30:00-06:00", end="2026-07-15T15:30:00Z")
    (shown,) = convert_times([appt], "America/New_York")
    assert shown.start == "2026-01-15T11:30:00-05:00"
    assert shown.end == "2026-07-15T11:30:00-04:00"
    assert appt.start == "2026-01-15T10:30:00-06:00"  # the records other destinations get are unchanged


def test_convert_times_leaves_local_times_and_dates_alone() -> None:
    new_york = ZoneInfo("America/New_York")
    assert in_zone("2026-01-15T10:30:00", new_york) == "2026-01-15T10:30:00"  # zone unknown: no guess
    assert in_zone("2026-01-15", new_york) == "2026-01-15"


def test_a_far_future_sentinel_time_is_localized_not_an_internal_error():
    """Review of issue 11: "no end" sentinels such as 99991231235959 overflowed Python's datetime on
    the way through UTC, and the whole message failed as an internal error (OverflowError)."""
    assert localize("9999-12-31T23:59:59", CHICAGO) == "9999-12-31T23:59:59-06:00"
    assert localize("0001-01-01T00:00:00", ZoneInfo("Asia/Tokyo")) == "0001-01-01T00:00:00"  # LMT has seconds
    assert in_zone("9999-12-31T23:59:59-06:00", ZoneInfo("Asia/Tokyo")) == "9999-12-31T23:59:59-06:00"


def test_a_channel_with_a_zone_delivers_a_message_carrying_a_sentinel_end(tmp_path):
    from tests.core.test_channel_timezones import _channel, _file_engine, local_adt

    engine = _file_engine(tmp_path, {"adt": _channel("America/Chicago")})
    receipt = engine.submit("adt", local_adt("99991231235959", "TZ-MAX"))
    engine.drain()
    message = engine.store.get_message(receipt.message_id)
    assert message.status == "delivered", message.error
    assert message.records[0]["period"]["start"] == "9999-12-31T23:59:59-06:00"
